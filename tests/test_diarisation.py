"""Diarisation: DOA, Kalman LLR, online and offline diarisers on small rendered scenes, RTTM.

Scenes are rendered here (pyroomacoustics) from speechocean762 speakers that the speaker
model never saw in training (the corpus' dev speakers), so the tests need only the shared
real speech, not /work/data.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from filterpy.kalman import KalmanFilter

from diarisation.doa import DOAConfig, doa_frames, unit
from diarisation.kalman import RandomWalkConfig, Track, llr, loglik
from diarisation.metrics import score
from diarisation.online import OnlineConfig, OnlineDiariser
from diarisation.pipeline import OfflineDiariser
from diarisation.rttm import read_rttm, to_rttm
from diarisation.synth import Utterance, load_speaker_audio, render, speechocean_dir
from minutes.arrays import geometry
from minutes.types import TracksEvent, Turn

torch.set_num_threads(1)
needs_speech = pytest.mark.skipif(not speechocean_dir().exists(), reason="shared speech data missing")
# Held-out (dev) speakers of corpus.readers.split_speakers: never in the speaker model's training.
SPEAKERS = ("0103", "5408")


def _angle_err(a, b):
    return np.abs((np.asarray(a) - b + 180.0) % 360.0 - 180.0)


def _trim(x: np.ndarray) -> np.ndarray:
    e = np.convolve(x ** 2, np.ones(160) / 160, mode="same")
    on = np.flatnonzero(e > e.max() * 1e-4)
    return x[on[0] : on[-1]]


@pytest.fixture(scope="module")
def two_speaker_scene():
    """~30 s: two held-out speakers at 40° and 210°, alternating, one short pause each."""
    a, b = (load_speaker_audio(s, 5) for s in SPEAKERS)
    utts, t = [], 0.3
    for k in range(10):
        spk, x, az = (SPEAKERS[0], a[k // 2], 40.0) if k % 2 == 0 else (SPEAKERS[1], b[k // 2], 210.0)
        x = _trim(x)
        utts.append(Utterance(spk, x, t, az))
        t += len(x) / 16000 + 0.4
    return render(utts, geometry("circular-7"), rt60=0.3, snr_db=25, seed=3)


@needs_speech
@pytest.mark.parametrize("method", ["normmusic", "srp"])
def test_doa_static_source_within_a_few_degrees(method):
    x = _trim(load_speaker_audio(SPEAKERS[0], 2)[1])
    scene = render([Utterance("a", x, 0.2, 127.0, distance=1.6)], geometry("circular-7"), rt60=0.3, snr_db=25)
    f = doa_frames(scene.audio, scene.geometry, 16000, DOAConfig(method=method))
    err = _angle_err(f.azimuth[f.speech], 127.0)
    assert f.speech.sum() > 10
    assert np.median(err) < 4.0, np.median(err)
    assert np.allclose(np.linalg.norm(f.vectors, axis=1), 1.0)


@needs_speech
def test_doa_linear_array_folds_front_back():
    x = _trim(load_speaker_audio(SPEAKERS[1], 1)[0])
    scene = render([Utterance("a", x, 0.2, 300.0, distance=1.5)], geometry("linear-4"), rt60=0.25, snr_db=25)
    f = doa_frames(scene.audio, scene.geometry, 16000)
    # A line array hears 300° and its mirror 60° alike; either is right. Its 12 cm aperture,
    # 30° off end-fire, resolves less finely than the circular array.
    err = np.minimum(_angle_err(f.azimuth[f.speech], 300.0), _angle_err(f.azimuth[f.speech], 60.0))
    assert np.median(err) < 10.0, np.median(err)
    assert np.all(f.azimuth[f.speech] <= 180.5)


def _observations(az0, az1, times, rng, noise_deg=3.0):
    az = az0 + (az1 - az0) * (times - times[0]) / (times[-1] - times[0])
    return unit(az + rng.normal(0, noise_deg, len(times)))


def test_kalman_llr_prefers_merging_the_same_trajectory():
    rng = np.random.default_rng(0)
    cfg = RandomWalkConfig(q=0.004, r=0.004)
    t = np.sort(rng.uniform(0, 60, 30))
    moving = _observations(20.0, 110.0, t, rng)  # one talker walking 90° in a minute
    r = np.full(15, 0.004)
    a = Track.make(t[::2], moving[::2], r, cfg)
    b = Track.make(t[1::2], moving[1::2], r, cfg)
    t2 = np.sort(rng.uniform(0, 60, 15))
    c = Track.make(t2, _observations(70.0, 70.0, t2, rng), r, cfg)  # someone seated on that path
    same, _ = llr(a, b, cfg)
    diff, _ = llr(a, c, cfg)
    assert same > 0 > diff, (same, diff)
    # The stationary model cannot tell the moving talker's halves from the seated one this well.
    st = RandomWalkConfig(q=0.0, r=0.004)
    a0, b0, c0 = (Track.make(x.times, x.vectors, x.r, st) for x in (a, b, c))
    assert llr(a0, b0, st)[0] - llr(a0, c0, st)[0] < same - diff


def test_kalman_loglik_matches_filterpy_log_likelihood():
    rng = np.random.default_rng(1)
    cfg = RandomWalkConfig(q=0.01, r=0.02)
    t = np.cumsum(rng.uniform(0.2, 2.0, 12))
    z = unit(rng.uniform(0, 360, 12))
    kf = KalmanFilter(dim_x=2, dim_z=2)
    kf.x, kf.P, kf.R = np.zeros((2, 1)), np.eye(2) * cfg.p0, np.eye(2) * cfg.r
    kf.F, kf.H = np.eye(2), np.eye(2)
    ref = 0.0
    for k in range(12):
        if k:
            kf.Q = np.eye(2) * cfg.q * (t[k] - t[k - 1])
            kf.predict()
        kf.update(z[k])
        ref += kf.log_likelihood
    assert loglik(t, z, cfg) == pytest.approx(ref, rel=1e-9)


@needs_speech
@pytest.mark.parametrize("proposal", ["beam", "sample"])
def test_online_diariser_two_speakers(two_speaker_scene, proposal):
    scene = two_speaker_scene
    d = OnlineDiariser(OnlineConfig(proposal=proposal, n_particles=16 if proposal == "beam" else 48))
    ds = d.new_stream(scene.geometry, 16000)
    events = []
    for i in range(0, len(scene.audio), 2048):  # chunks that do not line up with steps
        ds.accept(scene.audio[i : i + 2048])
        events += ds.events()
    ds.input_finished()
    s = score(scene.turns, ds.turns())
    assert s.der < 15.0, s
    tracks = [e for e in events if isinstance(e, TracksEvent)]
    assert tracks and {"speaker", "azimuth", "active"} <= set(tracks[-1].to_dict()["tracks"][0])
    assert all(e.to_dict()["type"] in ("speakers", "tracks") for e in events)
    azimuths = sorted(x.azimuth for x in tracks[-1].tracks)
    assert len(azimuths) == 2 and _angle_err(azimuths[0], 40.0) < 6 and _angle_err(azimuths[1], 210.0) < 6
    # A word inside the first talker's first turn gets that talker and their direction.
    first = scene.turns[0]
    spk, az = ds.label(first.start + 0.3, first.start + 0.6)
    assert spk is not None and _angle_err(az, 40.0) < 6


@needs_speech
@pytest.mark.parametrize("clustering", ["stationary_ahc", "kalman_ahc"])
def test_offline_diariser_two_speakers(two_speaker_scene, clustering):
    scene = two_speaker_scene
    steps = []
    res = OfflineDiariser(clustering).apply(scene.audio, scene.geometry, 16000, hook=lambda *a: steps.append(a[0]))
    s = score(scene.turns, res.turns)
    assert s.der < 15.0, s
    assert len({t.speaker for t in res.turns}) == 2
    assert [k for i, k in enumerate(steps) if k not in steps[:i]] == ["doa", "segments", "embeddings", "clustering", "turns", "overlap"]


def test_rttm_round_trip(tmp_path):
    turns = [Turn("S1", 0.0, 1.25), Turn("S2", 1.0, 3.5), Turn("S1", 4.0, 4.75)]
    path = tmp_path / "m.rttm"
    path.write_text(to_rttm(turns, "meeting-1"))
    back = read_rttm(path)["meeting-1"]
    assert [(t.speaker, t.start, t.end) for t in back] == [(t.speaker, t.start, t.end) for t in turns]
    assert score(turns, back).der == pytest.approx(0.0)
    # Labels are mapped, not compared by name; a swapped half costs confusion.
    renamed = [Turn({"S1": "A", "S2": "B"}[t.speaker], t.start, t.end) for t in turns]
    assert score(turns, renamed, collar=0.0).der == pytest.approx(0.0)
    wrong = [Turn("A", 0.0, 3.5), Turn("A", 4.0, 4.75)]
    assert score(turns, wrong, collar=0.0).confusion > 10


def test_default_config_file_matches_the_code_defaults():
    from pathlib import Path

    from diarisation.pipeline import PipelineConfig, load_config, load_online_config

    path = Path(__file__).resolve().parents[1] / "diarisation" / "configs" / "default.toml"
    assert load_config(path) == PipelineConfig()
    assert load_online_config(path) == OnlineConfig()
    tuned = load_config(data={"ahc": {"beta": 0.9, "motion": {"q": 0.03}}})
    assert tuned.ahc.beta == 0.9 and tuned.ahc.motion.q == 0.03 and tuned.ahc.motion.r == PipelineConfig().ahc.motion.r


# ---------------------------------------------------------------- overlapped speech
@pytest.fixture(scope="module")
def overlap_scene():
    """~25 s: the two held-out speakers at 40° and 210° take turns, then talk over each other
    for a few seconds, then take turns again."""
    a, b = (load_speaker_audio(s, 4) for s in SPEAKERS)
    a, b = [_trim(x) for x in a], [_trim(x) for x in b]
    utts, t = [], 0.3
    for k in range(2):
        for spk, x, az in ((SPEAKERS[0], a[k], 40.0), (SPEAKERS[1], b[k], 210.0)):
            utts.append(Utterance(spk, x, t, az))
            t += len(x) / 16000 + 0.4
    utts.append(Utterance(SPEAKERS[0], a[2], t, 40.0))
    utts.append(Utterance(SPEAKERS[1], b[2], t + 0.2, 210.0))
    t += 0.2 + max(len(a[2]), len(b[2])) / 16000 + 0.4
    utts.append(Utterance(SPEAKERS[0], a[3], t, 40.0))
    t += len(a[3]) / 16000 + 0.4
    utts.append(Utterance(SPEAKERS[1], b[3], t, 210.0))
    return render(utts, geometry("circular-7"), rt60=0.3, snr_db=25, seed=5)


def _overlap_interval(turns: list[Turn]) -> tuple[float, float]:
    """The longest stretch where the two reference speakers both talk."""
    best = (0.0, 0.0)
    for x in turns:
        for y in turns:
            if x.speaker < y.speaker:
                a, b = max(x.start, y.start), min(x.end, y.end)
                if b - a > best[1] - best[0]:
                    best = (a, b)
    return best


def _two_label_seconds(hyp: list[Turn], ref: list[Turn]) -> float:
    """Seconds where the reference has two talkers and the hypothesis two labels (10 ms grid)."""
    end = max(t.end for t in ref)
    grid = np.arange(0, end, 0.01)

    def count(turns):
        n = np.zeros(len(grid), int)
        for spk in {t.speaker for t in turns}:
            on = np.zeros(len(grid), bool)
            for t in turns:
                if t.speaker == spk:
                    on |= (grid >= t.start) & (grid < t.end)
            n += on
        return n

    return float(((count(ref) >= 2) & (count(hyp) >= 2)).sum() * 0.01)


@needs_speech
def test_doa_second_peak_points_at_the_other_talker_in_overlap(overlap_scene):
    scene = overlap_scene
    a, b = _overlap_interval(scene.turns)
    assert b - a > 1.0
    f = doa_frames(scene.audio, scene.geometry, 16000)
    m = f.speech & (f.times > a) & (f.times < b)
    both = ((_angle_err(f.azimuth[m], 40.0) < 12) & (_angle_err(f.azimuth2[m], 210.0) < 12)) | (
        (_angle_err(f.azimuth[m], 210.0) < 12) & (_angle_err(f.azimuth2[m], 40.0) < 12))
    assert both.mean() > 0.25, both.mean()
    # Single-talker frames: the second peak is much lower than the first.
    single = f.speech & (f.times < a - 1.0)
    assert np.median(f.ratio2[single]) < np.median(f.ratio2[m])


@needs_speech
@pytest.mark.parametrize("clustering", ["stationary_ahc", "kalman_ahc"])
def test_offline_overlap_emits_both_talkers_near_their_directions(overlap_scene, clustering):
    from dataclasses import replace

    scene = overlap_scene
    d = OfflineDiariser(clustering)
    prep = d.prepare(scene.audio, scene.geometry, 16000)
    res = d.cluster(prep)
    # Where the talkers overlap, both labels are emitted ...
    assert _two_label_seconds(res.turns, scene.turns) > 0.15
    # ... and the two labels sit at the two talkers' directions.
    az = sorted(float(np.median(v[1])) for v in res.tracks.values())
    assert len(az) == 2 and _angle_err(az[0], 40.0) < 8 and _angle_err(az[1], 210.0) < 8, az
    # Without the overlap step each moment has one label, and DER is worse.
    off = OfflineDiariser.__new__(OfflineDiariser)
    off.clustering, off.embedder = d.clustering, d.embedder
    off.config = replace(d.config, overlap=replace(d.config.overlap, enabled=False))
    res0 = off.cluster(prep)
    assert _two_label_seconds(res0.turns, scene.turns) == 0.0
    assert score(scene.turns, res.turns).der < score(scene.turns, res0.turns).der
    off.config = replace(d.config, overlap=replace(d.config.overlap, change_gap=0.0))  # window rule only
    res1 = off.cluster(prep)
    # The overlap starts at a change of speaker: carrying the turns on over it finds most of it.
    assert _two_label_seconds(res.turns, scene.turns) > _two_label_seconds(res1.turns, scene.turns) + 0.5
    assert score(scene.turns, res.turns).der < score(scene.turns, res1.turns).der


@needs_speech
def test_online_overlap_emits_both_talkers(overlap_scene):
    from dataclasses import replace

    scene = overlap_scene
    results = {}
    for on, change_gap in ((True, OnlineConfig().overlap.change_gap), (False, 0.0), (True, 0.0)):
        cfg = OnlineConfig()
        ov = replace(cfg.overlap, enabled=on, change_gap=change_gap)
        ds = OnlineDiariser(replace(cfg, overlap=ov)).new_stream(scene.geometry, 16000)
        for i in range(0, len(scene.audio), 2560):
            ds.accept(scene.audio[i : i + 2560])
        ds.input_finished()
        results[on, change_gap > 0] = ds.turns()
    assert _two_label_seconds(results[True, True], scene.turns) > 0.3
    assert score(scene.turns, results[True, True]).der < score(scene.turns, results[False, False]).der
    # At the change of speaker into the overlap, the turns carried on find more of it.
    assert _two_label_seconds(results[True, True], scene.turns) > _two_label_seconds(results[True, False], scene.turns)
    assert score(scene.turns, results[True, True]).der < score(scene.turns, results[True, False]).der


def test_overlap_hits_need_several_frames_on_another_track():
    from diarisation.overlap import OverlapConfig, frame_hits, hit_spans

    cfg = OverlapConfig(tol_deg=10, own_deg=25, min_ratio2=0.7, window=0.8, min_hits=4)
    dirs = unit(np.array([40.0, 210.0, 50.0]))  # speaker 2 sits 10° from speaker 0
    T = 40
    times = np.arange(T) * 0.064
    v1 = unit(np.full(T, 41.0))  # the own speaker (0) dominates every frame
    az2 = np.full(T, 300.0)  # second peak at nobody ...
    az2[20:26] = 208.0  # ... except 6 frames on speaker 1
    r2 = np.full(T, 0.9)
    r2[25] = 0.5  # one of them too weak to count
    hits = frame_hits(v1, unit(az2), r2, dirs, np.zeros(T, int), cfg)
    assert hits[:, 1].sum() == 5 and not hits[:, 0].any() and not hits[:, 2].any()
    spans = hit_spans(times, hits, 0.128, cfg)
    assert len(spans) == 1 and spans[0][0] == 1
    assert spans[0][1] == pytest.approx(times[20] - 0.064) and spans[0][2] == pytest.approx(times[24] + 0.064)
    # Three scattered hits are noise.
    sparse = np.zeros_like(hits)
    sparse[[3, 17, 33], 1] = True
    assert hit_spans(times, sparse, 0.128, cfg) == []


def test_static_mixture_scores_still_talkers_like_the_stationary_model():
    rng = np.random.default_rng(2)
    rw = RandomWalkConfig(q=0.02, r=0.004)
    mix = RandomWalkConfig(q=0.02, r=0.004, p_static=0.5)
    st = RandomWalkConfig(q=0.0, r=0.004)
    t = np.sort(rng.uniform(0, 90, 40))
    r = np.full(20, 0.004)
    still = unit(70.0 + rng.normal(0, 3.0, 40))
    other = unit(100.0 + rng.normal(0, 3.0, 40))  # a second seated talker 30° away
    walk = _observations(20.0, 120.0, t, rng)

    def lr(z, cfg, z2=None):
        z2 = z if z2 is None else z2
        return llr(Track.make(t[::2], z[::2], r, cfg), Track.make(t[1::2], z2[1::2], r, cfg), cfg)[0]

    # Nobody moves: the mixture's LLR is the stationary model's (up to its prior); somebody
    # walks: the random walk's (the stationary model fits a walk badly per half too, so a
    # random walk's LLR is far higher there).
    assert abs(lr(still, mix) - lr(still, st)) < 1.5
    assert abs(lr(walk, mix) - lr(walk, rw)) < 1.5 and lr(walk, rw) - lr(walk, st) > 10
    # Two seated talkers: the mixture keeps them apart more firmly than the random walk alone.
    assert lr(still, mix, other) < lr(still, rw, other) - 20


def test_turns_carry_on_over_a_change_of_speaker_while_hits_continue():
    from diarisation.overlap import OverlapConfig, change_spans, hit_spans

    cfg = OverlapConfig(change_gap=0.5, change_max=2.0)
    times = np.round(np.arange(0, 10, 0.064), 3)
    hits = np.zeros((len(times), 2), bool)

    def at(t):
        return int(np.argmin(np.abs(times - t)))

    for t in (5.1, 5.4, 5.8, 6.9):  # A after the change at 5.0: a run, then a stray hit 1.1 s on
        hits[at(t), 0] = True
    for t in (4.7, 4.3):  # B heard before its turn begins
        hits[at(t), 1] = True
    turns = [(0.0, 5.0, "A"), (5.0, 10.0, "B")]
    out = sorted(change_spans(turns, times, hits, ["A", "B"], 0.128, cfg), key=lambda x: x.start)
    assert [x.speaker for x in out] == ["B", "A"]
    assert out[0].start == pytest.approx(times[at(4.3)] - 0.064) and out[0].end == 5.0
    assert out[1].start == 5.0 and out[1].end == pytest.approx(times[at(5.8)] + 0.064)
    # The same few hits in the middle of a turn are too sparse for the window rule ...
    assert hit_spans(times, hits, 0.128, cfg) == []
    # ... turns a pause apart are no change of speaker, and change_gap = 0 turns the rule off.
    assert change_spans([(0.0, 4.8, "A"), (5.0, 10.0, "B")], times, hits, ["A", "B"], 0.128, cfg) == []
    assert change_spans(turns, times, hits, ["A", "B"], 0.128, OverlapConfig(change_gap=0.0)) == []


def test_speaker_trainer_publishes_through_the_store_and_the_embedder_loads_it_verified(tmp_path):
    """The trainer's output is a store artefact like any other: the next version (v2 -> v3),
    its real architecture in the listing (not "unknown"), checksums the embedder verifies."""
    from compression.store import ChecksumError, ModelStore
    from diarisation.embedding import ARCHITECTURE, Embedder, default_model_path
    from models.speaker import SpeakerConfig, SpeakerEncoder
    from training.speaker import SpeakerRecipe, publish

    store = ModelStore(tmp_path / "store")
    torch.manual_seed(0)
    recipe = SpeakerRecipe(store=store.root)
    publish(recipe, SpeakerEncoder(SpeakerConfig()).eval(), {"eer_percent": {"all": 30.0}, "steps": 1})
    assert store.versions("speaker") == ["1"]
    (store.root / "speaker" / "1").rename(store.root / "speaker" / "v2")  # the shipped store's form
    m = publish(recipe, SpeakerEncoder(SpeakerConfig()).eval(), {"eer_percent": {"all": 20.0}, "steps": 2})
    assert m.version == "v3" and m.sealed and m.architecture == ARCHITECTURE and m.extra["steps"] == 2
    assert [d.summary()["architecture"] for d in store.list()] == [ARCHITECTURE]
    path = default_model_path(store.root)
    assert path == store.root / "speaker" / "v3" / "model.pt"
    emb = Embedder(path)
    assert emb.kind == "tdnn" and emb(np.random.default_rng(0).normal(size=8000).astype(np.float32)).shape == (emb.dim,)
    assert default_model_path(tmp_path / "empty") is None  # no trained model: the MFCC fallback's case
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ChecksumError):
        default_model_path(store.root)
