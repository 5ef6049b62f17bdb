"""Memory stays flat on long streams: nothing a stream keeps grows with its length.

Each part of a stream's pipeline is driven for a long simulated duration as fast as the CPU
goes (no real-time pacing) and its state is weighed at the start and at the end: the
recogniser stream with the engine's per-stream bookkeeping (tens of minutes of real speech),
the online diariser (a real two-talker scene looped; and its bookkeeping over 100k steps),
and the `end` summary's text.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.stream import EngineStream, SummaryText
from tests.conftest import REPO, SHARED_DATA

SO = SHARED_DATA / "speechocean762-train"
needs_speech = pytest.mark.skipif(not SO.is_dir(), reason="speechocean762 is not at ../shared/data")


def state_bytes(obj, skip: tuple[type, ...] = (), _seen: set | None = None) -> int:
    """Bytes held by `obj` and everything it reaches (arrays by their buffers), except
    instances of `skip` (shared, per-process things such as the model)."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen or isinstance(obj, skip) or isinstance(obj, type) or callable(obj) and not hasattr(obj, "__dict__"):
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        return size + sum(state_bytes(k, skip, seen) + state_bytes(v, skip, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
        return size + sum(state_bytes(v, skip, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        return size + state_bytes(vars(obj), skip, seen)
    if hasattr(obj, "__slots__"):
        return size + sum(state_bytes(getattr(obj, s), skip, seen) for s in obj.__slots__ if hasattr(obj, s))
    return size


def test_summary_text_is_bounded_and_exact_below_the_bound():
    full, s = [], SummaryText(max_chars=1000)
    for i in range(100_000):
        t = f"WORD{i} AND MORE"
        full.append(t)
        s.append(t)
        assert s.chars <= 1000
        if i == 10:
            assert s.text == " ".join(full) and not s.truncated  # unchanged while it fits
    joined = " ".join(full)
    assert s.truncated and joined.endswith(s.text) and len(s.text) == s.chars
    assert len(s.parts) < 200
    one = SummaryText(max_chars=50)
    one.append("A " * 100 + "END")  # one final longer than the whole budget
    assert one.text.endswith("END") and len(one.text) <= 50 and one.truncated


# -- the recogniser stream and the engine's per-stream state -------------------------------
@pytest.fixture(scope="module")
def loaded_model():
    from engine.config import EngineConfig
    from engine.engine import Engine

    store = REPO / "store"
    engine = Engine(EngineConfig(store=store, verify_checksums=False, diarisation=False))
    if not engine.store.versions("default"):
        pytest.skip("no default model in the store")
    torch.set_num_threads(1)
    return engine.model("default")


def _speech(seconds: float) -> np.ndarray:
    files = sorted((SO / "audio").glob("SPEAKER000*/*.flac"))[:40]
    parts, n = [], 0
    rng = np.random.default_rng(0)
    while n < seconds * 16000:
        x, _ = sf.read(files[len(parts) // 2 % len(files)], dtype="float32")
        gap = np.zeros(int(rng.uniform(0.4, 2.5) * 16000), np.float32)
        parts += [x, gap]
        n += len(x) + len(gap)
    return np.concatenate(parts)[: int(seconds * 16000)]


@pytest.mark.slow  # 10-15 s a case: minutes of audio through the engine
@needs_speech
@pytest.mark.parametrize("hotwords, minutes, search", [((), 10, "greedy"), (("MIKE", "WHITE"), 6, None)])
def test_engine_stream_state_flat_over_long_audio(loaded_model, hotwords, minutes, search):
    """Long 48 kHz speech through one EngineStream (resampler → recogniser with the greedy
    search, or the beam search with hotwords and the model's own fusion defaults — its external
    LM's states included when the model has one → endpoints → finals → summary), driven as the
    worker drives it but without real-time pacing: the most its state weighs in the second half
    is no more than in the first half, while it produced a final every few seconds."""
    from engine.spec import StreamSpec

    from decoding.options import SearchRequest
    from decoding.recogniser import Recogniser

    events = collections.Counter()
    spec = StreamSpec(sample_rate=48000, hotwords=hotwords, search=SearchRequest(search) if search else None)
    s = EngineStream("long", spec, loaded_model, lambda ev: events.update([type(ev).__name__]), None)
    s.summary = SummaryText(max_chars=120)  # a small bound, so the test reaches it early
    assert s.decoding.search == ("beam" if hotwords else "greedy")
    base = _speech(90.0)
    up = np.repeat(base, 3)[:, None]  # 48 kHz: crude, but it exercises the resampler
    rec = loaded_model.recogniser
    from decoding.lexicon import RowCache

    # not this stream's state: the model, and the lexicon rows every stream of the process shares
    # (bounded by RowCache's limit; a stream's own hotword rows are counted)
    skip = (type(loaded_model), Recogniser, torch.nn.Module, RowCache)
    block = 4800  # 100 ms, as clients send
    total = int(minutes * 60 / 0.1)
    weights = []  # (seconds fed, bytes), every 10 s; buffers fill and empty within a chunk
    for k in range(total):
        i = k * block % len(up)
        s.accept(up[i : i + block])
        s.ingest(max_seconds=1.0)
        while rec.is_ready(s.rs):
            rec.decode_streams([s.rs])
            s.after_decode(0.0)
            s.ingest(max_seconds=1.0)
        if k % 100 == 37 and k > 600:
            weights.append(state_bytes(s, skip))
        if k == total // 2:
            first_half = events["Final"]
    half = len(weights) // 2
    early, late = max(weights[:half]), max(weights[half:])
    early_mean, late_mean = np.mean(weights[:half]), np.mean(weights[half:])
    # finals all along (greedy and the beam close a segment every ~3 s here; before the beam
    # restarted its predictor at each segment, it closed one every ~13 s with store/default/3)
    assert first_half > minutes * 2 and events["Final"] - first_half > minutes * 2, (first_half, events)
    assert s.summary.truncated and s.summary.chars <= 120, (s.summary.chars, s.summary.text)
    assert len(s.rs.emissions) < 400 and s.rs.samples.size < 16000 and s.rs.feats.shape[0] < 200
    # no growth on average: a leak of ~300 bytes per 10 s fails this over 6 minutes
    assert late_mean <= early_mean + 4096, (early_mean, late_mean)
    if search == "greedy":  # greedy's state repeats with the looped audio: its peak must not grow at all
        assert late <= early + 2048, (early, late)
    # (the beam's hypotheses weigh ±3 % with what is being said, so one late peak may pass an
    # early one by a few kB without a trend: measured with store/default/4, half-means -0.2 kB)
    fed = total * 0.1
    s.finish("stop")
    s.end_input()
    while rec.is_ready(s.rs):
        rec.decode_streams([s.rs])
        s.after_decode(0.0)
    got = []
    s.sink = got.append
    s.end("stop")
    end = got[-1].to_dict()
    assert end["type"] == "end" and end["text_truncated"] is True and len(end["text"]) <= 120
    assert abs(end["duration"] - fed) < 0.5


# -- the online diariser -------------------------------------------------------------------
def _scene():
    from diarisation.synth import Utterance, load_speaker_audio, render
    from minutes.arrays import geometry

    speakers = ("0103", "5408")
    a, b = (load_speaker_audio(s, 3) for s in speakers)
    utts, t = [], 0.3
    for k in range(6):
        spk, x, az = (speakers[0], a[k // 2], 40.0) if k % 2 == 0 else (speakers[1], b[k // 2], 210.0)
        e = np.convolve(x ** 2, np.ones(160) / 160, mode="same")
        on = np.flatnonzero(e > e.max() * 1e-3)
        x = x[on[0] : on[-1]] if len(on) else x
        utts.append(Utterance(spk, x, t, az))
        t += len(x) / 16000 + 0.4
    return render(utts, geometry("circular-7"), rt60=0.3, snr_db=25, seed=3)


@pytest.fixture(scope="module")
def diariser():
    from diarisation.online import OnlineDiariser
    from diarisation.synth import speechocean_dir

    if not speechocean_dir().exists():
        pytest.skip("shared speech data missing")
    torch.set_num_threads(1)
    return OnlineDiariser()


@pytest.mark.slow  # 10 s
def test_online_diariser_bounded_memory_same_labels_and_turns(diariser):
    """A looped two-talker scene (~3 min) through a stream with a 20 s memory and one with
    none: identical events, word labels and turns; the bounded one holds ≤ 20 s of steps."""
    scene = _scene()
    audio = np.concatenate([scene.audio] * max(1, int(np.ceil(180 / (len(scene.audio) / 16000)))))
    bounded = diariser.new_stream(scene.geometry, 16000, memory=20.0)
    full = diariser.new_stream(scene.geometry, 16000)
    step = diariser.config.step
    longest = 0
    for i in range(0, len(audio), 2048):
        x = audio[i : i + 2048]
        bounded.accept(x)
        full.accept(x)
        assert bounded.events() == full.events()
        longest = max(longest, len(bounded.steps))
        t = (i + len(x)) / 16000
        if i % (16000 * 5) < 2048 and t > 3:  # a word heard in the last seconds, as the engine asks
            assert bounded.label(t - 2.5, t - 2.0) == full.label(t - 2.5, t - 2.0)
    bounded.input_finished()
    full.input_finished()
    assert full.n_steps == bounded.n_steps == len(full.steps) > 300
    assert longest <= 20.0 / step + bounded.H + 3, longest
    assert bounded.turns() == full.turns() and len(full.turns()) > 10


def test_online_diariser_bookkeeping_over_100k_steps(diariser):
    """The step ring and the turn fold over 100k steps (14 h): the steps kept stay at the
    memory's worth; without `keep_turns` nothing grows at all."""
    from diarisation.online import StepLabel

    for keep in (True, False):
        ds = diariser.new_stream(np.eye(3) * 0.05, 16000, memory=30.0, keep_turns=keep)
        step = diariser.config.step
        for i in range(100_000):
            t0 = i * step
            spk = (i // 7) % 3 if i % 5 else -1
            spans = [(t0 + 0.1, t0 + 0.4)] if spk >= 0 else []
            ds._append(StepLabel(t0, t0 + step, spans, spk, np.zeros(2), 40.0))
            assert len(ds.steps) <= 30.0 / step + ds.H + 3
        if keep:
            turns = ds.turns()
            assert 10_000 < len(turns) < 100_000 and turns[-1].end > 49_000
        else:
            assert ds._turns == [] and ds._extra == []
            with pytest.raises(RuntimeError):
                ds.turns()


@needs_speech
def test_beam_of_one_restarts_each_segment_like_greedy(loaded_model):
    """Over several segments of real speech, a beam of one with one symbol a frame finds exactly
    what greedy with one symbol a frame finds: both restart the predictor at every endpoint.
    (When the beam carried its predictor state across segments, store/default/3 lost three
    quarters of the words of a long stream.)"""
    from decoding.options import DecodingOptions

    rec = loaded_model.recogniser
    audio = _speech(30.0)
    greedy = rec.transcribe(audio, DecodingOptions(max_symbols_per_frame=1))
    beam = rec.transcribe(audio, DecodingOptions(search="beam", beam_size=1))
    assert len(greedy) >= 10
    assert [(w.text, round(w.start, 2)) for w in beam] == [(w.text, round(w.start, 2)) for w in greedy]
