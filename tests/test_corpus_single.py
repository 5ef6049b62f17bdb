"""The single recipe and the acoustic parts under it: rooms, noise, voices, held-out sets, seeds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyroomacoustics as pra
import pytest
import soundfile as sf

from corpus import rooms, tts
from corpus.build import tree_digest
from corpus.manifest import read_manifest, resolve_audio
from corpus.readers import read_speechocean762, split_speakers
from corpus.recipes.single import SingleConfig, build_single
from corpus.sentences import is_test_text
from corpus.text import ALPHABET
from minutes import arrays

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speechocean762-train"


def _cfg(out: Path, **kw) -> SingleConfig:
    base = dict(out=out, hours=0.006, seed=7, test_utts=4, shard_size=6, workers=0, progress=False,
                p_real=0.3 if SHARED.exists() else 0.0)
    base.update(kw)
    return SingleConfig(**base)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    build_single(_cfg(out))
    return out


@pytest.mark.slow  # the `built` fixture builds a corpus: 2-12 s, paid by whichever test runs first
def test_manifests_audio_and_fields(built: Path) -> None:
    test = list(read_manifest(built / "test.jsonl"))
    train = list(read_manifest(built / "train.jsonl"))
    assert len(test) == 4 and len(train) >= 3
    for r in test + train:
        info = sf.info(str(resolve_audio(r, built / "train.jsonl")))
        assert info.samplerate == r.sample_rate == 16000 and info.channels == r.channels == 1
        assert abs(info.frames / 16000 - r.duration) < 1e-3
        assert set(r.text) <= ALPHABET and r.text
        if r.room is not None:
            assert r.array == "circular-7" and len(r.geometry) == 7
            rel = np.asarray(r.positions[0])
            assert abs(arrays.azimuth_deg(rel) - r.azimuth) < 0.01
            assert 0.15 <= r.room["rt60"] <= 0.6
    assert all(r.room is not None for r in test)  # the test set is all through rooms


@pytest.mark.slow  # `built` fixture
def test_held_out_voices_texts_and_speakers(built: Path) -> None:
    test = list(read_manifest(built / "test.jsonl"))
    train = list(read_manifest(built / "train.jsonl"))
    held = {v.speaker for v in tts.identity_grid() if tts.is_held_out(v)}
    assert all(r.speaker in held for r in test)
    assert not any(r.speaker in held for r in train)
    assert not {r.speaker for r in test} & {r.speaker for r in train}
    assert not any(is_test_text(r.text) for r in train if r.source.startswith("tts"))
    if SHARED.exists():
        _, dev = split_speakers(read_speechocean762(SHARED), 10)
        real = [r for r in train if r.source == "speechocean762"]
        assert not {r.speaker.split(":")[1] for r in real} & dev


@pytest.mark.slow  # `built` fixture, and a second build
def test_same_seed_same_bytes(built: Path, tmp_path: Path) -> None:
    build_single(_cfg(tmp_path / "again"))
    assert tree_digest(tmp_path / "again") == tree_digest(built)
    # An interrupted build resumes to the same bytes: keep the first shard, tear the manifest.
    prog = tmp_path / "again" / ".progress.jsonl"
    prog.write_text(prog.read_text().splitlines()[0] + "\n")
    with open(tmp_path / "again" / "train.jsonl", "a") as fh:
        fh.write('{"id": "torn')
    build_single(dataclasses.replace(_cfg(tmp_path / "again"), resume=True))
    assert tree_digest(tmp_path / "again") == tree_digest(built)
    build_single(_cfg(tmp_path / "other", seed=8, p_real=0.0, hours=0.002, test_utts=1))
    assert (tmp_path / "other" / "test.jsonl").read_bytes() != (built / "test.jsonl").read_bytes()


@pytest.mark.parametrize("rt60", [0.2, 0.45, 0.6])
def test_rir_reaches_requested_rt60(rt60: float) -> None:
    rng = np.random.default_rng(0)
    room = rooms.RoomSpec((6.0, 5.0, 3.0), rt60, 10, (3.0, 2.5, 0.8), 20.0, 1.0)
    mics = arrays.geometry("circular-7") + np.asarray(room.array_center)
    h = rooms.room_rirs(room, mics, np.array([1.5, 1.0, 1.5]), rng)
    assert h.shape[0] == 7
    measured = pra.experimental.measure_rt60(h[6], fs=16000)
    assert abs(measured - rt60) < 0.15 * rt60


def test_diffuse_noise_coherence() -> None:
    g = arrays.geometry("circular-7")
    n = rooms.diffuse_noise(np.random.default_rng(1), 16000 * 25, g, tilt=0.0)
    assert n.shape == (400000, 7) and np.allclose(n.std(axis=0), 1.0, atol=1e-3)
    c = np.corrcoef(n.T)
    # Diffuse field: mics 4.25 cm apart are partly coherent, opposite mics (8.5 cm) less so.
    assert c[0, 1] > c[0, 3] > 0.05 and c[0, 1] < 0.95


def test_voices_speak_and_trim() -> None:
    for v in (tts.Voice("flite", "kal16", 1.15, 200), tts.Voice("espeak", "en-us+f2"), tts.Voice("festival", "kal_diphone")):
        x = tts.synthesize(v, "HELLO THERE HOW ARE YOU")
        assert 0.6 < len(x) / 16000 < 3.0
        head = np.abs(x[:400]).max()  # trimmed: speech starts within ~50 ms
        assert head > 0.001 and np.abs(x).max() == pytest.approx(0.5, abs=1e-3)


def test_array_presets_and_azimuth_convention() -> None:
    c = arrays.geometry("circular-7")
    assert c.shape == (7, 3) and np.allclose(c[6], 0) and np.allclose(c[0], [0.0425, 0, 0])
    assert np.allclose(np.linalg.norm(c[:6], axis=1), 0.0425)
    assert arrays.azimuth_deg(c[1]) == pytest.approx(60.0)  # counter-clockwise
    lin = arrays.geometry("linear-4")
    assert lin.shape == (4, 3) and np.allclose(np.diff(lin[:, 0]), 0.04) and np.allclose(lin.mean(axis=0), 0)
    assert arrays.azimuth_deg(np.array([0.0, -1.0, 0.3])) == pytest.approx(270.0)
    with pytest.raises(ValueError):
        arrays.geometry("nope")
