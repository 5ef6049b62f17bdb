"""`EngineStream`: one live stream's pipeline and state (front end → recogniser → diariser).

Threading: the server calls `accept`, `finish`, `sync` and `close` from its event loop; they
only append to a lock-guarded inbox. Everything else (resampling, the recogniser stream, the
diariser) is touched by the worker thread alone, so no model state is shared across threads.
Events leave through `sink`, a callable the server supplies (it must be thread-safe, e.g.
`loop.call_soon_threadsafe`).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

import numpy as np

from engine.audio import StreamingResampler, select_channel
from engine.display import DisplayWriter
from engine.events import End, Failure, Final, Partial
from engine.protocols import DiariserStream, RecogniserStream
from engine.spec import StreamSpec
from minutes.types import Segment, Word

if TYPE_CHECKING:
    from engine.engine import LoadedModel
    from engine.worker import BatchWorker

T = TypeVar("T")

log = logging.getLogger("minutes.engine")

Sink = Callable[[object], None]
SUMMARY_MAX_CHARS = 100_000  # text kept for the `end` summary (the most recent part beyond it)


def speaker_runs(words: list[Word]) -> list[list[Word]]:
    """Split words where the speaker label changes. An unlabelled word (diarisation had no
    frame for it) stays with the word before it: it is no evidence of a change."""
    runs: list[list[Word]] = []
    current: str | None = None
    for w in words:
        if runs and (w.speaker is None or current is None or w.speaker == current):
            runs[-1].append(w)
        else:
            runs.append([w])
        current = w.speaker if w.speaker is not None else current
    return runs


class SummaryText:
    """The transcript for the `end` summary, bounded: the whole text up to `max_chars`, then
    its most recent `max_chars` (cut at a word), so an hours-long stream's memory stays flat.
    Every final was already sent; the summary is a convenience."""

    def __init__(self, max_chars: int = SUMMARY_MAX_CHARS) -> None:
        self.max_chars = max_chars
        self.parts: collections.deque[str] = collections.deque()
        self.chars = -1  # length of " ".join(parts)
        self.truncated = False

    def append(self, text: str) -> None:
        self.parts.append(text)
        self.chars += len(text) + 1
        while self.chars > self.max_chars and len(self.parts) > 1:
            self.chars -= len(self.parts.popleft()) + 1
            self.truncated = True
        if self.chars > self.max_chars:  # one final longer than the budget: keep its tail
            tail = self.parts[0][-self.max_chars :]
            self.parts[0] = tail[tail.find(" ") + 1 :] if " " in tail else tail
            self.chars, self.truncated = len(self.parts[0]), True

    @property
    def text(self) -> str:
        return " ".join(self.parts)


@dataclass(frozen=True)
class Synced:
    """Every frame accepted before `sync(token)` has been decoded as far as it can be."""

    token: int


@dataclass
class _Inbox:
    """What the event loop hands the worker (guarded by the stream's lock)."""

    frames: collections.deque = field(default_factory=collections.deque)
    source: Iterator[np.ndarray] | None = None  # lazily read frames (file transcription)
    finished: str | None = None  # reason, once the client said stop (or a limit hit)
    closed: bool = False  # the client vanished: drop everything
    syncs: list[tuple[int, bool]] = field(default_factory=list)  # (token, close the segment first)
    queued: int = 0  # frames in `frames`


class EngineStream:
    """Per-stream state; created by `Engine.open_stream`."""

    def __init__(self, stream_id: str, spec: StreamSpec, model: "LoadedModel", sink: Sink,
                 diariser: DiariserStream | None, display: DisplayWriter | None = None, split_speakers: bool = True):
        self.id = stream_id
        self.spec = spec
        self.model = model
        self.sink = sink
        rec = model.recogniser
        # a file is decoded with the model's batch chunk unless asked otherwise: no one waits for its partials
        chunk = spec.chunk_seconds if spec.chunk_seconds is not None else (rec.batch_chunk_seconds if spec.file else None)
        options, self.decoding = rec.plan(spec.hotwords, spec.hotword_boost, spec.search, chunk,
                                          spec.alternatives)  # what is applied, for `ready`
        if spec.word_times is not None and options.word_times != spec.word_times:
            options = replace(options, word_times=spec.word_times)
        self.rs: RecogniserStream = rec.new_stream(options)
        self.asr_resampler = StreamingResampler(spec.sample_rate, rec.sample_rate)
        self.diariser = diariser  # None: no diarisation (not asked, no geometry, or it failed)
        self.diar_resampler = StreamingResampler(spec.sample_rate, rec.sample_rate) if diariser else None
        self.display = display  # cases and punctuates the text (None: the recogniser's tokens)
        self.split_speakers = split_speakers  # one final per speaker turn (issue 16)
        self._lock = threading.Lock()
        self._inbox = _Inbox()
        # worker-side state
        self.received_frames = 0  # input frames accepted (at spec.sample_rate)
        self.chunks = 0  # decode calls that included this stream
        self.segment_id = 0
        self.segment_start = 0.0
        self.last_partial: str | None = None
        self.input_done = False  # input_finished() was called
        self.processing_seconds = 0.0
        self.finals = 0
        self.words = 0
        self.summary = SummaryText()  # bounded: no per-stream list grows with the stream's length
        self.ended = False
        self.worker: BatchWorker | None = None  # the worker that decodes this stream (set by the engine)

    # -- event-loop side ---------------------------------------------------------------
    def accept(self, frames: np.ndarray) -> None:
        """(N, C) float32 frames at spec.sample_rate."""
        with self._lock:
            self._inbox.frames.append(frames)
            self._inbox.queued += len(frames)

    @property
    def backlog_seconds(self) -> float:
        """Audio accepted but not yet taken by the worker (a client sending faster than real
        time); the server stops reading the socket while it is large, so memory stays bounded."""
        return self._inbox.queued / self.spec.sample_rate

    def feed_from(self, source: Iterator[np.ndarray]) -> None:
        """Read frames lazily from `source` (keeps a long file's memory flat)."""
        with self._lock:
            self._inbox.source = source

    def finish(self, reason: str = "stop") -> None:
        """No more audio: flush, send the last final and `End`."""
        with self._lock:
            self._inbox.finished = self._inbox.finished or reason

    def sync(self, token: int, cut: bool = False) -> None:
        """Ask for `Synced(token)` once everything accepted so far is decoded; with `cut`, the
        open segment is closed first (its `Final` comes before `Synced`)."""
        with self._lock:
            self._inbox.syncs.append((token, cut))

    def close(self) -> None:
        """The consumer is gone: free the stream without sending anything."""
        with self._lock:
            self._inbox.closed = True

    @property
    def closed(self) -> bool:
        return self._inbox.closed

    @property
    def duration(self) -> float:
        return self.received_frames / self.spec.sample_rate

    # -- worker side ---------------------------------------------------------------------
    def ingest(self, max_seconds: float) -> None:
        """Move inbox audio into the recogniser until it has a chunk ready (or no audio is left)."""
        rec = self.model.recogniser
        taken = 0
        limit = int(max_seconds * self.spec.sample_rate)
        while taken < limit and not rec.is_ready(self.rs):
            frames = self._next_frames(limit - taken)
            if frames is None:
                break
            taken += len(frames)
            self._push(frames)

    def _next_frames(self, most: int) -> np.ndarray | None:
        with self._lock:
            q = self._inbox.frames
            if not q and self._inbox.source is not None:
                try:
                    q.append(next(self._inbox.source))
                except StopIteration:
                    self._inbox.source = None
            if not q:
                return None
            frames = q.popleft()
            if len(frames) > most > 0:
                q.appendleft(frames[most:])
                frames = frames[:most]
            self._inbox.queued = max(0, self._inbox.queued - len(frames))
            return frames

    def _push(self, frames: np.ndarray) -> None:
        self.received_frames += len(frames)
        mono = self.asr_resampler.process(select_channel(frames, self.spec.channel))
        if len(mono):
            self.rs.accept_waveform(mono)
        if self.diariser is not None:
            multi = self.diar_resampler.process(frames)
            if len(multi):
                self._diar(lambda d: d.accept(multi))

    def has_input(self) -> bool:
        with self._lock:
            return bool(self._inbox.frames) or self._inbox.source is not None

    def wants_finish(self) -> str | None:
        with self._lock:
            return self._inbox.finished

    def end_input(self) -> None:
        """Flush the resamplers into the recogniser and tell it no more audio comes."""
        tail = self.asr_resampler.flush()
        if len(tail):
            self.rs.accept_waveform(tail.reshape(-1))
        if self.diariser is not None:
            tail = self.diar_resampler.flush()
            if len(tail):
                self._diar(lambda d: d.accept(tail))
            self._diar(lambda d: d.input_finished())
        self.rs.input_finished()
        self.input_done = True

    def decoded_seconds(self) -> float:
        if self.input_done:
            return self.duration
        return min(self.chunks * self.rs.chunk_seconds, self.duration)

    def after_decode(self, share_seconds: float) -> None:
        """One chunk was decoded: endpoint → final, else partial; pass on diariser events."""
        self.chunks += 1
        self.processing_seconds += share_seconds
        rec = self.model.recogniser
        if rec.is_endpoint(self.rs):
            self.close_segment()
        elif self.spec.partials:
            res = self.rs.result()
            if res.text != (self.last_partial or "") and res.text:
                start = res.words[0].start if res.words else self.segment_start
                stable = max(0, min(int(res.stable_chars), len(res.text)))
                text = res.text
                if self.display is not None:
                    shown = self.display.partial(text, stable)
                    text, stable = shown.text, shown.stable_chars
                self.emit(Partial(self.segment_id, text, stable, round(start, 3), round(self.decoded_seconds(), 3)))
                self.last_partial = res.text
        self._diar_events()

    def close_segment(self) -> None:
        """The recogniser's segment → one `Final` per speaker turn in it (a final never spans
        two speakers); each takes the next segment id, so ids stay unique and increasing."""
        words = list(self.rs.reset_segment())
        alternatives = tuple(self.rs.alternatives) if self.spec.alternatives else ()
        if words:
            words = self._label(words)  # diariser labels + rounding
            if self.display is not None:  # punctuated whole: the tagger reads across the turns
                words = self.display.final(words)
            runs = speaker_runs(words) if self.split_speakers else [words]
            cut = round(self.decoded_seconds(), 3)  # where this endpoint closed the audio
            for i, run in enumerate(runs):
                if i:
                    self.segment_id += 1
                speakers = [w.speaker for w in run if w.speaker is not None]
                speaker = Counter(speakers).most_common(1)[0][0] if speakers else None
                # only the last turn's final closes the audio up to the cut; an earlier turn's
                # closes it up to its own last word (the next turn's words are still to come)
                until = cut if i == len(runs) - 1 else run[-1].end
                seg = Segment(self.segment_id, run[0].start, run[-1].end, tuple(run), speaker, until,
                              alternatives if i == len(runs) - 1 else ())
                self.emit(Final(seg))
                self.finals += 1
                self.words += len(run)
                self.summary.append(seg.text)
        self.segment_id += 1
        self.segment_start = round(self.decoded_seconds(), 3)
        self.last_partial = None
        if self.display is not None:
            self.display.reset_partial()

    def flush_syncs(self) -> None:
        with self._lock:
            tokens, self._inbox.syncs = self._inbox.syncs, []
        for t, cut in tokens:
            if cut:
                self.close_segment()
            self.emit(Synced(t))

    def pending_syncs(self) -> bool:
        return bool(self._inbox.syncs)

    def end(self, reason: str) -> None:
        """Close the last segment and send the summary."""
        self.close_segment()
        self._diar_events()
        self.flush_syncs()
        self.ended = True
        # a live stream's diariser keeps no turns (its memory stays flat); a file's keeps them
        turns = tuple(self._diar(lambda d: d.turns() if d.keep_turns else []) or ())
        self.emit(End(self.id, reason, self.duration, self.finals, self.words, self.summary.text,
                      self.processing_seconds, turns, self.summary.truncated))

    def fail(self, code: str, message: str) -> None:
        self.ended = True
        self.emit(Failure(code, message))

    def emit(self, event: object) -> None:
        if self._inbox.closed:
            return
        try:
            self.sink(event)
        except Exception:  # a consumer that went away must not stop the worker
            log.debug("sink of stream %s failed", self.id, exc_info=True)

    # -- diarisation ---------------------------------------------------------------------
    def _diar(self, call: Callable[[DiariserStream], T]) -> T | None:
        """`call(diariser)`; on any fault, drop diarisation for this stream (words go unlabelled)."""
        if self.diariser is None:
            return None
        try:
            return call(self.diariser)
        except Exception:
            log.exception("diariser failed on stream %s; diarisation off for it", self.id)
            self.diariser = None
            return None

    def _label(self, words: list[Word]) -> list[Word]:
        """Words with the diariser's speaker/azimuth, times and confidences rounded for the wire."""
        out = []
        for w in words:
            got = self._diar(lambda d: d.label(w.start, w.end))
            speaker, azimuth = got if got is not None else (w.speaker, w.azimuth)
            out.append(Word(w.text, round(float(w.start), 3), round(float(w.end), 3),
                            round(min(max(float(w.conf), 0.0), 1.0), 4), speaker,
                            None if azimuth is None else round(float(azimuth) % 360.0, 1)))
        return out

    def _diar_events(self) -> None:
        for ev in self._diar(lambda d: d.events()) or []:
            self.emit(ev)
