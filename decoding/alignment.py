"""Word times by forced alignment on the CTC head that shares the transducer's encoder.

Why: the transducer emits a word's pieces at whichever frames its search picked, so a word's
emission frames say when the model was sure, not where the word was spoken (one frame, 40 ms,
for most words; late in a streaming model). Once a segment's words are final, its text is
known: aligning those characters to the CTC head's frame posteriors (torchaudio's
`forced_align`, a Viterbi pass over the CTC topology) places every character, and so every
word, in time (arXiv 2105.00858 §3 uses an alignment branch that shares the encoder).

CTC spikes: a character occupies one or two frames of a long blank run, and the spike of a
word's first letter comes a little after its onset, that of its last letter before its end.
A word is therefore given the frames from its first character's spike to the frame before the
next word's first spike (or its own last spike when a pause follows), and `WordTimeShift`
moves starts and ends by constants measured on speech with known word times
(bench/word_times.py), stored with the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio.functional as AF

from decoding.tokenizer import CharTokenizer

__all__ = ["WordSpan", "WordTimeShift", "align_words"]


@dataclass(frozen=True)
class WordSpan:
    """Where one word lies, in encoder frames of the aligned stretch: [start, end)."""

    start: int
    end: int
    first_spike: int  # frame of its first character
    last_spike: int  # frame of its last character
    support: float = 1.0  # mean CTC posterior of its letters at their spikes (confidence feature)


@dataclass(frozen=True)
class WordTimeShift:
    """Seconds added to aligned starts and ends (negative: earlier), measured by
    bench/word_times.py on held-out speech with reference times."""

    start: float = 0.0
    end: float = 0.0

    @classmethod
    def from_dict(cls, d: dict | None) -> "WordTimeShift":
        return cls(**{k: float(v) for k, v in (d or {}).items() if k in ("start", "end")})


_CHARS = CharTokenizer()


MAX_FRAMES = 3000  # 2 min of 40 ms frames: the Viterbi pass costs frames x letters


def align_words(log_probs: torch.Tensor, words: list[str], blank: int = 0,
                max_gap_frames: int = 3, max_frames: int = MAX_FRAMES) -> list[WordSpan] | None:
    """Frames of each word in `log_probs` (T, C): the CTC head's log-posteriors over the
    character units (decoding/tokenizer.py `CharTokenizer`) for the stretch the words were
    spoken in. None when the words cannot be aligned (no letters, or more characters than
    frames allow) or the stretch is longer than `max_frames` (a segment never is: endpoints
    close one at 20 s; a whole file decoded without endpoints keeps its emission times).

    A word runs from its first spike to the next word's first spike, except that when more
    than `max_gap_frames` frames separate its last spike from the next word's first (a pause),
    it ends `max_gap_frames` frames after its last spike (never past the stretch's end)."""
    targets = [_CHARS.encode(w) for w in words]
    if not words or any(not t for t in targets):
        return None
    flat: list[int] = []
    bounds: list[tuple[int, int]] = []  # each word's first and last index in `flat`
    space = _CHARS.index[" "]
    for i, t in enumerate(targets):
        if i:
            flat.append(space)
        bounds.append((len(flat), len(flat) + len(t) - 1))
        flat.extend(t)
    T = log_probs.shape[0]
    if T > max_frames:
        return None
    repeats = sum(a == b for a, b in zip(flat, flat[1:]))
    if T < len(flat) + repeats:
        return None
    lp = log_probs.detach().float().unsqueeze(0)
    path, scores = AF.forced_align(lp, torch.tensor([flat], dtype=torch.int32), blank=blank)
    spans = AF.merge_tokens(path[0], scores[0].exp(), blank=blank)
    if len(spans) != len(flat):  # cannot happen for a valid CTC path; refuse rather than guess
        return None
    firsts = [spans[a].start for a, _ in bounds]
    lasts = [spans[b].end - 1 for _, b in bounds]
    out = []
    for i, (f, l) in enumerate(zip(firsts, lasts)):
        nxt = firsts[i + 1] if i + 1 < len(firsts) else T
        end = nxt if nxt - l <= max_gap_frames + 1 else l + 1 + max_gap_frames
        a, b = bounds[i]
        support = sum(float(sp.score) for sp in spans[a : b + 1]) / (b - a + 1)
        out.append(WordSpan(f, min(end, T), f, l, support))
    return out
