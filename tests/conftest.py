"""Shared fixtures: a free loopback port and a real uvicorn server in a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s: {last}")


def stop_process(proc: subprocess.Popen, timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
    """Ask a child process that still runs to stop (`sig`); kill it if it has not within `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def port() -> int:
    return free_port()


def start_server(args: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `minutes serve` on 127.0.0.1:`port` and wait for /healthz."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "minutes", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=REPO,
        env=full_env,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
    except Exception:
        proc.kill()
        raise
    return proc


@pytest.fixture
def server_process(port):
    proc = start_server([], port)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)
