"""The batching worker: one thread that decodes a chunk of every ready stream in one call.

Like sherpa-onnx's online server: streams are polled, every stream with a full chunk goes into
one `decode_streams` batch (at most `max_batch`, oldest-served first so no stream starves),
and when none is ready the worker sleeps until audio arrives or `loop_interval_ms` passes.
While a batch decodes, other streams' chunks pile up, so batches grow with load by themselves.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable

from engine.stream import EngineStream

log = logging.getLogger("minutes.engine")

# (batch size, seconds of compute, seconds of audio decoded)
DecodeObserver = Callable[[int, float, float], None]


class BatchWorker:
    def __init__(self, max_batch: int, loop_interval_ms: float, observer: DecodeObserver | None = None,
                 on_start: Callable[[], None] | None = None):
        self.max_batch = max_batch
        self.interval = loop_interval_ms / 1000.0
        self.observer = observer
        self.on_start = on_start
        self._streams: dict[str, EngineStream] = {}
        self._last_served: dict[str, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="minutes-decoder", daemon=True)
        self.queue_depth = 0  # streams with a chunk ready at the last look
        self._ready_since: float | None = None  # when the current part-full batch began to wait
        self._window: collections.deque = collections.deque()  # (t, compute, audio) for RTF

    # -- control (any thread) -------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def add(self, stream: EngineStream) -> None:
        with self._lock:
            self._streams[stream.id] = stream
            self._last_served[stream.id] = 0.0
        self._wake.set()

    def notify(self) -> None:
        self._wake.set()

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._streams)

    def rtf(self, window_s: float = 10.0) -> float:
        """Compute seconds per audio second over the last `window_s` (0 when idle)."""
        now = time.monotonic()
        items = [w for w in list(self._window) if now - w[0] <= window_s]
        audio = sum(w[2] for w in items)
        return sum(w[1] for w in items) / audio if audio else 0.0

    # -- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        if self.on_start:
            self.on_start()
        while not self._stop.is_set():
            try:
                worked = self._step()
            except Exception:  # never let one bad iteration kill the decoder for everyone
                log.exception("decoder loop iteration failed")
                worked = False
            if not worked:
                self._wake.wait(self.interval)
                self._wake.clear()

    def _remove(self, s: EngineStream) -> None:
        with self._lock:
            self._streams.pop(s.id, None)
            self._last_served.pop(s.id, None)

    def _step(self) -> bool:
        with self._lock:
            streams = list(self._streams.values())
        live = []
        for s in streams:
            if s.closed:
                self._remove(s)
                continue
            try:
                s.ingest(max_seconds=max(1.0, 3 * s.rs.chunk_seconds))
                if not s.input_done and s.wants_finish() and not s.has_input():
                    s.end_input()
            except Exception as exc:
                log.exception("stream %s failed in its front end", s.id)
                s.fail("internal", f"front end failed: {exc}")
                self._remove(s)
                continue
            live.append(s)
        ready = [s for s in live if s.model.recogniser.is_ready(s.rs)]
        self.queue_depth = len(ready)
        if self._gather(ready):
            return False
        ready.sort(key=lambda s: self._last_served.get(s.id, 0.0))
        by_model: dict[int, list[EngineStream]] = {}
        for s in ready[: self.max_batch]:
            by_model.setdefault(id(s.model), []).append(s)
        for batch in by_model.values():
            self._decode(batch)
        for s in live:
            if s.ended or s.closed:
                continue
            rec = s.model.recogniser
            if rec.is_ready(s.rs) or s.has_input():
                continue
            if s.input_done:
                s.end(s.wants_finish() or "stop")
                self._remove(s)
            elif s.pending_syncs():
                s.flush_syncs()
        return bool(ready)

    def _gather(self, ready: list[EngineStream]) -> bool:
        """Whether to wait for more streams before decoding: a part-full batch waits at most
        one loop interval after its first chunk became ready (sherpa-onnx's loop interval),
        trading that much latency for fuller batches. Streams being flushed never wait."""
        if not ready:
            self._ready_since = None
            return False
        if len(ready) >= self.max_batch or any(s.input_done for s in ready):
            self._ready_since = None
            return False
        now = time.monotonic()
        if self._ready_since is None:
            self._ready_since = now
        if now - self._ready_since < self.interval:
            return True
        self._ready_since = None
        return False

    def _decode(self, batch: list[EngineStream]) -> None:
        rec = batch[0].model.recogniser
        t0 = time.perf_counter()
        try:
            rec.decode_streams([s.rs for s in batch])
        except Exception as exc:
            log.exception("decode_streams failed for %d stream(s)", len(batch))
            for s in batch:
                s.fail("internal", f"decoding failed: {exc}")
                self._remove(s)
            return
        dt = time.perf_counter() - t0
        now = time.monotonic()
        audio = sum(s.rs.chunk_seconds for s in batch)
        self._window.append((now, dt, audio))
        while self._window and now - self._window[0][0] > 60:
            self._window.popleft()
        if self.observer:
            self.observer(len(batch), dt, audio)
        for s in batch:
            self._last_served[s.id] = now
            try:
                s.after_decode(dt / len(batch))
            except Exception as exc:
                log.exception("stream %s failed after decoding", s.id)
                s.fail("internal", f"result handling failed: {exc}")
                self._remove(s)
