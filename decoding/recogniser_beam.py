"""Beam-search streams inside the recogniser: the small hook `decoding/recogniser.py` calls.

Why a separate file: the recogniser owns buffering, the encoder, endpoints and words; this owns
which search a stream uses and how a beam's best hypothesis becomes the stream's emissions. The
recogniser keeps one `BeamDecoding` (model view + external LM, loaded once) and, for a stream
whose options ask for it, a `BeamStream` on the stream object. Hotwords imply beam search:
biasing needs alternatives to choose between.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from decoding.beam_search import BeamSearch, BeamStream, Hypothesis
from decoding.greedy import Emission
from decoding.hotwords import HotwordTrie
from decoding.lexicon import LEXICON_FILE, Lexicon, LexiconScorer
from decoding.options import DecodingOptions
from decoding.scorers import load_external_lm
from decoding.tokenizer import Tokenizer
from decoding.transducer_view import TransducerSearchView
from minutes.types import Alternative, Word
from models.transducer import Transducer

__all__ = ["BeamDecoding", "LM_FILE"]

LM_FILE = "lm.pt"  # an external LM beside model.pt is loaded with it (n-gram: lm.pkl)


class BeamDecoding:
    """Per-process beam search state: the model's search view and the optional external LM."""

    def __init__(self, model: Transducer, tok: Tokenizer, lm_path: str | Path | None = None,
                 lexicon: Lexicon | None = None) -> None:
        self.tok = tok
        lm = load_external_lm(str(lm_path), model.cfg.vocab_size, tokenizer=tok.proto) if lm_path else None
        self.search = BeamSearch(TransducerSearchView(model), lm)
        self.pieces = [""] + [tok.piece(i) for i in range(1, tok.vocab_size)]  # text of each output id
        self.set_lexicon(lexicon)

    def set_lexicon(self, lexicon: Lexicon | None) -> None:
        """The word list streams with `oov_penalty` > 0 are checked against (None: none); the
        shared scorers of a previous list are dropped with it."""
        self.lexicon = lexicon
        self._scorers: dict[float, LexiconScorer] = {}  # one per penalty: their row caches are shared

    @classmethod
    def for_model_dir(cls, model: Transducer, tok: Tokenizer, folder: Path) -> "BeamDecoding":
        lexicon = Lexicon.read(folder / LEXICON_FILE) if (folder / LEXICON_FILE).exists() else None
        for name in (LM_FILE, "lm.pkl"):
            if (folder / name).exists():
                return cls(model, tok, folder / name, lexicon)
        return cls(model, tok, lexicon=lexicon)

    def lexicon_scorer(self, options: DecodingOptions) -> LexiconScorer | None:
        """The stream's lexicon scorer: shared when it adds no words (its rows are cached
        across streams), its own when the session brings vocabulary or hotwords."""
        if not options.oov_penalty or self.lexicon is None:
            return None
        scorer = self._scorers.get(options.oov_penalty)
        if scorer is None:
            scorer = self._scorers[options.oov_penalty] = LexiconScorer(self.lexicon, self.pieces, 0, options.oov_penalty)
        extra = options.vocabulary + options.hotwords
        if extra:
            return LexiconScorer(self.lexicon.with_words(extra), self.pieces, 0, options.oov_penalty, base=scorer)
        return scorer

    @staticmethod
    def wants(options: DecodingOptions) -> bool:
        return options.search == "beam" or bool(options.hotwords)

    def new(self, options: DecodingOptions) -> BeamStream:
        trie = HotwordTrie.from_words(options.hotwords, self.tok.encode, options.hotword_boost) if options.hotwords else None
        return self.search.new_stream(options, trie, self.lexicon_scorer(options))

    @torch.no_grad()
    def decode(self, streams: Sequence[Any], enc: torch.Tensor, n: int) -> None:
        """Advance the beams of recogniser streams (each with `.beam`) over enc (S, n, D);
        the best hypothesis becomes the stream's current-segment emissions."""
        beams = [s.beam for s in streams]
        self.search.search(beams, enc, torch.full((len(beams),), n))
        for s, b in zip(streams, beams):
            s.emissions = emissions(self.search.nbest(b, 1)[0])
            if s.emissions:
                s.last_emit = max(s.last_emit, s.emissions[-1].frame)

    def stable_tokens(self, s: Any) -> int:
        return self.search.stable_tokens(s.beam)

    def alternatives(self, s: Any, n: int, words: Callable[[list[Emission]], list[Word]]) -> list[Alternative]:
        """The segment's `n` best distinct texts so far, best first, as words with their own times.

        The whole beam is read: two token sequences can spell one text (pieces split a word
        differently), and such hypotheses are one alternative, their probability added, the
        better one's words kept. `confidence` is each text's share of the beam's probability
        (softmax of the search scores)."""
        hyps = self.search.nbest(s.beam, s.beam.size)
        if not hyps:
            return []
        top = hyps[0].score
        texts: dict[str, tuple[float, Hypothesis, tuple[Word, ...]]] = {}
        for h in hyps:
            ws = tuple(words(emissions(h)))
            text = " ".join(w.text for w in ws)
            m = math.exp(h.score - top)
            if text in texts:
                texts[text] = (texts[text][0] + m, texts[text][1], texts[text][2])
            else:
                texts[text] = (m, h, ws)
        total = sum(m for m, _, _ in texts.values())
        return [Alternative(text, round(m / total, 6), round(h.score, 3), ws)
                for text, (m, h, ws) in list(texts.items())[:n]]

    def reset(self, s: Any) -> list[Emission]:
        """Close the segment: the best hypothesis's emissions; the beam restarts from it."""
        return emissions(self.search.reset_segment(s.beam))


def emissions(h: Hypothesis) -> list[Emission]:
    return [Emission(t, f, p) for t, f, p in zip(h.tokens, h.frames, h.probs)]
