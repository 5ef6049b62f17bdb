"""What the CLI writes: a `Transcript` assembled from finals, as JSON, SRT or RTTM.

The formats and the words-to-turns rule are `minutes.transcript`'s (one writer for the server,
the client and the diariser); what is the client's own is folding in the server's speaker
revisions before the files are written.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from minutes.transcript import Transcript, to_json, to_rttm, to_srt
from minutes.types import Segment

__all__ = ["apply_revisions", "write_outputs"]


def apply_revisions(segments: Iterable[Segment], revised: Iterable[dict[str, Any]]) -> list[Segment]:
    """Relabel words whose middle falls in a revised span (`speakers.revised` of the protocol:
    the diariser changed its mind about the recent past); a segment's speaker is then the
    majority speaker of its words again."""
    spans = [(float(r["start"]), float(r["end"]), r["speaker"]) for r in revised]
    if not spans:
        return list(segments)
    out = []
    for seg in segments:
        words = []
        for w in seg.words:
            mid = (w.start + w.end) / 2
            spk = next((s for a, b, s in spans if a <= mid < b), w.speaker)
            words.append(w if spk == w.speaker else replace(w, speaker=spk))
        labels = [w.speaker for w in words if w.speaker]
        speaker = max(set(labels), key=labels.count) if labels else seg.speaker
        out.append(replace(seg, words=tuple(words), speaker=speaker))
    return out


def write_outputs(
    tr: Transcript, *, json_path: Path | None = None, srt_path: Path | None = None,
    rttm_path: Path | None = None, file_id: str = "stream", meta: dict[str, Any] | None = None,
) -> None:
    if json_path:
        Path(json_path).write_text(to_json(tr, meta))
    if srt_path:
        Path(srt_path).write_text(to_srt(tr))
    if rttm_path:
        Path(rttm_path).write_text(to_rttm(tr, file_id))
