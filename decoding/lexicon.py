"""A word lexicon as a beam-search scorer: hypotheses that spell non-words pay a penalty.

Why: the transducer writes sub-word pieces, and on hard words it spells what it hears —
"PERTECT", "BILGICAL", "CONSONTRATE". On the native set a third of default/9's substituted or
inserted words were not English words at all (bench/results/asr_lexicon.md). The piece LM
knows spelling only statistically; a lexicon knows it exactly, and it is the part of a hybrid
recogniser that a user customises (names, jargon: `DecodingOptions.vocabulary`, hotwords).

The constraint is soft, so a word outside the lexicon can still win when the audio insists:
each word of a hypothesis pays `oov_penalty` once, at the first token that shows it cannot be
a lexicon word — when its spelling so far stops being the prefix of any word, or, for a prefix
that is no word by itself (e.g. "PROTEC"), when the next word starts or the hypothesis ends
(`final_penalty`). Paying early lets the beam drop a misspelling while the correct spelling
is still among its alternatives.

Cost: a (V,) row per distinct partial word, memoised — a beam step looks rows up, it does not
rebuild them; prefix tests are a bisection in the sorted word list (no 1 M-node trie in memory).
"""

from __future__ import annotations

import bisect
import gzip
from pathlib import Path
from typing import Iterable, Sequence

import torch

__all__ = ["Lexicon", "LexiconScorer", "LEXICON_FILE", "WORD_START"]

LEXICON_FILE = "lexicon.txt.gz"  # beside model.pt in a store version: one upper-case word per line
WORD_START = "\u2581"  # SentencePiece's word-boundary mark


class Lexicon:
    """A set of upper-case words with a prefix test. `extra` words (a session's vocabulary and
    hotwords) join without re-sorting the base list."""

    def __init__(self, words: Iterable[str], extra: Iterable[str] = ()) -> None:
        self._sorted = sorted({w for w in (x.strip().upper() for x in words) if w})
        self._set = set(self._sorted)
        self._extra = sorted({w for w in (x.strip().upper() for x in extra) if w} - self._set)
        self._extra_set = set(self._extra)

    @classmethod
    def read(cls, path: str | Path) -> "Lexicon":
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            return cls(f.read().split())

    def write(self, path: str | Path) -> None:
        """Deterministic bytes (no gzip time stamp), so a store version's sha256 is reproducible."""
        data = ("\n".join(self._sorted + self._extra) + "\n").encode("utf-8")
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
            f.write(data)

    def with_words(self, extra: Iterable[str]) -> "Lexicon":
        """This lexicon plus `extra` words (phrases are split into words)."""
        words = [w for phrase in extra for w in phrase.split()]
        out = Lexicon.__new__(Lexicon)
        out._sorted, out._set = self._sorted, self._set  # shared, never mutated
        out._extra = sorted({w.upper() for w in words} - self._set | set(self._extra))
        out._extra_set = set(out._extra)
        return out

    def __len__(self) -> int:
        return len(self._sorted) + len(self._extra)

    def extends(self, prefix: str) -> bool:
        """Whether one of the added (`extra`) words starts with `prefix`."""
        i = bisect.bisect_left(self._extra, prefix)
        return i < len(self._extra) and self._extra[i].startswith(prefix)

    def __contains__(self, word: str) -> bool:
        return word in self._set or word in self._extra_set

    def is_prefix(self, prefix: str) -> bool:
        """Whether some word starts with `prefix` (the empty prefix always does)."""
        if not prefix:
            return True
        for words in (self._sorted, self._extra):
            i = bisect.bisect_left(words, prefix)
            if i < len(words) and words[i].startswith(prefix):
                return True
        return False


