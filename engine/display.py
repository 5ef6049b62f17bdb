"""Readable text for a stream: the punctuator's cased, punctuated words in place of the
recogniser's normalised tokens (issue 16).

The recogniser speaks minutes' normalised alphabet ("DON'T", "TWENTY ONE"); people read
"Don't." A `DisplayWriter` per stream turns each final's words into display words, keeping the
normalised token beside each (`Word.token`), and gives partials the same look without breaking
the protocol's promise that `text[:stable_chars]` never changes: the display form of a word is
pinned the first time it is sent inside the stable prefix.

Why left context: a final's first word is capitalised only if the previous final ended a
sentence, and "so what do you think" is a question only given what came before. The tagger sees
the previous final's last words (`Punctuator.context_words`) but only labels the new ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol, Sequence

from minutes.types import Word

FORMATS = ("display", "raw")  # options.format: the punctuator's text, or the recogniser's tokens


class Punctuates(Protocol):
    """What the writer needs of `models.punctuation.Punctuator`."""

    context_words: int
    mixed: dict[str, str]  # "MCDONALD" -> "McDonald": the words whose written case is neither

    def punctuate(self, words: list[str], context: list[str] = ()) -> list[str]: ...


SENTENCE_ENDS = (".", "?")
_ALWAYS_CAPITAL = {"I", "I'M", "I'LL", "I'D", "I'VE"}  # partials: what no context changes


@dataclass(frozen=True)
class DisplayPartial:
    text: str
    stable_chars: int


@dataclass
class DisplayWriter:
    """One stream's display state: the previous finals' tokens (the tagger's left context) and
    whether the last final closed a sentence. Used by the stream's worker thread only."""

    punctuator: Punctuates
    mixed: dict[str, str] = field(default_factory=dict)  # "MCDONALD" -> "McDonald"
    context: list[str] = field(default_factory=list)  # normalised tokens of the last finals
    sentence_open: bool = False  # the last final did not end with . or ?

    def __post_init__(self) -> None:
        self.mixed = self.mixed or dict(self.punctuator.mixed)

    def final(self, words: Sequence[Word]) -> list[Word]:
        """The segment's words with display text, the normalised token kept in `token`."""
        tokens = [w.text for w in words]
        if not tokens:
            return list(words)
        shown = [d or t for d, t in zip(self.punctuator.punctuate(tokens, self.context), tokens)]
        if not self.sentence_open:  # a new sentence starts with a capital, whatever the tagger said
            shown[0] = shown[0][:1].upper() + shown[0][1:]
        self.context = (self.context + tokens)[-self.punctuator.context_words:]
        self.sentence_open = not shown[-1].endswith(SENTENCE_ENDS)
        return [replace(w, text=d, token=w.text) for w, d in zip(words, shown)]

    def partial(self, text: str, stable_chars: int) -> DisplayPartial:
        """A partial hypothesis in a light display form: lower case, "I" and the known mixed-case
        names, a capital to start a sentence; no marks (the final brings them).

        Why not the tagger: it reads both directions, so a later word could change an earlier
        word's form and break `text[:stable_chars]`'s promise; and partials come several times a
        second per stream, the tagger's 4 ms each would be the worker's largest cost at 32
        streams. This form is word by word and keeps each word's length, so `stable_chars`
        carries over unchanged."""
        tokens = text.split(" ")
        out = [self._light(t) for t in tokens]
        if out and out[0] and not self.sentence_open:
            out[0] = out[0][:1].upper() + out[0][1:]
        shown = " ".join(out)
        return DisplayPartial(shown, stable_chars if len(shown) == len(text) else 0)

    def _light(self, token: str) -> str:
        if token in _ALWAYS_CAPITAL:
            return token[:1] + token[1:].lower()
        mixed = self.mixed.get(token)
        if mixed is not None and len(mixed) == len(token):
            return mixed
        return token.lower()

    def reset_partial(self) -> None:
        """A segment closed (nothing to forget: partials keep no state of their own)."""
