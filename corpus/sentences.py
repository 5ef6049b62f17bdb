"""Sentence sources for synthetic speech: Debian text packages, essential-generators, and
meeting-style phrases generated from templates.

A recogniser trained on TTS learns the text as much as the voices, so variety matters more
than volume: the pool mixes scripture, aphorisms, dictionary glosses, satire, Markov word
salad and meeting talk, each normalised by `corpus.text.normalise_text` and kept only when
4-32 words long (about 2-12 s of speech). A fixed ~3 % of sentences, chosen by hash, is kept
for test sets only (`is_test_text`), so test transcripts are never trained on.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from corpus.text import normalise_text

__all__ = ["SentencePool", "load_pool", "meeting_phrases", "meeting_phrases_written", "is_test_text"]

FORTUNE_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")
DEVIL_DICT = Path("/usr/share/dictd/devil.dict.dz")
MIN_WORDS, MAX_WORDS = 4, 32
# Sampling weight per source (the raw pools differ in size by 10x; wordnet alone would swamp).
SOURCE_WEIGHTS = {
    "bible": 0.20, "fortunes": 0.22, "wordnet": 0.18, "devil": 0.08, "essential": 0.07, "meeting": 0.25,
}
_SENT_SPLIT = re.compile(r"(?<=[.!?;:])\s+")


def is_test_text(text: str) -> bool:
    return int(hashlib.sha1(text.encode()).hexdigest()[:6], 16) % 100 < 3


def mostly_letters(text: str) -> bool:
    """Prose, not ascii art, code or tables: letters are at least 70 % of the non-space characters."""
    return sum(c.isalpha() for c in text) >= 0.7 * max(1, len(text.replace(" ", "")))


def _clean_sentences(raw: str) -> list[str]:
    out = []
    for s in _SENT_SPLIT.split(" ".join(raw.split())):
        if not mostly_letters(s):
            continue  # ascii art, code, tables
        t = normalise_text(s)
        if MIN_WORDS <= len(t.split()) <= MAX_WORDS:
            out.append(t)
    return out


# ---- the sources as written (training/punctuation_data.py reads these too) ------------------
def fortune_entries(folder: Path = FORTUNE_DIR) -> Iterator[str]:
    """Every fortune as written, its attribution lines ("-- Author") left out; none when the
    folder is missing. The offensive, ascii-art and perl files are passed over."""
    if not folder.is_dir():
        return
    for f in sorted(folder.iterdir()):
        if f.suffix in (".dat", ".u8") or not f.is_file() or f.name in ("art", "ascii-art", "perl"):
            continue
        for entry in f.read_text(encoding="latin-1").split("\n%\n"):
            yield "\n".join(line for line in entry.splitlines() if not line.strip().startswith("--"))


def bible_verses() -> list[tuple[str, str]]:
    """(reference "Book:chapter:verse", text) of every verse, from the `bible` command; [] without it."""
    try:
        txt = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    verses = []
    for line in txt.splitlines():
        if " " in line:
            ref, verse = line.split(" ", 1)
            verses.append((ref, verse))
    return verses


def devil_text(path: Path = DEVIL_DICT) -> str | None:
    """The Devil's Dictionary as written, from its preface on; None without the file."""
    if not path.exists():
        return None
    with gzip.open(path, "rt", encoding="latin-1") as f:
        return f.read().split("PREFACE", 1)[-1]


def essential_sentences(n: int, seed: int) -> list[str]:
    """`n` sentences of essential-generators' word salad, as written, the same for the same seed;
    the global `random` state (which the generator draws from) is left as it was."""
    from essential_generators import DocumentGenerator

    state = random.getstate()
    random.seed(seed)
    try:
        g = DocumentGenerator()
        return [g.sentence() for _ in range(n)]
    finally:
        random.setstate(state)


# ---- the sources normalised, for the recogniser's corpora -------------------------------------
def read_fortunes(folder: Path = FORTUNE_DIR) -> list[str]:
    return [t for body in fortune_entries(folder) for t in _clean_sentences(body)]


def read_bible() -> list[str]:
    return [t for _, verse in bible_verses() for t in _clean_sentences(verse)]


def read_wordnet(folder: Path = WORDNET_DIR) -> list[str]:
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        f = folder / f"data.{pos}"
        if not f.exists():
            continue
        for line in f.read_text(encoding="latin-1").splitlines():
            if line.startswith(" ") or "|" not in line:
                continue
            for part in line.split("|", 1)[1].split(";"):
                part = part.strip().strip('"')
                t = normalise_text(part)
                if MIN_WORDS <= len(t.split()) <= MAX_WORDS:
                    out.append(t)
    return out


def read_devil(path: Path = DEVIL_DICT) -> list[str]:
    raw = devil_text(path)
    return [] if raw is None else _clean_sentences(raw)


def read_essential(n: int = 20000, seed: int = 1234) -> list[str]:
    raw = essential_sentences(n, seed)
    return [t for s in raw for t in [normalise_text(s)] if MIN_WORDS <= len(t.split()) <= MAX_WORDS]


