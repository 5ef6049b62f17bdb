"""One transcript format module: words to speaker turns, and SRT, VTT, RTTM, TXT and JSON.

The server's REST answers, the streaming client's files, the diariser's CLI and the corpus's
meeting references all write these formats; they go through here so that a fix (a file id with
a space, an azimuth that wraps) reaches every writer at once. The typed `Transcript` (segments
of `Word`s with speaker, azimuth and times, plus speaker `Turn`s) is `minutes.types.Transcript`,
re-exported here; writers take it, never a JSON-ready dict.

Turns come from the words, not the segments: a segment can hold two speakers when the endpoint
did not fire between them, and RTTM must say who spoke when. A turn's azimuth is the circular
mean of its words' azimuths (a median or plain mean of 350 and 10 gives 180, behind the array).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

from minutes.types import Segment, Transcript, Turn, Word

__all__ = [
    "Transcript", "circular_mean", "turns_from_words", "build_transcript",
    "to_srt", "to_vtt", "to_rttm", "to_txt", "to_json", "read_rttm", "rttm_file_id",
    "MAX_TURN_GAP",
]

MAX_TURN_GAP = 1.0  # seconds of silence inside one speaker's run that still make one turn


def circular_mean(degrees: Iterable[float]) -> float | None:
    """Mean direction in [0, 360), or None for no angles (azimuths wrap: mean(350, 10) = 0)."""
    angles = [math.radians(d) for d in degrees]
    if not angles:
        return None
    s, c = sum(map(math.sin, angles)), sum(map(math.cos, angles))
    return _wrap(math.degrees(math.atan2(s, c)))


def _wrap(degrees: float) -> float:
    """Into [0, 360): `-1e-15 % 360.0` is 360.0 in floating point, which is 0 degrees."""
    d = degrees % 360.0
    return 0.0 if d >= 360.0 else d


def turns_from_words(words: Iterable[Word], max_gap: float = MAX_TURN_GAP) -> list[Turn]:
    """Speaker turns from labelled words, in time order; words without a speaker make no turn.

    Consecutive words of one speaker join into a turn while the silence between them stays
    under `max_gap` seconds (a longer pause is not speech, and RTTM would claim it was). The
    turn's azimuth is the circular mean of its words', rounded to 0.1 degree.
    """
    turns: list[Turn] = []
    run: list[Word] = []

    def close() -> None:
        if run:
            az = circular_mean(w.azimuth for w in run if w.azimuth is not None)
            turns.append(Turn(run[0].speaker or "", run[0].start, run[-1].end, None if az is None else _wrap(round(az, 1))))
            run.clear()

    for w in sorted((w for w in words if w.speaker), key=lambda w: w.start):
        if run and (w.speaker != run[-1].speaker or w.start - run[-1].end > max_gap):
            close()
        run.append(w)
    close()
    return turns


def build_transcript(segments: Iterable[Segment], duration: float = 0.0,
                     turns: Iterable[Turn] | None = None) -> Transcript:
    """Segments in time order, with `turns` when a diariser gave them, else turns from the words."""
    segs = tuple(sorted(segments, key=lambda s: (s.start, s.id)))
    made = tuple(turns) if turns is not None else ()
    return Transcript(segments=segs, turns=made or tuple(turns_from_words(w for s in segs for w in s.words)),
                      duration=duration)


# --- subtitles ---------------------------------------------------------------------------------

def _clock(t: float, sep: str) -> str:
    ms = int(round(max(t, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cues(tr: Transcript) -> list[tuple[float, float, str]]:
    """One cue per segment with text, prefixed by its speaker when known (`S1: HELLO`)."""
    return [(s.start, s.end, f"{s.speaker}: {s.text}" if s.speaker else s.text) for s in tr.segments if s.text]


def to_srt(tr: Transcript) -> str:
    """SubRip: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, each followed by a blank line."""
    return "".join(f"{i}\n{_clock(a, ',')} --> {_clock(b, ',')}\n{text}\n\n"
                   for i, (a, b, text) in enumerate(_cues(tr), 1))


def to_vtt(tr: Transcript) -> str:
    """WebVTT: the `WEBVTT` header, then cues `HH:MM:SS.mmm --> HH:MM:SS.mmm`, blank-line separated."""
    return "WEBVTT\n\n" + "".join(f"{_clock(a, '.')} --> {_clock(b, '.')}\n{text}\n\n" for a, b, text in _cues(tr))


def to_txt(tr: Transcript) -> str:
    """The text, one segment a line."""
    return "".join(s.text + "\n" for s in tr.segments if s.text)


# --- RTTM --------------------------------------------------------------------------------------

def rttm_file_id(name: str) -> str:
    """A file id RTTM can hold: its fields are split on whitespace, so anything but letters,
    digits and `._-` becomes `_` (`"meet ing"` -> `"meet_ing"`)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "audio"


def _label(speaker: str) -> str:
    return "_".join(str(speaker).split()) or "UNKNOWN"


def to_rttm(turns: Iterable[Turn] | Transcript, file_id: str = "stream") -> str:
    """NIST RTTM, one line per turn in the order given:
    `SPEAKER <file> 1 <start> <dur> <NA> <NA> <speaker> <NA> <NA>`, times in seconds to the ms."""
    if isinstance(turns, Transcript):
        turns = turns.turns
    uri = rttm_file_id(file_id)
    return "".join(
        f"SPEAKER {uri} 1 {t.start:.3f} {max(t.end - t.start, 0.0):.3f} <NA> <NA> {_label(t.speaker)} <NA> <NA>\n"
        for t in turns
    )


def read_rttm(path_or_text: str | Path) -> dict[str, list[Turn]]:
    """RTTM file (a path) or RTTM text -> {file id: turns in file order}; lines other than
    `SPEAKER` (comments, `SPKR-INFO`) are skipped. Azimuth has no RTTM field: it is None."""
    text = str(path_or_text)
    if isinstance(path_or_text, Path) or ("\n" not in text and not text.lstrip().startswith("SPEAKER")
                                          and Path(text).is_file()):
        text = Path(path_or_text).read_text()
    out: dict[str, list[Turn]] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 8 or f[0] != "SPEAKER":
            continue
        start = float(f[3])
        out.setdefault(f[1], []).append(Turn(f[7], start, start + float(f[4])))
    return out


# --- JSON --------------------------------------------------------------------------------------

def to_json(tr: Transcript, meta: dict[str, Any] | None = None) -> str:
    """The transcript's `to_dict` (docs/protocol.md's result shape) with `meta` keys added."""
    return json.dumps({**tr.to_dict(), **(meta or {})}, indent=1) + "\n"
