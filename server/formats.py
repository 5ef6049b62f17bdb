"""Transcript renderings for REST answers: json (the default), srt, vtt, rttm, txt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FORMATS = {
    "json": "application/json",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "rttm": "text/plain",
    "txt": "text/plain",
}


def _clock(t: float, sep: str) -> str:
    ms = int(round(max(t, 0.0) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cue_text(seg: dict[str, Any]) -> str:
    return f"{seg['speaker']}: {seg['text']}" if seg.get("speaker") else seg["text"]


def to_srt(result: dict[str, Any]) -> str:
    cues = [s for s in result["segments"] if s.get("text")]
    return "".join(f"{i}\n{_clock(s['start'], ',')} --> {_clock(s['end'], ',')}\n{_cue_text(s)}\n\n"
                   for i, s in enumerate(cues, 1))


def to_vtt(result: dict[str, Any]) -> str:
    cues = [s for s in result["segments"] if s.get("text")]
    return "WEBVTT\n\n" + "".join(f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n{_cue_text(s)}\n\n" for s in cues)


def to_rttm(result: dict[str, Any], file_id: str) -> str:
    """NIST RTTM: one SPEAKER line per turn (segments stand in when nobody was labelled)."""
    file_id = "".join(c if c.isalnum() or c in "._-" else "_" for c in file_id) or "audio"
    turns = result.get("turns") or [
        {"speaker": s.get("speaker") or "UNKNOWN", "start": s["start"], "end": s["end"]}
        for s in result["segments"] if s.get("text")
    ]
    return "".join(
        f"SPEAKER {file_id} 1 {t['start']:.3f} {max(t['end'] - t['start'], 0.0):.3f} <NA> <NA> {t['speaker']} <NA> <NA>\n"
        for t in turns
    )


def to_txt(result: dict[str, Any]) -> str:
    return "".join(s["text"] + "\n" for s in result["segments"] if s.get("text"))


def render(result: dict[str, Any], fmt: str, filename: str = "audio") -> str:
    if fmt == "srt":
        return to_srt(result)
    if fmt == "vtt":
        return to_vtt(result)
    if fmt == "rttm":
        return to_rttm(result, Path(filename).stem)
    if fmt == "txt":
        return to_txt(result)
    raise ValueError(f"unknown format {fmt!r}")
