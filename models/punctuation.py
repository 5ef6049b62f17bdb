"""Punctuation and true casing of recognised words: a small bidirectional word tagger.

The recogniser speaks minutes' alphabet (upper case, no punctuation; `minutes` normalises every
transcript so WER measures recognition, not spelling). People read sentences. This tagger
restores them after each final: for every word it predicts the mark that follows it and the
case it is written in, from the words alone (no audio), so it can run on any final within a few
milliseconds and be trained on text only.

- Marks: none, comma, full stop, question mark ("!" reads as a full stop, ";" and ":" as commas:
  what a listener can hear differs little, and the rare classes would starve).
- Cases: lower, Title, UPPER, and "mixed" for words whose written form is neither ("McDonald",
  "iPhone"), spelled from a lexicon learnt with the model.
- Words are embedded by id (frequent words) plus hashed character n-grams (fastText style), so
  names and words never seen in training still get a useful vector.

`Punctuator` is the run-time side: load from a store folder, `punctuate(words, context)`.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "MARKS", "CASES", "PunctuatorConfig", "PunctuationTagger", "WordEncoder", "Punctuator",
    "display_form", "case_of",
]

MARKS = ("", ",", ".", "?")
CASES = ("lower", "title", "upper", "mixed")
PAD_ID, UNK_ID = 0, 1


@dataclass
class PunctuatorConfig:
    """Sizes of the tagger; `vocab` is stored beside the weights (vocab.json)."""

    vocab_size: int = 20000
    ngram_buckets: int = 16384
    ngram_range: tuple[int, int] = (3, 5)
    dim: int = 128
    hidden: int = 192
    layers: int = 2
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PunctuatorConfig":
        data = dict(data)
        if "ngram_range" in data:
            data["ngram_range"] = tuple(data["ngram_range"])
        return cls(**data)


def case_of(written: str) -> str:
    """The case class of a written word ("Don't" -> title, "NASA" -> upper, "iPhone" -> mixed)."""
    letters = [c for c in written if c.isalpha()]
    if not letters:
        return "lower"
    if all(c.islower() for c in letters):
        return "lower"
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return "title"  # "I" and "A" too: one capital letter is a title-cased word
    if all(c.isupper() for c in letters):
        return "upper"
    return "mixed"


def display_form(word: str, case: str, mark: str, mixed: dict[str, str] | None = None) -> str:
    """The written form of a normalised word ("DON'T", "title", ",") -> "Don't,"."""
    low = word.lower()
    if case == "title":
        text = low[:1].upper() + low[1:]
    elif case == "upper":
        text = word.upper()
    elif case == "mixed":
        text = (mixed or {}).get(word.upper(), low[:1].upper() + low[1:])
    else:
        text = low
    return text + mark


class WordEncoder:
    """Normalised word -> (id, hashed character n-gram ids). crc32 keeps the hash stable across
    processes and Python versions (Python's own `hash` is salted per process)."""

    def __init__(self, vocab: list[str], cfg: PunctuatorConfig):
        self.vocab = vocab
        self.cfg = cfg
        self.index = {w: i + 2 for i, w in enumerate(vocab)}  # 0 pad, 1 unknown

    def word_id(self, word: str) -> int:
        return self.index.get(word, UNK_ID)

    def ngrams(self, word: str) -> list[int]:
        lo, hi = self.cfg.ngram_range
        w = f"<{word}>"
        grams = [w[i:i + n] for n in range(lo, hi + 1) for i in range(max(1, len(w) - n + 1))]
        return [zlib.crc32(g.encode()) % self.cfg.ngram_buckets for g in grams] or [0]

    def encode(self, sequences: list[list[str]]) -> dict[str, torch.Tensor]:
        """A padded batch: word ids (B, T), lengths (B,), and the n-grams of every real word
        flattened in (b, t) order with their offsets, for `nn.EmbeddingBag`."""
        T = max(1, max(len(s) for s in sequences))
        ids = torch.zeros(len(sequences), T, dtype=torch.long)
        flat: list[int] = []
        offsets: list[int] = []
        for b, words in enumerate(sequences):
            for t, w in enumerate(words):
                ids[b, t] = self.word_id(w)
                offsets.append(len(flat))
                flat += self.ngrams(w)
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
        return {"ids": ids, "lengths": lengths, "ngrams": torch.tensor(flat or [0], dtype=torch.long),
                "offsets": torch.tensor(offsets or [0], dtype=torch.long)}


class PunctuationTagger(nn.Module):
    """Word + n-gram embeddings -> BiLSTM -> two heads (mark after the word, case of the word)."""

    def __init__(self, cfg: PunctuatorConfig):
        super().__init__()
        self.cfg = cfg
        self.words = nn.Embedding(cfg.vocab_size + 2, cfg.dim, padding_idx=PAD_ID)
        self.grams = nn.EmbeddingBag(cfg.ngram_buckets, cfg.dim, mode="mean")
        self.drop = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(cfg.dim, cfg.hidden, num_layers=cfg.layers, batch_first=True,
                            bidirectional=True, dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.mark_head = nn.Linear(2 * cfg.hidden, len(MARKS))
        self.case_head = nn.Linear(2 * cfg.hidden, len(CASES))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, ngrams: torch.Tensor,
                offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mark logits, case logits), each (B, T, classes); padded steps are garbage."""
        B, T = ids.shape
        x = self.words(ids)
        real = torch.arange(T)[None, :] < lengths[:, None]
        if int(real.sum()):
            g = self.grams(ngrams, offsets)  # (N real words, dim), in (b, t) order
            x = _add_at(x, real, g)
        x = self.drop(x)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1), batch_first=True,
                                                   enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=T)
        h = self.drop(h)
        return self.mark_head(h), self.case_head(h)


def _add_at(x: torch.Tensor, real: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """x + g scattered onto the real (b, t) positions, in row-major order."""
    out = x.clone()
    out[real] = out[real] + g
    return out


@dataclass
class Punctuator:
    """The run-time tagger: normalised words in, written words out."""

    model: PunctuationTagger
    encoder: WordEncoder
    mixed: dict[str, str] = field(default_factory=dict)  # "MCDONALD" -> "McDonald"
    context_words: int = 12  # words of the previous final shown as left context

    @classmethod
    def load(cls, folder: Path) -> "Punctuator":
        folder = Path(folder)
        cfg = PunctuatorConfig.from_dict(json.loads((folder / "config.json").read_text()))
        vocab = json.loads((folder / "vocab.json").read_text())
        model = PunctuationTagger(cfg)
        state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() for k, v in state.items()})
        model.eval()
        return cls(model, WordEncoder(vocab["words"], cfg), vocab.get("mixed", {}))

    @torch.inference_mode()
    def tag(self, words: list[str], context: list[str] = ()) -> list[tuple[str, str]]:
        """(case, mark) for each of `words`; `context` (the previous final's words) only
        informs the first words (a capital after a full stop, a question's start)."""
        if not words:
            return []
        ctx = [w.upper() for w in list(context)[-self.context_words:]]
        seq = ctx + [w.upper() for w in words]
        marks, cases = self.model(**self.encoder.encode([seq]))
        m = marks[0, len(ctx):].argmax(-1).tolist()
        c = cases[0, len(ctx):].argmax(-1).tolist()
        return [(CASES[ci], MARKS[mi]) for ci, mi in zip(c, m)]

    def punctuate(self, words: list[str], context: list[str] = ()) -> list[str]:
        """The display form of each word: cased, with the mark that follows it."""
        return [display_form(w, c, m, self.mixed) for w, (c, m) in zip(words, self.tag(words, context))]
