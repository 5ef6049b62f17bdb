"""A token n-gram LM (interpolated Witten-Bell), the no-training-needed external LM option.

It lives in `decoding/` rather than `models/` because it is counts, not an `nn.Module`. It uses
the same piece ids as `models.lm.TokenLM` (id `vocab_size` = sentence start/end), and offers
the same search view (`init_state`, `step`), so a scorer can wrap either. Witten-Bell rather
than Kneser-Ney because it needs no discount tuning and behaves on a few MB of text;
rows of the distribution are built densely (V+1 floats) and cached per context, since the beam
search asks for a whole row at every expansion.
"""

from __future__ import annotations

import os
import pickle
from collections import defaultdict
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
import torch

__all__ = ["NgramLM"]


class NgramLM:
    """Order-n token LM over `vocab_size` pieces plus `bos_eos = vocab_size`."""

    def __init__(self, vocab_size: int, order: int = 4) -> None:
        if order < 1:
            raise ValueError("order must be ≥ 1")
        self.vocab_size = vocab_size
        self.order = order
        self.bos_eos = vocab_size
        # context tuple (length 0..order-1) -> {token: count}
        self.counts: dict[tuple[int, ...], dict[int, int]] = defaultdict(dict)
        self.meta: dict = {}
        self._row = lru_cache(maxsize=65536)(self._row_uncached)

    def fit(self, sentences: Iterable[Sequence[int]]) -> "NgramLM":
        for sent in sentences:
            seq = [self.bos_eos] + [int(t) for t in sent] + [self.bos_eos]
            for i in range(1, len(seq)):
                for k in range(self.order):
                    if i - k < 0:
                        break
                    ctx = tuple(seq[i - k:i])
                    row = self.counts[ctx]
                    row[seq[i]] = row.get(seq[i], 0) + 1
        self.counts = dict(self.counts)
        self._row.cache_clear()
        return self

    def _row_uncached(self, ctx: tuple[int, ...]) -> np.ndarray:
        n = self.vocab_size + 1
        if ctx == ():
            lower = np.full(n, 1.0 / n)
        else:
            lower = self._row(ctx[1:])
        seen = self.counts.get(ctx)
        if not seen:
            return lower
        toks = np.fromiter(seen.keys(), dtype=np.int64)
        cnts = np.fromiter(seen.values(), dtype=np.float64)
        total, types = cnts.sum(), len(cnts)
        row = lower * (types / (total + types))
        row[toks] += cnts / (total + types)
        return row

    def logprobs(self, context: Sequence[int]) -> np.ndarray:
        """(V+1,) log P(· | context); context starts with bos_eos for a sentence start."""
        ctx = tuple(context[-(self.order - 1):]) if self.order > 1 else ()
        return np.log(self._row(ctx))

    def sentence_logprob(self, sent: Sequence[int], eos: bool = True) -> float:
        seq = [self.bos_eos] + list(sent) + ([self.bos_eos] if eos else [])
        return float(sum(self.logprobs(seq[:i])[seq[i]] for i in range(1, len(seq))))

    # ---- search view (same shape as TokenLM's) ----------------------------------------
    def init_state(self, n: int) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
        state = [(self.bos_eos,)] * n
        return self._rows(state), state

    def step(self, tokens: torch.Tensor, state: list[tuple[int, ...]]) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
        keep = self.order - 1
        new = [((ctx + (int(t),))[-keep:] if keep else ()) for ctx, t in zip(state, tokens.tolist())]
        return self._rows(new), new

    def _rows(self, state: list[tuple[int, ...]]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.logprobs(c) for c in state])).float()

    def save(self, path: str | os.PathLike[str], **meta) -> None:
        """Counts plus any metadata (e.g. the tokenizer bytes the pieces come from)."""
        with open(path, "wb") as f:
            pickle.dump({"vocab_size": self.vocab_size, "order": self.order, "counts": self.counts, **meta}, f)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "NgramLM":
        with open(path, "rb") as f:
            d = pickle.load(f)
        lm = cls(d["vocab_size"], d["order"])
        lm.counts = d["counts"]
        lm.meta = {k: v for k, v in d.items() if k not in ("vocab_size", "order", "counts")}
        return lm
