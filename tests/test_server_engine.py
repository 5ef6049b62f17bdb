"""The engine without the web layer: the batching worker's scheduling (max batch, no stream
starves, streams never mixed up), backlog accounting, and freeing a closed stream."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from compression.store import ModelStore
from engine import End, Engine, EngineConfig, Final, ModelUnavailable, StreamSpec
from tests.test_server_stream import CLIPS, SO, build_tiny_model, clip

pytestmark = pytest.mark.skipif(not SO.is_dir(), reason="speechocean762 is not at ../shared/data")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine")
    build_tiny_model(tmp)
    ModelStore(tmp / "store").publish(tmp / "src", "default", "conformer-transducer")
    return tmp / "store"


def wait_ready(engine: Engine, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while engine.status in ("starting", "loading"):
        assert time.monotonic() < deadline
        time.sleep(0.05)


class Collector:
    """A thread-safe sink: the worker thread appends, the test reads."""

    def __init__(self):
        self.events: list = []
        self.lock = threading.Lock()

    def __call__(self, event) -> None:
        with self.lock:
            self.events.append(event)

    def ended(self) -> bool:
        with self.lock:
            return any(isinstance(e, End) for e in self.events)


def test_batches_respect_max_batch_and_serve_everyone(store):
    sizes: list[int] = []
    engine = Engine(EngineConfig(store=store, max_batch=2), observer=lambda n, dt, audio: sizes.append(n))
    engine.start()
    try:
        wait_ready(engine)
        x = clip(CLIPS[0])[:, None]
        sinks = [Collector() for _ in range(5)]
        streams = [engine.open_stream(StreamSpec(sample_rate=16000, partials=False), s) for s in sinks]
        for st in streams:
            st.accept(x)
            assert st.backlog_seconds == pytest.approx(len(x) / 16000)
            st.finish()
        engine.notify()
        deadline = time.monotonic() + 120
        while not all(s.ended() for s in sinks):
            assert time.monotonic() < deadline, "a stream starved"
            time.sleep(0.05)
        assert max(sizes) == 2 and sizes.count(2) >= len(sizes) // 2  # full batches while 5 wait
        ends = [next(e for e in s.events if isinstance(e, End)) for s in sinks]
        assert len({e.text for e in ends}) == 1 and all(e.duration == len(x) / 16000 for e in ends)
        finals = [[e for e in s.events if isinstance(e, Final)] for s in sinks]
        assert all(f == finals[0] for f in finals)  # identical audio, identical words: no mix-ups
        assert all(st.backlog_seconds == 0 for st in streams)
        assert engine.active_streams == 0
    finally:
        engine.stop()


def test_closed_stream_is_dropped_and_no_model_is_refused(store, tmp_path):
    engine = Engine(EngineConfig(store=store, decoders=2))
    engine.start()
    try:
        wait_ready(engine)
        sink = Collector()
        st = engine.open_stream(StreamSpec(sample_rate=44100, partials=True), sink)
        st.accept(np.zeros((44100, 1), np.float32))
        engine.notify()
        assert engine.active_streams == 1
        st.close()
        engine.notify()
        deadline = time.monotonic() + 10
        while engine.active_streams:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert not sink.ended()  # a vanished consumer is sent nothing
    finally:
        engine.stop()
    empty = Engine(EngineConfig(store=tmp_path / "none"))
    empty.start()
    try:
        wait_ready(empty)
        assert empty.status == "no_model" and "no model" in empty.reason
        with pytest.raises(ModelUnavailable):
            empty.open_stream(StreamSpec(sample_rate=16000), Collector())
    finally:
        empty.stop()
