"""The server's settings: one dataclass, from defaults < TOML [server] < MINUTES_* env < flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServerConfig:
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind"})
    port: int = field(default=8000, metadata={"help": "TCP port"})
    model: str = field(default="default", metadata={"help": "model name in the store"})
    model_store: Path = field(default=Path("store"), metadata={"help": "model store directory"})
    workers: int = field(default=1, metadata={"help": "uvicorn worker processes"})

    def __post_init__(self) -> None:
        if not (0 < self.port < 65536):
            raise ValueError(f"port must be in 1..65535, not {self.port}")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
