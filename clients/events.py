"""Typed v1 server messages (docs/protocol.md) as the client hands them to its caller.

Every server message is one JSON object with a `type`; `parse_event` turns it into one of the
frozen dataclasses below so callers match on types, not on dict keys. Finals carry
`minutes.types.Segment` (words stay `Word`s with times, confidences, speaker and azimuth).
Fields the client does not know are kept in `extra`, never dropped silently, because the
protocol lets the diariser add fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Union

from minutes.types import Segment, Word


@dataclass(frozen=True)
class Ready:
    """What the server will actually do for this stream (may differ from what was asked)."""

    stream_id: str
    model: dict[str, Any]
    sample_rate: int
    channels: int
    options: dict[str, Any]
    chunk_seconds: float = 0.0
    warnings: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Partial:
    """The open segment's current hypothesis; `text[:stable_chars]` will not change."""

    segment: int
    text: str
    stable_chars: int
    start: float
    end: float  # seconds of audio decoded so far in the stream


@dataclass(frozen=True)
class Final:
    """A closed segment with its words."""

    segment: Segment


@dataclass(frozen=True)
class Speakers:
    """The known speakers (dicts with speaker, azimuth + extra fields) and `revised`: spans of
    the recent past (dicts with start, end, speaker) whose words now belong to that speaker."""

    time: float
    speakers: tuple[dict[str, Any], ...]
    revised: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Tracks:
    """The tracker's direction tracks at `time`: dicts with track, azimuth, speaker, active."""

    time: float
    tracks: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class ServerError:
    """An `error` message. Non-fatal ones leave the stream running."""

    code: str
    message: str
    fatal: bool = False


@dataclass(frozen=True)
class End:
    """The stream's summary; the server closes with 1000 after it."""

    stream_id: str
    reason: str
    duration: float
    segments: int
    words: int
    text: str
    processing_seconds: float | None = None
    rtf: float | None = None


@dataclass(frozen=True)
class Unknown:
    """A message type this client does not know (a newer server): passed through, not fatal."""

    raw: dict[str, Any]


Event = Union[Ready, Partial, Final, Speakers, Tracks, ServerError, End, Unknown]


def _final(msg: dict[str, Any]) -> Final:
    words = tuple(Word.from_dict(w) for w in msg.get("words") or ())
    seg = Segment(
        id=int(msg.get("segment", 0)),
        start=float(msg.get("start", words[0].start if words else 0.0)),
        end=float(msg.get("end", words[-1].end if words else 0.0)),
        words=words,
        speaker=msg.get("speaker"),
        closed_until=float(msg["closed_until"]) if msg.get("closed_until") is not None else None,
    )
    return Final(seg)


def parse_event(msg: dict[str, Any]) -> Event:
    """One decoded server JSON object -> a typed event. Raises ValueError on a non-object."""
    if not isinstance(msg, dict):
        raise ValueError(f"server message is not a JSON object: {msg!r:.200}")
    kind = msg.get("type")
    if kind == "ready":
        return Ready(
            stream_id=str(msg.get("stream_id", "")),
            model=dict(msg.get("model") or {}),
            sample_rate=int(msg.get("sample_rate", 0)),
            channels=int(msg.get("channels", 1)),
            options=dict(msg.get("options") or {}),
            chunk_seconds=float(msg.get("chunk_seconds") or 0.0),
            warnings=tuple(msg.get("warnings") or ()),
            raw=msg,
        )
    if kind == "partial":
        return Partial(
            segment=int(msg.get("segment", 0)),
            text=str(msg.get("text", "")),
            stable_chars=int(msg.get("stable_chars", 0)),
            start=float(msg.get("start", 0.0)),
            end=float(msg.get("end", 0.0)),
        )
    if kind == "final":
        return _final(msg)
    if kind == "speakers":
        return Speakers(float(msg.get("time", 0.0)), tuple(msg.get("speakers") or ()), tuple(msg.get("revised") or ()))
    if kind == "tracks":
        return Tracks(float(msg.get("time", 0.0)), tuple(msg.get("tracks") or ()))
    if kind == "error":
        return ServerError(str(msg.get("code", "unknown")), str(msg.get("message", "")), bool(msg.get("fatal", False)))
    if kind == "end":
        return End(
            stream_id=str(msg.get("stream_id", "")),
            reason=str(msg.get("reason", "")),
            duration=float(msg.get("duration", 0.0)),
            segments=int(msg.get("segments", 0)),
            words=int(msg.get("words", 0)),
            text=str(msg.get("text", "")),
            processing_seconds=msg.get("processing_seconds"),
            rtf=msg.get("rtf"),
        )
    return Unknown(msg)


def shift_event(event: Event, offset: float, segment_offset: int) -> Event:
    """Move an event's times by `offset` seconds and its segment ids by `segment_offset`.

    Why: after a reconnect the server's new stream counts time and segments from zero again;
    the client re-bases them so its caller sees one continuous stream.
    """
    if offset == 0.0 and segment_offset == 0:
        return event
    if isinstance(event, Partial):
        return replace(event, segment=event.segment + segment_offset, start=event.start + offset, end=event.end + offset)
    if isinstance(event, Final):
        s = event.segment
        words = tuple(replace(w, start=w.start + offset, end=w.end + offset) for w in s.words)
        until = s.closed_until + offset if s.closed_until is not None else None
        return Final(replace(s, id=s.id + segment_offset, start=s.start + offset, end=s.end + offset, words=words,
                             closed_until=until))
    if isinstance(event, Speakers):
        revised = tuple({**r, "start": r["start"] + offset, "end": r["end"] + offset} for r in event.revised)
        return replace(event, time=event.time + offset, revised=revised)
    if isinstance(event, Tracks):
        return replace(event, time=event.time + offset)
    return event
