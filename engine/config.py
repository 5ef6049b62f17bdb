"""The engine's settings (filled by the server from its own config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EngineConfig:
    store: Path = Path("store")  # model store root
    model: str = "default"  # model loaded at start-up; others load on first use
    max_batch: int = 32  # most streams in one decode_streams call (sherpa-onnx max-batch-size)
    loop_interval_ms: float = 10.0  # worker's wait for more chunks when it has none ready
    threads: int = 1  # torch intra-op threads (one core per decoder decodes best here)
    decoders: int = 1  # decoder threads, each batching its own streams
    diarisation: bool = True  # use diarisation.online when it is installed
    verify_checksums: bool = True  # re-hash artefacts on load
    max_models: int = 3  # models kept loaded at once (least recently used is dropped)
    # store model that cases and punctuates finals (options.format = "display"); "" turns it off
    punctuator: str = "punctuator"
    split_at_speaker_changes: bool = True  # a final never spans two diarised speakers
    # s of diariser step labels a stream keeps for labelling words: more than a segment can last
    # (the recogniser closes one at 20 s) plus the audio a stream may queue (20 s), with margin
    diariser_memory_seconds: float = 120.0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if self.loop_interval_ms <= 0:
            raise ValueError("loop_interval_ms must be > 0")
        if self.threads < 1 or self.decoders < 1:
            raise ValueError("threads and decoders must be >= 1")