# ---- meeting talk ---------------------------------------------------------------------------
_NAMES = (
    "Anna Ben Carlos Dana Erik Fatima George Hannah Ivan Julia Kenji Laura Mohammed Nina Oscar "
    "Priya Quentin Rosa Sam Tariq Uma Victor Wendy Xavier Yusuf Zoe Alex Chris Maria Tom"
).split()
_TOPICS = (
    "budget|roadmap|hiring plan|release|marketing campaign|customer feedback|security review|"
    "quarterly report|migration|onboarding|pricing|design review|test results|sales pipeline|"
    "office move|training schedule|server outage|database upgrade|mobile app|contract renewal"
).split("|")
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "next week", "the end of the month",
         "tomorrow", "the first of March", "the twelfth", "after the holidays"]
_TEMPLATES = (
    "Let's move on to the {topic}",
    "{name}, can you give us a quick update on the {topic}?",
    "I think we should push the {topic} to {day}",
    "Can everyone see my screen?",
    "Sorry, {name}, I think you're on mute",
    "The {topic} is about {n} percent done",
    "We spent {n} thousand dollars on the {topic} last quarter",
    "I'll send the notes about the {topic} after the meeting",
    "Does anyone have questions about the {topic}?",
    "{name} and {name2} will take the {topic}",
    "Can we schedule a follow up on {day} at {hour} o'clock?",
    "I'm not sure that's right, the numbers for the {topic} looked different",
    "Good point, {name}, let's add that to the action items",
    "We have {n} open tickets on the {topic} right now",
    "Let me share the latest numbers on the {topic}",
    "I agree with {name}, we need more time for the {topic}",
    "Who is taking notes today?",
    "Could you repeat that, {name}? You cut out for a second",
    "The deadline for the {topic} is {day}",
    "We're about {n} minutes over, so let's wrap up",
    "Thanks everyone, that's all for today",
    "Before we start, {name} has a short announcement",
    "Let's take the {topic} offline and discuss it on {day}",
    "My main concern with the {topic} is the timeline",
    "I think the {topic} needs {n} more people",
    "Has anyone talked to the customer about the {topic} yet?",
    "Okay, so the plan is to finish the {topic} by {day}",
    "I'll check with {name} and get back to you on {day}",
    "Just to summarise, we agreed on the {topic} and the {topic2}",
    "Can we go back to the {topic} for a minute?",
)


def meeting_phrases(n: int, seed: int = 4321) -> list[str]:
    """`n` meeting-style sentences from templates with names, topics, days and numbers."""
    return [normalise_text(s) for s in meeting_phrases_written(n, seed)]


def meeting_phrases_written(n: int, seed: int = 4321) -> list[str]:
    """`meeting_phrases` as written, cased and punctuated (the punctuation model learns from
    these; the recogniser's corpora take the normalised form)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = rng.choice(_TEMPLATES)
        name, name2 = rng.sample(_NAMES, 2)
        topic, topic2 = rng.sample(_TOPICS, 2)
        s = t.format(
            name=name, name2=name2, topic=topic, topic2=topic2, day=rng.choice(_DAYS),
            n=rng.choice([2, 3, 5, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 90, 120, 250]), hour=rng.randint(1, 12),
        )
        # Sometimes two phrases run together, as people do.
        if rng.random() < 0.3:
            s += ". " + rng.choice(_TEMPLATES).format(
                name=name2, name2=name, topic=topic2, topic2=topic, day=rng.choice(_DAYS), n=rng.randint(2, 60),
                hour=rng.randint(1, 12),
            )
        out.append(s if s.endswith("?") else s + ".")
    return out


@dataclass
class SentencePool:
    """Deduplicated sentences per source, split into train-only and test-only by hash."""

    train: dict[str, list[str]]
    test: dict[str, list[str]]

    def sample(self, rng: random.Random, split: str = "train") -> tuple[str, str]:
        """(source, sentence): a source by `SOURCE_WEIGHTS` (among non-empty ones), then a
        sentence uniformly within it."""
        pools = self.train if split == "train" else self.test
        names = [k for k in SOURCE_WEIGHTS if pools.get(k)]
        src = rng.choices(names, weights=[SOURCE_WEIGHTS[k] for k in names])[0]
        return src, rng.choice(pools[src])

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.train.items()}


@lru_cache(maxsize=1)
def load_pool() -> SentencePool:
    """Read every source once per process (~10 s) and split it; the order is deterministic."""
    raw = {
        "bible": read_bible(), "fortunes": read_fortunes(), "wordnet": read_wordnet(), "devil": read_devil(),
        "essential": read_essential(), "meeting": meeting_phrases(30000),
    }
    train: dict[str, list[str]] = {}
    test: dict[str, list[str]] = {}
    seen: set[str] = set()
    for src, sents in raw.items():
        uniq = [s for s in dict.fromkeys(sents) if s not in seen]
        seen.update(uniq)
        train[src] = [s for s in uniq if not is_test_text(s)]
        test[src] = [s for s in uniq if is_test_text(s)]
    return SentencePool(train, test)