class RowCache(dict):
    """Rows by partial word, shared by every stream of a process that uses the same lexicon and
    penalty; emptied when it reaches `limit` entries (~1 kB each), so a long-running server's
    cache stays bounded whatever its streams say."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, word: str, row: torch.Tensor) -> None:
        if len(self) >= self.limit:
            self.clear()
        self[word] = row


class LexiconScorer:
    """(V,) penalty rows for the beam search, from a hypothesis's partial word.

    `pieces[k]` is the text of output id k ("" for the blank; SentencePiece's ▁ marks a word
    start). Pieces that are not letters (`<unk>`) always pay the penalty.

    `base`: the shared scorer of the lexicon this one extends with a session's own words
    (`Lexicon.with_words`). A partial word that no added word starts with has the base's row,
    but for the word-start pieces an added word may make valid; so this scorer caches only the
    rows of prefixes of its added words, and its memory does not grow with the stream."""

    def __init__(self, lexicon: Lexicon, pieces: Sequence[str], blank: int, penalty: float,
                 max_cached: int = 20_000, base: "LexiconScorer | None" = None) -> None:
        self.lexicon = lexicon
        self.pieces = list(pieces)
        self.blank = blank
        self.penalty = float(penalty)
        self._starts = [p.startswith(WORD_START) for p in self.pieces]
        self._start_ids = [k for k, p in enumerate(self.pieces) if k != blank and self._starts[k]]
        self._cont_ids = [k for k, p in enumerate(self.pieces) if k != blank and p and not self._starts[k]]
        self._start: list[float] | None = None
        self._firsts = sorted({self.pieces[k][0] for k in self._cont_ids})  # letters a continuation can begin with
        self._rows = RowCache(max_cached)
        self.base = base
        self._start_delta: torch.Tensor | None = None  # own start row − the base's (with `base`)

    def partial(self, tokens: Sequence[int]) -> str:
        """The spelling of the hypothesis's last (unfinished) word."""
        parts: list[str] = []
        for k in reversed(tokens):
            p = self.pieces[k]
            if self._starts[k]:
                parts.append(p[len(WORD_START):])
                break
            parts.append(p)
        return "".join(reversed(parts))

    def _bad(self, text: str) -> bool:
        return text.startswith("<") or not self.lexicon.is_prefix(text)

    def closing_penalty(self, word: str) -> float:
        """What a word pays when it ends: a valid prefix that is no word by itself (a word that
        already stopped being a prefix paid when it did)."""
        if not word or word in self.lexicon or self._bad(word):
            return 0.0
        return -self.penalty

    def row(self, word: str) -> torch.Tensor:
        """(V,) log-score added to each expansion of a hypothesis whose partial word is `word`."""
        row = self._rows.get(word)
        if row is not None:
            return row
        if self.base is not None and not self.lexicon.extends(word):
            if self._start_delta is None:
                self._start_delta = torch.tensor(self._start_row()) - torch.tensor(self.base._start_row())
            return self.base.row(word) + self._start_delta
        vals = list(self._start_row())  # word-starting pieces: what the new word's start costs
        close = self.closing_penalty(word)
        if close:
            for k in self._start_ids:
                vals[k] += close
        if not (word and self._bad(word)):  # a word that already paid continues for free
            nexts = self._next_letters(word)
            for k in self._cont_ids:
                p = self.pieces[k]
                if p[0] not in nexts or self._bad(word + p):
                    vals[k] = -self.penalty
        row = torch.tensor(vals)
        self._rows.put(word, row)
        return row

    def _start_row(self) -> list[float]:
        """The row's part that depends on no partial word: each word-starting piece pays when
        its own spelling starts no word. Computed once."""
        if self._start is None:
            self._start = [0.0] * len(self.pieces)
            for k in self._start_ids:
                if self._bad(self.pieces[k][len(WORD_START):]):
                    self._start[k] = -self.penalty
        return self._start

    def _next_letters(self, word: str) -> set[str]:
        """Letters that can follow `word` inside some lexicon word: ~27 prefix tests that spare
        most pieces theirs (a piece whose first letter cannot follow is out already)."""
        return {c for c in self._firsts if self.lexicon.is_prefix(word + c)}

    def rows(self, hyps: Sequence[Sequence[int]]) -> torch.Tensor:
        """(K, V) rows for a beam's hypotheses."""
        return torch.stack([self.row(self.partial(h)) for h in hyps])

    def final_penalty(self, tokens: Sequence[int]) -> float:
        """Correction when a hypothesis ends: its last word closes."""
        return self.closing_penalty(self.partial(tokens))
