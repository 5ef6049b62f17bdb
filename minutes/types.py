"""Result types shared from the model to the server's JSON encoder.

Frozen dataclasses with times in seconds from the start of the stream. They stay typed all the
way to the wire; `to_dict`/`from_dict` are the only conversion to and from JSON-ready dicts.
Azimuth is in degrees, counter-clockwise from the array's +x axis, in [0, 360).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


def _from_dict(cls, data: dict[str, Any]):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Word:
    """One recognised word."""

    text: str
    start: float  # seconds
    end: float  # seconds
    conf: float = 1.0  # in [0, 1]
    speaker: str | None = None  # diarisation label, e.g. "S1"
    azimuth: float | None = None  # degrees, CCW from array +x, [0, 360)
    # The recogniser's normalised token ("DON'T") when `text` is the punctuator's display form
    # ("don't,"); None when `text` is the token itself (options.format = "raw").
    token: str | None = None

    @property
    def normalised(self) -> str:
        """The token WER and hotwords are judged on, whichever form `text` is in."""
        return self.token if self.token is not None else self.text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["token"] is None:
            del d["token"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Word":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class Alternative:
    """One of the n best hypotheses of a recogniser segment (`options.alternatives`)."""

    text: str  # the recogniser's normalised tokens (upper case, no punctuation)
    confidence: float  # its share of the n-best list's probability (softmax of the search scores)
    score: float  # the search's log score (acoustic + the weighted LM, ILM, hotword, lexicon terms)
    words: tuple[Word, ...] = ()  # with the times this hypothesis emitted them at

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "confidence": self.confidence, "score": self.score,
                "words": [w.to_dict() for w in self.words]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Alternative":
        return cls(str(data["text"]), float(data["confidence"]), float(data["score"]),
                   tuple(Word.from_dict(w) for w in data.get("words", [])))


@dataclass(frozen=True)
class Segment:
    """A stretch of speech closed by an endpoint: its words and their joined text."""

    id: int
    start: float
    end: float
    words: tuple[Word, ...] = ()
    speaker: str | None = None
    # Stream time up to which the audio is decoded and closed into finals when this one was
    # sent (the endpoint's cut, after the pause that ended it). A reconnecting client re-sends
    # from here: the last word's `end` is where the recogniser emitted it, often before the
    # word has finished sounding, and a replay from there would start inside that word.
    closed_until: float | None = None
    # The recogniser segment's n best hypotheses, best first, when the stream asked for them
    # (on the last final of the segment, when a speaker change splits it into several).
    alternatives: tuple[Alternative, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def normalised_text(self) -> str:
        return " ".join(w.normalised for w in self.words)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "speaker": self.speaker,
            "words": [w.to_dict() for w in self.words],
            **({"closed_until": self.closed_until} if self.closed_until is not None else {}),
            **({"alternatives": [a.to_dict() for a in self.alternatives]} if self.alternatives else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Segment":
        until = data.get("closed_until")
        return cls(
            id=int(data["id"]),
            start=float(data["start"]),
            end=float(data["end"]),
            words=tuple(Word.from_dict(w) for w in data.get("words", [])),
            speaker=data.get("speaker"),
            closed_until=float(until) if until is not None else None,
            alternatives=tuple(Alternative.from_dict(a) for a in data.get("alternatives", [])),
        )


@dataclass(frozen=True)
class Turn:
    """A speaker turn (one RTTM line): who spoke from `start` to `end`, and from where."""

    speaker: str
    start: float
    end: float
    azimuth: float | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Turn":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class Transcript:
    """A whole recording's result: segments and speaker turns."""

    segments: tuple[Segment, ...] = ()
    turns: tuple[Turn, ...] = field(default_factory=tuple)
    duration: float = 0.0

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.words)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "duration": self.duration,
            "segments": [s.to_dict() for s in self.segments],
            "turns": [t.to_dict() for t in self.turns],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Transcript":
        return cls(
            segments=tuple(Segment.from_dict(s) for s in data.get("segments", [])),
            turns=tuple(Turn.from_dict(t) for t in data.get("turns", [])),
            duration=float(data.get("duration", 0.0)),
        )


# -- the online diariser's events (diarisation/online.py), sent to a stream's client as they are --
@dataclass(frozen=True)
class SpeakerPosition:
    speaker: str
    azimuth: float | None  # degrees, None until the speaker has a direction


@dataclass(frozen=True)
class Revision:
    """A past step whose speaker the diariser changed its mind about."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class SpeakersEvent:
    """`speakers`: the speakers known so far, and revised labels of the recent past."""

    time: float  # s of audio the diariser had seen
    speakers: tuple[SpeakerPosition, ...]
    revised: tuple[Revision, ...] = ()
    type: str = field(default="speakers", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "time": self.time, "speakers": [asdict(s) for s in self.speakers],
                "revised": [asdict(r) for r in self.revised]}


@dataclass(frozen=True)
class Track:
    speaker: str
    azimuth: float | None
    active: bool  # the one speaking in this step


@dataclass(frozen=True)
class TracksEvent:
    """`tracks`: every known speaker's current direction."""

    time: float
    tracks: tuple[Track, ...]
    type: str = field(default="tracks", init=False)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "time": self.time, "tracks": [asdict(t) for t in self.tracks]}


DiariserEvent = SpeakersEvent | TracksEvent
