"""The ground every issue builds on: CLI, configuration layers, logging, the server's health."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from minutes import cli
from minutes.config import ConfigError, load_config
from minutes.logs import JsonFormatter
from minutes.types import Segment, Transcript, Turn, Word
from server.config import ServerConfig


def run_minutes(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "minutes", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_help_lists_only_registered_commands():
    out = run_minutes("--help")
    assert out.returncode == 0
    # Subcommands are the lines indented by exactly four spaces under "positional arguments".
    listed = {line.split()[0] for line in out.stdout.splitlines() if line.startswith("    ") and line[4] != " "}
    assert listed == set(cli.COMMANDS), out.stdout


def test_help_imports_no_torch_and_is_quick():
    """`minutes --help` names the subcommands without importing them (train's flags come from a
    dataclass beside torch: 16 s on a busy machine before the CLI went lazy)."""
    code = ("import sys, contextlib, io\n"
            "from minutes import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
            "    cli.main(['--help'])\n"
            "assert 'serve' in out.getvalue() and 'diarise' in out.getvalue()\n"
            "heavy = sorted(m for m in ('torch', 'server.cli', 'training.cli') if m in sys.modules)\n"
            "print(heavy)\n")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
    assert elapsed < 5.0, elapsed  # generous: ~0.1 s idle; a bare interpreter start on a busy machine


def test_stub_help_matches_each_modules_own():
    """`COMMANDS` repeats each subcommand's help line so `--help` need not import it: the two agree."""
    import argparse
    import importlib

    for name, cmd in cli.COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(cmd.module).register(sub)
        (action,) = [a for a in sub._choices_actions if a.dest == name]
        assert action.help == cmd.help, name


def test_every_registered_command_has_help():
    for name in cli.COMMANDS:
        out = run_minutes(name, "--help")
        assert out.returncode == 0, (name, out.stderr)


@dataclass(frozen=True)
class _Example:
    port: int = 1
    name: str = "x"
    flag: bool = False
    ratio: float = 0.5
    items: list[int] = field(default_factory=list)
    path: Path | None = None


def test_config_layers_defaults_toml_env_flags(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[ex]\nport = 2\nname = "toml"\nitems = [1, 2]\n')
    env = {"MINUTES_PORT": "3", "MINUTES_FLAG": "yes"}
    cfg = load_config(_Example, toml_path=toml, section="ex", environ=env, overrides={"name": "cli"})
    assert cfg == _Example(port=3, name="cli", flag=True, ratio=0.5, items=[1, 2], path=None)
    assert load_config(_Example, environ={}) == _Example()
    assert load_config(_Example, environ={"MINUTES_PATH": "/a", "MINUTES_ITEMS": "4,5"}).items == [4, 5]


def test_config_rejects_bad_values(tmp_path):
    with pytest.raises(ConfigError):
        load_config(_Example, environ={"MINUTES_PORT": "eighty"})
    with pytest.raises(ConfigError):
        load_config(_Example, environ={"MINUTES_FLAG": "maybe"})
    toml = tmp_path / "c.toml"
    toml.write_text("[ex]\nnope = 1\n")
    with pytest.raises(ConfigError, match="nope"):
        load_config(_Example, toml_path=toml, section="ex", environ={})


def test_print_config_merges_env_and_flags(tmp_path):
    toml = tmp_path / "server.toml"
    toml.write_text('[server]\nport = 8100\nmodel = "from-toml"\n')
    out = run_minutes("serve", "--config", str(toml), "--print-config", "--model", "from-flag", env={"MINUTES_PORT": "8200"})
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout)
    assert cfg["port"] == 8200 and cfg["model"] == "from-flag"
    bad = run_minutes("serve", "--print-config", "--port", "99999")
    assert bad.returncode != 0 and "port" in bad.stderr


def test_json_log_lines_are_json():
    record = logging.LogRecord("minutes.test", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.fields = {"stream_id": "abc"}
    line = JsonFormatter().format(record)
    payload = json.loads(line)
    assert payload["message"] == "hello world" and payload["level"] == "info" and payload["stream_id"] == "abc"


def test_types_round_trip():
    w = Word("HELLO", 0.1, 0.4, 0.9, "S1", 45.0)
    seg = Segment(0, 0.1, 0.4, (w,), "S1")
    t = Transcript((seg,), (Turn("S1", 0.1, 0.4, 45.0),), 1.0)
    assert Transcript.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    assert t.text == "HELLO"


def test_server_answers_healthz(server_process):
    r = httpx.get(f"{server_process}/healthz", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_server_config_validates():
    with pytest.raises(ValueError):
        ServerConfig(port=0)


def test_server_config_holds_the_engine_config_whole(tmp_path):
    """`ServerConfig.engine` is an `EngineConfig` (no copied fields); its settings keep the
    server's names in every layer: TOML `model_store`, env `MINUTES_MAX_BATCH`, flag `--model`."""
    from engine.config import EngineConfig

    toml = tmp_path / "server.toml"
    toml.write_text('[server]\nmodel_store = "/models"\nport = 8100\ndiarisation = false\n')
    cfg = load_config(ServerConfig, toml_path=toml, section="server", environ={"MINUTES_MAX_BATCH": "4"},
                      overrides={"model": "default/5"})
    assert cfg.port == 8100 and cfg.engine == EngineConfig(store=Path("/models"), model="default/5", max_batch=4,
                                                           diarisation=False)
    assert not {"model", "model_store", "max_batch"} & {f.name for f in dataclasses.fields(ServerConfig)}
    with pytest.raises(ValueError, match="max_batch"):
        load_config(ServerConfig, environ={"MINUTES_MAX_BATCH": "0"})
    toml.write_text("[server]\nstore = 'x'\n")  # the engine's field name is not a server setting: model_store is
    with pytest.raises(ConfigError, match="store"):
        load_config(ServerConfig, toml_path=toml, section="server", environ={})
