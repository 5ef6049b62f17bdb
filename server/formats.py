"""Transcript renderings for REST answers: json (the default), srt, vtt, rttm, txt.

The formats themselves are `minutes.transcript`'s; what is the server's is reading a stored
result back into a `Transcript` and, for RTTM, letting speech segments stand in as `UNKNOWN`
turns when nobody was labelled (diarisation off), so an RTTM answer is never empty for speech.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minutes.transcript import Transcript, to_rttm, to_srt, to_txt, to_vtt
from minutes.types import Turn

FORMATS = {
    "json": "application/json",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "rttm": "text/plain",
    "txt": "text/plain",
}


def _rttm(tr: Transcript, file_id: str) -> str:
    turns = tr.turns or tuple(Turn(s.speaker or "UNKNOWN", s.start, s.end) for s in tr.segments if s.text)
    return to_rttm(turns, file_id)


def render(result: dict[str, Any], fmt: str, filename: str = "audio") -> str:
    """A result of `server.transcribe.transcribe` (or a job's stored one) in a text format."""
    tr = Transcript.from_dict(result)
    if fmt == "srt":
        return to_srt(tr)
    if fmt == "vtt":
        return to_vtt(tr)
    if fmt == "rttm":
        return _rttm(tr, Path(filename).stem)
    if fmt == "txt":
        return to_txt(tr)
    raise ValueError(f"unknown format {fmt!r}")
