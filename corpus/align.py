"""Word times for synthetic utterances: forced alignment of the known text to the dry audio.

minutes has no acoustic model of its own yet (its recogniser is trained on this corpus), so the
aligner is pocketsphinx 5's (the en-us model ships in its wheel): `set_align_text` + one pass
gives word boundaries on a 10 ms grid. On flite/festival/piper speech it lands within a few
frames of the audible word edges; espeak-ng's robotic voices align less well. Where it cannot
(an out-of-vocabulary word, a failed search), words are spread over the utterance in proportion
to their letter counts, and the result says which method was used, so consumers know the
precision they are getting.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["WordTime", "align_words", "proportional_words"]


@dataclass(frozen=True)
class WordTime:
    word: str
    start: float  # seconds from the start of the utterance's audio
    end: float


@lru_cache(maxsize=1)
def _decoder():
    from pocketsphinx import Decoder

    return Decoder(samprate=16000, loglevel="FATAL")


def proportional_words(text: str, duration: float, lead: float = 0.05) -> list[WordTime]:
    """Spread words over [lead, duration - lead] by letter count (+1 for the gap)."""
    words = text.split()
    if not words:
        return []
    weights = np.array([len(w) + 1 for w in words], dtype=float)
    span = max(duration - 2 * lead, 1e-3)
    edges = lead + span * np.concatenate([[0], np.cumsum(weights)]) / weights.sum()
    return [WordTime(w, round(float(a), 3), round(float(b), 3)) for w, a, b in zip(words, edges[:-1], edges[1:])]


def align_words(text: str, audio: np.ndarray, sr: int = 16000) -> tuple[list[WordTime], str]:
    """(word times, method): method is "pocketsphinx" or "proportional" (the fallback)."""
    words = text.split()
    if not words:
        return [], "none"
    try:
        d = _decoder()
        d.set_align_text(text.lower())
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        got = [
            (re.sub(r"\(\d+\)$", "", s.word), s.start_frame / 100, (s.end_frame + 1) / 100)
            for s in d.seg()
            if not s.word.startswith(("<", "["))
        ]
        if [g[0].upper() for g in got] == words:
            return [WordTime(w, round(a, 3), round(b, 3)) for w, (_, a, b) in zip(words, got)], "pocketsphinx"
    except Exception as exc:  # OOV words raise in set_align_text
        log.debug("alignment failed (%s): %s", exc, text)
    return proportional_words(text, len(audio) / sr), "proportional"
