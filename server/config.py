"""The server's settings: one dataclass, from defaults < TOML [server] < MINUTES_* env < flags.

The engine's settings are its own `EngineConfig`, held whole in `engine` (not copied field by
field); `minutes.config` reads them at the same level as the server's own."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.config import EngineConfig


@dataclass(frozen=True)
class ServerConfig:
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind"})
    port: int = field(default=8000, metadata={"help": "TCP port"})
    workers: int = field(default=1, metadata={"help": "uvicorn worker processes"})
    # models, batching, diarisation, punctuation: the engine's own config, held whole (its
    # settings are this config's flags: --model, --model-store, --max-batch, ...)
    engine: EngineConfig = field(default_factory=EngineConfig, metadata={"flatten": True})
    # limits
    max_streams: int = field(default=64, metadata={"help": "concurrent streams (both WebSocket endpoints)"})
    max_streams_per_key: int = field(default=0, metadata={"help": "concurrent streams per API key (0: no cap)"})
    max_message_bytes: int = field(default=1 << 20, metadata={"help": "largest binary WebSocket message"})
    max_session_seconds: float = field(default=4 * 3600.0, metadata={"help": "longest stream (seconds of audio)"})
    idle_timeout_seconds: float = field(default=30.0, metadata={"help": "close a stream silent for this long"})
    # A client sending faster than real time has its pong queued behind audio that the server
    # reads only at decode pace (it stops reading while a stream's backlog is large), so the
    # keepalive must wait longer than uvicorn's 20 s default or such streams are cut off.
    ws_ping_timeout_seconds: float = field(default=120.0, metadata={"help": "WebSocket keepalive: close when a pong is this late"})
    max_upload_bytes: int = field(default=200 << 20, metadata={"help": "largest upload (REST)"})
    max_sync_seconds: float = field(default=600.0, metadata={"help": "longest file /v1/transcriptions accepts"})
    vosk_sample_rate: int = field(default=8000, metadata={"help": "Vosk endpoint's rate before a config message"})
    # auth
    api_keys: list[str] = field(default_factory=list, metadata={"help": "accepted API keys (empty: open)"})
    # jobs
    jobs_db: Path = field(default=Path("data/jobs.sqlite"), metadata={"help": "SQLite file of async jobs"})
    jobs_dir: Path = field(default=Path("data/jobs"), metadata={"help": "where uploaded job files are kept"})

    def __post_init__(self) -> None:
        if not (0 < self.port < 65536):
            raise ValueError(f"port must be in 1..65535, not {self.port}")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        for name in ("max_streams", "max_message_bytes", "max_upload_bytes", "vosk_sample_rate"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("max_session_seconds", "idle_timeout_seconds", "max_sync_seconds",
                     "ws_ping_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.max_streams_per_key < 0:
            raise ValueError("max_streams_per_key must be >= 0")
