"""Word times for synthetic utterances: forced alignment of the known text to the dry audio.

minutes has no acoustic model of its own yet (its recogniser is trained on this corpus), so the
aligner is pocketsphinx 5's (the en-us model ships in its wheel): `set_align_text` + one pass
gives word boundaries on a 10 ms grid. On flite/festival/piper speech it lands within a few
frames of the audible word edges; espeak-ng's robotic voices align less well. Where it cannot
(an out-of-vocabulary word, a failed search), words are spread over the utterance in proportion
to their letter counts, and the result says which method was used, so consumers know the
precision they are getting. Words missing from pocketsphinx's dictionary (names, archaic and
rare words: a third of the pool's sentences have one) get a pronunciation from espeak-ng's
IPA, mapped to ARPAbet, before alignment.
"""

from __future__ import annotations

import logging
import re
import subprocess
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


# IPA (as espeak-ng writes en-us) -> ARPAbet, longest match first.
_IPA = sorted({
    "tʃ": "CH", "dʒ": "JH", "eɪ": "EY", "aɪ": "AY", "ɔɪ": "OY", "aʊ": "AW", "oʊ": "OW", "əʊ": "OW",
    "iː": "IY", "i": "IY", "ɪ": "IH", "ᵻ": "IH", "ɛ": "EH", "e": "EH", "æ": "AE", "a": "AE", "ɑː": "AA", "ɑ": "AA",
    "ɒ": "AA", "ɔː": "AO", "ɔ": "AO", "ʊ": "UH", "uː": "UW", "u": "UW", "ʌ": "AH", "ə": "AH", "ɐ": "AH",
    "ɚ": "ER", "ɜː": "ER", "ɜ": "ER", "ɝ": "ER", "o": "OW", "p": "P", "b": "B", "t": "T", "d": "D", "ɾ": "T",
    "k": "K", "ɡ": "G", "g": "G", "f": "F", "v": "V", "θ": "TH", "ð": "DH", "s": "S", "z": "Z", "ʃ": "SH",
    "ʒ": "ZH", "h": "HH", "x": "K", "m": "M", "n": "N", "ŋ": "NG", "l": "L", "ɫ": "L", "ɹ": "R", "r": "R",
    "w": "W", "j": "Y",
}.items(), key=lambda kv: -len(kv[0]))


def ipa_to_arpabet(ipa: str) -> list[str]:
    """Greedy longest-match transliteration; stress, length and unknown marks are dropped."""
    out, i = [], 0
    while i < len(ipa):
        for sym, arpa in _IPA:
            if ipa.startswith(sym, i):
                out.append(arpa)
                i += len(sym)
                break
        else:
            i += 1
    return out


def _add_missing_words(d, words: list[str]) -> None:
    missing = sorted({w for w in words if d.lookup_word(w) is None})
    for w in missing:
        ipa = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", "en-us", w], capture_output=True, text=True).stdout
        phones = ipa_to_arpabet("".join(ipa.split()))
        if phones:
            d.add_word(w, " ".join(phones), True)


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
        _add_missing_words(d, text.lower().split())
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
