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


def test_models_by_name_or_name_and_version(tmp_path):
    """`name` and `name/version` of one artefact share one recogniser (their streams batch
    together); an older version is its own model; a version or name the store lacks is
    `UnknownModel`, even for the server's own name; the server's model may be `name/version`."""
    from engine.engine import UnknownModel

    build_tiny_model(tmp_path)
    store = ModelStore(tmp_path / "store")
    for _ in range(2):
        store.publish(tmp_path / "src", "default", "conformer-transducer")
    engine = Engine(EngineConfig(store=tmp_path / "store"))
    engine.start()
    try:
        wait_ready(engine)
        own = engine.model()
        assert own.ref == "default/2" and engine.model("default/2") is own and engine.model("default") is own
        assert not engine.loaded("default/1")
        old = engine.model("default/1")
        assert old.ref == "default/1" and old is not own and old.recogniser is not own.recogniser
        assert engine.loaded("default/1") and engine.model("default/1") is old
        listed = {m["name"]: m for m in engine.models()}["default"]
        assert listed["loaded"] is True and listed["loaded_versions"] == ["1", "2"] and listed["versions"] == ["1", "2"]
        for ref, says in [("default/3", "no version '3'"), ("nope/1", "nope"), ("default/1/2", "name/version")]:
            with pytest.raises(UnknownModel, match=says):
                engine.model(ref)
        sink = Collector()
        st = engine.open_stream(StreamSpec(sample_rate=16000, partials=False, model="default/1"), sink)
        assert st.model is old
        st.accept(clip(CLIPS[0])[:, None])
        st.finish()
        engine.notify()
        deadline = time.monotonic() + 60
        while not sink.ended():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        want = [(w.text, w.start, w.end) for w in old.recogniser.transcribe(clip(CLIPS[0]))]
        assert [(w.text, w.start, w.end) for e in sink.events if isinstance(e, Final) for w in e.segment.words] == want
    finally:
        engine.stop()
    pinned = Engine(EngineConfig(store=tmp_path / "store", model="default/1"))
    pinned.start()
    try:
        wait_ready(pinned)
        assert pinned.status == "ready" and pinned.model().ref == "default/1"
        assert pinned.model("default").ref == "default/2"  # the bare name: its newest version
    finally:
        pinned.stop()


def _members(protocol: type) -> set[str]:
    return {n for n in vars(protocol) if not n.startswith("_")} | set(getattr(protocol, "__annotations__", {}))


def test_the_real_recogniser_and_diariser_fill_the_engines_protocols(store):
    """engine/protocols.py is what the engine calls, with no probing: the real classes must
    have every member (a renamed method fails here, not as an AttributeError mid-stream)."""
    from decoding.recogniser import Recogniser
    from diarisation.online import OnlineConfig, OnlineDiariser
    from engine.protocols import Diarises, DiariserStream, Recognises, RecogniserStream
    from minutes.arrays import geometry

    rec = Recogniser.from_store(store, "default")
    assert _members(Recognises) <= set(dir(rec)) and _members(RecogniserStream) <= set(dir(rec.new_stream()))
    d = OnlineDiariser(OnlineConfig())
    ds = d.new_stream(geometry("circular-7"), 16000, memory=30.0, keep_turns=False)
    assert _members(Diarises) <= set(dir(d)) and _members(DiariserStream) <= set(dir(ds))


def test_the_recogniser_plans_a_streams_hotwords(store):
    """`Recogniser.plan`: the model's default boost when none is asked (DecodingOptions'
    one default), the asked one otherwise; phrases its vocabulary cannot spell are dropped
    with a warning; hotwords switch the stream to beam search, none leaves it greedy."""
    from decoding.options import DecodingOptions
    from decoding.recogniser import Recogniser

    rec = Recogniser.from_store(store, "default")
    options, plan = rec.plan()
    assert options == rec.options and (plan.search, plan.hotwords, plan.hotword_boost) == ("greedy", (), None)
    options, plan = rec.plan(("MIKE", "\u00e9\u00e9\u00e9"))
    assert plan.hotwords == ("MIKE",) and options.hotwords == ("MIKE",) and "cannot spell" in plan.warnings[0]
    assert plan.hotword_boost == options.hotword_boost == DecodingOptions().hotword_boost
    assert (plan.search, plan.beam_size) == ("beam", options.beam_size)
    options, plan = rec.plan(("MIKE",), 3.5)
    assert options.hotword_boost == plan.hotword_boost == 3.5 and rec.new_stream(options).beam.trie.boost == 3.5
    assert plan.to_dict() == {"decoder": "transducer", "search": "beam", "beam_size": 4, "lm_weight": 0.0,
                              "ilm_weight": 0.0, "oov_penalty": 0.0, "chunk_seconds": rec.chunk_seconds, "alternatives": 0,
                              "hotwords": ["MIKE"], "hotword_boost": 3.5}
