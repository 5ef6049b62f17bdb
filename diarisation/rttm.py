"""RTTM in and out for the diariser, and pyannote.core's `Annotation` for the metrics.

minutes keeps speaker turns as `minutes.types.Turn` (typed all the way to the wire); the RTTM
lines are written and read by `minutes.transcript` (one writer for the whole tree), and the
`Annotation` conversion is kept for pyannote.metrics. Here a diariser's turns are written in
time order with empty turns left out, as pyannote's `Annotation.to_rttm` did before.
Azimuth has no RTTM field, so it does not survive the round trip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from pyannote.core import Annotation, Segment

from minutes import transcript
from minutes.types import Turn

__all__ = ["turns_to_annotation", "annotation_to_turns", "write_rttm", "read_rttm", "to_rttm"]


def turns_to_annotation(turns: Iterable[Turn], uri: str = "stream") -> Annotation:
    """Turns -> Annotation; overlapping turns of different speakers stay as separate tracks."""
    ann = Annotation(uri=uri)
    for i, t in enumerate(turns):
        if t.end > t.start:
            ann[Segment(t.start, t.end), i] = t.speaker
    return ann


def annotation_to_turns(ann: Annotation) -> list[Turn]:
    """Annotation -> turns sorted by start time."""
    turns = [Turn(str(label), float(seg.start), float(seg.end)) for seg, _, label in ann.itertracks(yield_label=True)]
    return sorted(turns, key=lambda t: (t.start, t.end, t.speaker))


def to_rttm(turns: Iterable[Turn], uri: str = "stream") -> str:
    """Turns -> RTTM text (one SPEAKER line a non-empty turn, by start then end time)."""
    kept = sorted((t for t in turns if t.end > t.start), key=lambda t: (t.start, t.end))
    return transcript.to_rttm(kept, uri)


def write_rttm(path: str | Path, turns: Iterable[Turn], uri: str = "stream") -> None:
    Path(path).write_text(to_rttm(turns, uri))


def read_rttm(path_or_text: str | Path) -> dict[str, list[Turn]]:
    """RTTM file (path) or RTTM text -> {uri: turns sorted by start time}."""
    return {uri: sorted(turns, key=lambda t: (t.start, t.end, t.speaker))
            for uri, turns in transcript.read_rttm(path_or_text).items()}
