"""Frame levels of a stream's audio and an adaptive silence test, for the endpointer.

Why: the transducer's blank run after a word says "no new token", but not whether the talker
has stopped or is only between two words of one sentence; waiting 1 s of blank to be sure was
what made finals slow (issue 16: p50 1.2 s after the audio ended). The audio level tells the
two apart when the room is quiet enough: a short blank run *and* silence in the audio ends the
segment early; in a noisy room (speech too close to the noise floor to tell) the test answers
"don't know" and the endpointer waits for the long blank run as before.

Levels are in dB per encoder frame (the frames the endpointer counts in). The noise floor and
the speech level are low and high percentiles of the recent frames, so nothing needs
calibrating per microphone or room.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FrameLevels", "SilenceRule"]


@dataclass(frozen=True)
class SilenceRule:
    """When the trailing frames count as silence."""

    history_frames: int = 250  # recent frames the floor and speech level come from (10 s at 40 ms)
    noise_percentile: float = 10.0
    speech_percentile: float = 90.0
    min_contrast_db: float = 12.0  # speech must stand this far above the floor, else: don't know
    threshold: float = 0.35  # silent below floor + threshold x (speech - floor)
    digital_silence_db: float = -90.0  # frames this quiet are exact zeros, not a room
    min_heard_frames: int = 25  # fewer frames above digital silence: no floor to tell from


@dataclass
class FrameLevels:
    """Running dB level of each `frame_samples` of audio, from the stream's start.

    Frames are kept until a query has moved `rule.history_frames` past them, not by how much
    audio has arrived: a client that sends a minute at once gets the same answers as one that
    streams it in real time."""

    frame_samples: int
    rule: SilenceRule = field(default_factory=SilenceRule)
    levels: deque = field(default_factory=deque)  # dB of frames first .. first + len - 1
    first: int = 0  # index of levels[0] since the stream start
    _rest: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def accept(self, samples: np.ndarray) -> None:
        x = np.concatenate([self._rest, samples]) if self._rest.size else samples
        n = len(x) // self.frame_samples
        if n:
            frames = x[: n * self.frame_samples].reshape(n, self.frame_samples).astype(np.float64)
            db = 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1e-10)
            self.levels.extend(db.tolist())
        self._rest = x[n * self.frame_samples:].copy()

    @property
    def end(self) -> int:
        """Index one past the last frame heard."""
        return self.first + len(self.levels)

    def _limit(self, history: np.ndarray) -> float | None:
        """The level below which a frame is silence, from the recent history; None when the
        history cannot tell (too little heard, or speech too close to the floor)."""
        # Digital silence (a muted mic, a client padding with zeros) is silence, but it is no
        # noise floor: taken into the percentiles it would set the bar below the room's noise.
        heard = history[history > self.rule.digital_silence_db]
        if heard.size < self.rule.min_heard_frames:
            return None
        floor = np.percentile(heard, self.rule.noise_percentile)
        speech = np.percentile(heard, self.rule.speech_percentile)
        if speech - floor < self.rule.min_contrast_db:
            return None
        return float(floor + self.rule.threshold * (speech - floor))

    def trailing_silence(self, end: int) -> int | None:
        """How many of the frames before `end` are silence, counting back from `end - 1` (0 when
        that one is not); None when this cannot be told. The floor and speech level come from
        the `rule.history_frames` frames before `end` only. The caller passes the frames it has
        decoded, not all it has heard, so the answer never depends on how the audio was cut into
        messages. Later queries must not ask for an earlier `end` (older frames are dropped)."""
        if end > self.end:
            return None
        while self.first < end - self.rule.history_frames:  # frames no query can need again
            self.levels.popleft()
            self.first += 1
        if end <= self.first:
            return None
        history = np.fromiter(self.levels, dtype=np.float64, count=end - self.first)
        limit = self._limit(history)
        if limit is None:
            limit = self.rule.digital_silence_db + 1e-9  # only exact zeros count then
            if not history[-1] < limit:
                return None
        loud = np.nonzero(history >= limit)[0]
        return int(len(history) - 1 - loud[-1]) if loud.size else len(history)
