"""The engine's settings (filled by the server from its own config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class EngineConfig:
    """Held whole by `server.config.ServerConfig.engine`; its settings are the server's flags,
    environment variables and TOML keys (`minutes.config`: `flatten`), `store` as `model_store`."""

    store: Path = field(default=Path("store"), metadata={"name": "model_store", "help": "model store directory"})
    model: str = field(default="default", metadata={
        "help": "model loaded at start-up: a store name (its newest version) or name/version; others load on first use"})
    # a compute budget instead of a name: the most accurate store variant whose measured CPU
    # real-time factor per stream fits (compression/store/select.py); 0 = serve `model`
    latency_budget: float = field(default=0.0, metadata={
        "help": "pick the most accurate model whose measured CPU RTF per stream is at most this (0: use --model)"})
    # sherpa-onnx's max-batch-size / loop-interval
    max_batch: int = field(default=32, metadata={"help": "most streams decoded in one batched call"})
    loop_interval_ms: float = field(default=10.0, metadata={"help": "decoder's wait for work when idle (ms)"})
    # one core per decoder decodes best here
    threads: int = field(default=1, metadata={"help": "torch threads of each decoder"})
    decoders: int = field(default=1, metadata={"help": "decoder threads (each batches its own streams)"})
    diarisation: bool = field(default=True, metadata={"help": "use the online diariser when available"})
    verify_checksums: bool = field(default=True, metadata={"help": "re-hash a model's files when it loads"})
    max_models: int = field(default=3, metadata={"help": "models kept loaded at once (least recently used dropped)"})
    # store model that cases and punctuates finals (options.format = "display"); "" turns it off
    punctuator: str = field(default="punctuator", metadata={
        "help": "store model that cases and punctuates finals (empty: off)"})
    split_at_speaker_changes: bool = field(default=True, metadata={"help": "a final never spans two diarised speakers"})
    # s of diariser step labels a stream keeps for labelling words: more than a segment can last
    # (the recogniser closes one at 20 s) plus the audio a stream may queue (20 s), with margin
    diariser_memory_seconds: float = field(default=120.0, metadata={
        "help": "seconds of diariser labels a live stream keeps"})

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if self.loop_interval_ms <= 0:
            raise ValueError("loop_interval_ms must be > 0")
        if self.threads < 1 or self.decoders < 1:
            raise ValueError("threads and decoders must be >= 1")
        if self.max_models < 1:
            raise ValueError("max_models must be >= 1")
        if self.latency_budget < 0:
            raise ValueError("latency_budget must be >= 0")
        if self.diariser_memory_seconds <= 0:
            raise ValueError("diariser_memory_seconds must be > 0")
