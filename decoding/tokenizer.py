"""SentencePiece BPE tokenizer with the transducer's id layout (blank = 0, piece i -> i + 1).

Why a wrapper: the transducer and CTC reserve id 0 for blank, so every caller would otherwise
have to remember the +1 shift. The model file's bytes travel inside checkpoints and the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import sentencepiece as spm


class Tokenizer:
    def __init__(self, model_proto: bytes) -> None:
        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        return cls(Path(path).read_bytes())

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, workdir: str | Path) -> "Tokenizer":
        """BPE over the training transcripts (upper case, no punctuation)."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        corpus = workdir / "spm_texts.txt"
        corpus.write_text("\n".join(t for t in texts if t.strip()) + "\n", encoding="utf-8")
        prefix = workdir / "spm"
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(prefix), vocab_size=vocab_size, model_type="bpe",
            character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1,
            num_threads=1, minloglevel=2,
        )
        return cls.load(f"{prefix}.model")

    @property
    def vocab_size(self) -> int:
        """Transducer vocabulary: pieces + blank."""
        return self.sp.get_piece_size() + 1

    def encode(self, text: str) -> list[int]:
        return [i + 1 for i in self.sp.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i - 1 for i in ids if i > 0])

    def piece(self, token: int) -> str:
        return self.sp.id_to_piece(token - 1)

    def starts_word(self, token: int) -> bool:
        """Whether a token begins a new word (SentencePiece's '▁' prefix)."""
        return self.piece(token).startswith("\u2581")

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.proto)


class CharTokenizer:
    """Letters, apostrophe and word space for the auxiliary CTC head (blank = 0).

    Why characters there: with a few hours of speech, a 28-symbol CTC target gives each
    output many examples per batch, and the encoder starts aligning sooner than with 256 BPE
    pieces; the transducer keeps BPE. `piece` renders the space as SentencePiece's '▁' so the
    recogniser groups characters into words the same way it groups pieces.
    """

    ALPHABET = " ABCDEFGHIJKLMNOPQRSTUVWXYZ'"

    def __init__(self) -> None:
        self.index = {c: i + 1 for i, c in enumerate(self.ALPHABET)}

    @property
    def vocab_size(self) -> int:
        return len(self.ALPHABET) + 1

    def encode(self, text: str) -> list[int]:
        return [self.index[c] for c in " ".join(text.split()) if c in self.index]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join("".join(self.ALPHABET[i - 1] for i in ids if i > 0).split())

    def piece(self, token: int) -> str:
        c = self.ALPHABET[token - 1]
        return "\u2581" if c == " " else c
