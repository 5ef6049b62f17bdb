"""Written text -> labelled words for the punctuation and casing tagger (models/punctuation.py).

The sources are the corpus builder's own (corpus/sentences.py), read as written: cased and
punctuated. Each is cut into documents (a fortune, a Bible chapter, a dictionary entry, a
stretch of meeting talk) so a training window can cross sentence boundaries the way a final
does. A document is held out when `is_test_text` says so of its normalised text, the same rule
that keeps the recogniser's test transcripts out of its training text.

Labelling a written token: its trailing punctuation gives the mark after it; its letters give
the case; `normalise_text` gives the word(s) the recogniser would emit ("1984," -> NINETEEN
EIGHTY FOUR + comma after FOUR; "well-known" -> WELL KNOWN).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from corpus.sentences import (DEVIL_DICT, FORTUNE_DIR, bible_verses, devil_text, essential_sentences, fortune_entries,
                              is_test_text, meeting_phrases_written, mostly_letters)
from corpus.text import normalise_text
from models.punctuation import case_of

__all__ = ["LabelledWord", "Document", "label_text", "load_documents", "mixed_lexicon"]

# Mark strength: a "?" anywhere in a token's tail wins, then a full stop, then a comma.
_MARK_OF = {"?": "?", ".": ".", "!": ".", ",": ",", ";": ",", ":": ","}
_STRENGTH = {"": 0, ",": 1, ".": 2, "?": 3}
_EDGES = re.compile(r"^([^\w$£€]*)(.*?)([^\w%]*)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class LabelledWord:
    word: str  # normalised, as the recogniser emits it
    case: str  # models.punctuation.CASES
    mark: str  # models.punctuation.MARKS
    written: str  # the written letters, for the mixed-case lexicon


@dataclass
class Document:
    source: str
    words: list[LabelledWord]
    sentence_ends: list[int] = field(default_factory=list)  # indices of sentence-final words


def _mark(tail: str) -> str:
    best = ""
    for c in tail:
        m = _MARK_OF.get(c, "")
        if _STRENGTH[m] > _STRENGTH[best]:
            best = m
    return best


def label_text(text: str) -> list[LabelledWord]:
    """Labelled words of written text, in order."""
    out: list[LabelledWord] = []
    for token in text.split():
        _, core, tail = _EDGES.match(token).groups()
        mark = _mark(tail)
        words = normalise_text(core).split() if core else []
        if not words:
            if mark and out and _STRENGTH[mark] > _STRENGTH[out[-1].mark]:
                out[-1] = LabelledWord(out[-1].word, out[-1].case, mark, out[-1].written)
            continue
        pieces = [p for p in re.split(r"[^A-Za-z']+", core) if p.strip("'")]
        spelled = any(c.isdigit() for c in core) or len(pieces) != len(words)
        for i, w in enumerate(words):
            written = core if spelled else pieces[i]
            case = "lower" if any(c.isdigit() for c in core) else case_of(written)
            out.append(LabelledWord(w, case, mark if i == len(words) - 1 else "", written.strip("'")))
    return out


def _document(source: str, sentences: list[str]) -> Document | None:
    words: list[LabelledWord] = []
    ends: list[int] = []
    for s in sentences:
        if not mostly_letters(s):
            continue  # ascii art, code, tables
        lw = label_text(s)
        if not lw:
            continue
        words += lw
        ends.append(len(words) - 1)
    return Document(source, words, ends) if len(words) >= 4 else None


def _fortunes(folder: Path = FORTUNE_DIR) -> list[list[str]]:
    return [_SENTENCE_END.split(" ".join(body.split())) for body in fortune_entries(folder)]


def _bible() -> list[list[str]]:
    chapters: dict[str, list[str]] = {}
    for ref, verse in bible_verses():
        chapters.setdefault(ref.split(":")[0], []).append(verse)
    return [_SENTENCE_END.split(" ".join(v)) for v in chapters.values()]


def _devil(path: Path = DEVIL_DICT) -> list[list[str]]:
    raw = devil_text(path)
    if raw is None:
        return []
    entries = re.split(r"\n(?=[A-Z][A-Z' -]+,)", raw)  # an entry starts "WORD, n."
    return [_SENTENCE_END.split(" ".join(e.split())) for e in entries]


def _meeting(n: int = 6000, seed: int = 97) -> list[list[str]]:
    """Meeting talk: runs of 1-6 template phrases, as a speaker's turn."""
    phrases = meeting_phrases_written(n, seed)
    rng = random.Random(seed)
    docs, i = [], 0
    while i < len(phrases):
        k = rng.randint(1, 6)
        docs.append(phrases[i:i + k])
        i += k
    return docs


def _essential(n: int = 8000, seed: int = 1234) -> list[list[str]]:
    raw = essential_sentences(n, seed)
    return [raw[i:i + 4] for i in range(0, len(raw), 4)]


READERS = {"fortunes": _fortunes, "bible": _bible, "devil": _devil, "meeting": _meeting,
           "essential": _essential}


def load_documents(sources: tuple[str, ...] = tuple(READERS)) -> tuple[list[Document], list[Document]]:
    """(train, test) documents of the named sources; the split is by `is_test_text`."""
    train: list[Document] = []
    test: list[Document] = []
    for name in sources:
        for sentences in READERS[name]():
            doc = _document(name, sentences)
            if doc is None:
                continue
            key = " ".join(w.word for w in doc.words[:64])
            (test if is_test_text(key) else train).append(doc)
    return train, test


def mixed_lexicon(docs: list[Document], min_count: int = 2) -> dict[str, str]:
    """The most common written form of each word that is written in mixed case."""
    forms: dict[str, Counter] = {}
    for d in docs:
        for w in d.words:
            if w.case == "mixed":
                forms.setdefault(w.word, Counter())[w.written] += 1
    return {k: c.most_common(1)[0][0] for k, c in forms.items() if c.most_common(1)[0][1] >= min_count}
