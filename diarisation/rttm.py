"""RTTM in and out, through pyannote.core's `Annotation` (the field's shared representation).

minutes keeps speaker turns as `minutes.types.Turn` (typed all the way to the wire); these
functions convert at the edge. RTTM `SPEAKER` lines: `SPEAKER <uri> 1 <start> <dur> <NA> <NA>
<speaker> <NA> <NA>`. Azimuth has no RTTM field, so it does not survive the round trip.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

from pyannote.core import Annotation, Segment
from pyannote.database.util import load_rttm

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
    """Turns -> RTTM text (one SPEAKER line a turn)."""
    return turns_to_annotation(turns, uri).to_rttm()


def write_rttm(path: str | Path, turns: Iterable[Turn], uri: str = "stream") -> None:
    Path(path).write_text(to_rttm(turns, uri))


def read_rttm(path_or_text: str | Path) -> dict[str, list[Turn]]:
    """RTTM file (path) or RTTM text -> {uri: turns}."""
    p = Path(path_or_text) if not str(path_or_text).lstrip().startswith("SPEAKER") else None
    source = p if p is not None else io.StringIO(str(path_or_text))
    return {uri: annotation_to_turns(ann) for uri, ann in load_rttm(source).items()}
