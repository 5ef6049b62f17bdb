"""What the CLI writes: a `Transcript` assembled from finals, as JSON, SRT or RTTM.

Turns (RTTM) come from the words, not the segments: a segment can hold two speakers when the
endpoint did not fire between them, and RTTM should say who spoke when. Consecutive words of
one speaker join into a turn while the gap between them stays under `max_gap` seconds.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from minutes.types import Segment, Transcript, Turn, Word


def circular_mean(degrees: Iterable[float]) -> float | None:
    """Mean direction in [0, 360), or None for no angles (azimuths wrap: mean(350, 10) = 0)."""
    angles = [math.radians(d) for d in degrees]
    if not angles:
        return None
    s, c = sum(map(math.sin, angles)), sum(map(math.cos, angles))
    return math.degrees(math.atan2(s, c)) % 360.0


def turns_from_words(words: Iterable[Word], max_gap: float = 1.0) -> list[Turn]:
    """Speaker turns from labelled words; words without a speaker make no turn."""
    turns: list[Turn] = []
    run: list[Word] = []

    def close() -> None:
        if run:
            az = circular_mean(w.azimuth for w in run if w.azimuth is not None)
            turns.append(Turn(run[0].speaker or "", run[0].start, run[-1].end, None if az is None else round(az, 1)))
            run.clear()

    for w in sorted((w for w in words if w.speaker), key=lambda w: w.start):
        if run and (w.speaker != run[-1].speaker or w.start - run[-1].end > max_gap):
            close()
        run.append(w)
    close()
    return turns


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


def build_transcript(segments: Iterable[Segment], duration: float = 0.0) -> Transcript:
    segs = tuple(sorted(segments, key=lambda s: (s.start, s.id)))
    turns = turns_from_words(w for s in segs for w in s.words)
    return Transcript(segments=segs, turns=tuple(turns), duration=duration)


def _srt_time(t: float) -> str:
    ms = int(round(max(t, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def to_srt(tr: Transcript) -> str:
    """One cue per segment with words, prefixed by its speaker when known."""
    cues = []
    for i, seg in enumerate((s for s in tr.segments if s.words), start=1):
        text = f"{seg.speaker}: {seg.text}" if seg.speaker else seg.text
        cues.append(f"{i}\n{_srt_time(seg.start)} --> {_srt_time(seg.end)}\n{text}\n")
    return "\n".join(cues)


def to_rttm(tr: Transcript, file_id: str) -> str:
    """NIST RTTM: `SPEAKER <file> 1 <start> <dur> <NA> <NA> <speaker> <NA> <NA>` per turn."""
    return "".join(
        f"SPEAKER {file_id} 1 {t.start:.3f} {t.duration:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n" for t in tr.turns
    )


def to_json(tr: Transcript, meta: dict[str, Any] | None = None) -> str:
    return json.dumps({**tr.to_dict(), **(meta or {})}, indent=1) + "\n"


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
