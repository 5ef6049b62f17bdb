"""What the engine tells a stream's consumer: typed events, turned into JSON only by the server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from minutes.types import Segment, SpeakersEvent, TracksEvent


@dataclass(frozen=True)
class Partial:
    """The open segment's current hypothesis."""

    segment: int  # id of the open segment
    text: str
    stable_chars: int  # text[:stable_chars] will not change
    start: float  # first word's start, or the segment's start
    end: float  # seconds of audio decoded so far

    def to_dict(self) -> dict[str, Any]:
        return {"type": "partial", "segment": self.segment, "text": self.text,
                "stable_chars": self.stable_chars, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class Final:
    """A segment closed by an endpoint (or by the end of the stream)."""

    segment: Segment

    def to_dict(self) -> dict[str, Any]:
        d = self.segment.to_dict()
        return {"type": "final", "segment": d.pop("id"), **d}


# A `speakers` or `tracks` event from the online diariser, passed through as it is typed.
SpeakerEvent = SpeakersEvent | TracksEvent


@dataclass(frozen=True)
class End:
    """The stream is over: its summary."""

    stream_id: str
    reason: str  # stop | session_limit | idle_timeout
    duration: float  # seconds of audio received
    segments: int  # finals sent
    words: int
    text: str
    processing_seconds: float
    turns: tuple = ()  # minutes.types.Turn from the diariser (REST results), not sent on the stream
    text_truncated: bool = False  # `text` is only the most recent part (engine.stream.SUMMARY_MAX_CHARS)

    def to_dict(self) -> dict[str, Any]:
        rtf = self.processing_seconds / self.duration if self.duration > 0 else 0.0
        return {"type": "end", "stream_id": self.stream_id, "reason": self.reason,
                "duration": round(self.duration, 3), "segments": self.segments, "words": self.words,
                "text": self.text, "text_truncated": self.text_truncated, "processing_seconds": round(self.processing_seconds, 4),
                "rtf": round(rtf, 4)}


@dataclass(frozen=True)
class Failure:
    """The engine could not go on with this stream."""

    code: str
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
