"""What the engine needs of its collaborators, as typed `Protocol`s.

Why protocols and not the classes: the engine must import without torch (the server starts and
says it has no model), so it cannot import `decoding.recogniser` or `diarisation.online` at
module level; and a protocol says in one place exactly which calls the engine makes, so the
engine calls them directly instead of probing objects with `getattr`/`inspect`.
`decoding.recogniser.Recogniser` and `diarisation.online.OnlineDiariser` satisfy these
(tests/test_server_engine.py checks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from minutes.types import DiariserEvent, Turn, Word

if TYPE_CHECKING:  # types only: importing these would import torch
    from decoding.options import Decoding, DecodingOptions, SearchRequest
    from decoding.recogniser import StreamResult


class RecogniserStream(Protocol):
    """One stream of a recogniser (the sherpa-onnx shape, docs/TEAM.md)."""

    def accept_waveform(self, samples: np.ndarray) -> None: ...

    def input_finished(self) -> None: ...

    def result(self) -> "StreamResult": ...

    def reset_segment(self) -> list[Word]: ...

    @property
    def chunk_seconds(self) -> float:
        """Audio per encoder step of this stream (a multiple of the model's chunk)."""

    alternatives: list  # minutes.types.Alternative: the n best of the last closed segment


class Recognises(Protocol):
    """A loaded recogniser: no per-stream state; `decode_streams` batches every ready stream."""

    sample_rate: int
    chunk_seconds: float  # the model's trained chunk
    batch_chunk_seconds: float  # what a file is decoded with when its request names no chunk

    def plan(self, hotwords: Sequence[str] = (), hotword_boost: float | None = None,
             search: "SearchRequest | None" = None, chunk_seconds: float | None = None,
             alternatives: int = 0) -> tuple["DecodingOptions", "Decoding"]: ...

    def new_stream(self, options: "DecodingOptions | None" = None) -> RecogniserStream: ...

    def is_ready(self, s: RecogniserStream) -> bool: ...

    def decode_streams(self, streams: list[RecogniserStream]) -> None: ...

    def is_endpoint(self, s: RecogniserStream) -> bool: ...


class DiariserStream(Protocol):
    """One stream of the online diariser."""

    keep_turns: bool  # False: a live stream that keeps no turns (`turns` would raise)

    def accept(self, frames: np.ndarray) -> None: ...

    def input_finished(self) -> None: ...

    def label(self, start: float, end: float) -> tuple[str | None, float | None]: ...

    def events(self) -> list[DiariserEvent]: ...

    def turns(self) -> list[Turn]: ...


class Diarises(Protocol):
    """The online diariser: one per process, a stream per audio stream."""

    def new_stream(self, geometry: np.ndarray, sample_rate: int, memory: float | None = None,
                   keep_turns: bool = True) -> DiariserStream: ...
