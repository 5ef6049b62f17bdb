"""Simulated meetings and two-talker mixtures: the references must describe the audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyroomacoustics as pra
import pytest
import soundfile as sf

from corpus.build import tree_digest
from corpus.manifest import read_manifest
from corpus.recipes.meeting import MeetingConfig, _overlap_ratio, build_meeting
from corpus.recipes.mixture import MixtureConfig, build_mixture, overlap_delay
from minutes import arrays

SR = 16000


@pytest.fixture(scope="module")
def meeting(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("meeting")
    cfg = MeetingConfig(out=out, count=1, min_minutes=0.5, max_minutes=0.5, min_speakers=3, max_speakers=3,
                        p_moving=1.0, test_fraction=0.0, seed=3, snr_db=(25.0, 30.0), workers=0, progress=False)
    build_meeting(cfg)
    (rec,) = read_manifest(out / "train.jsonl")
    y, sr = sf.read(out / rec.audio, dtype="float32")
    turns = []
    for line in (out / rec.extra["rttm"]).read_text().splitlines():
        f = line.split()
        turns.append((f[7], float(f[3]), float(f[3]) + float(f[4])))
    return out, {
        "rec": rec, "audio": y, "turns": turns,
        "words": json.loads((out / rec.extra["words"]).read_text()),
        "traj": json.loads((out / rec.extra["trajectories"]).read_text()),
    }


def _frame_db(x: np.ndarray) -> np.ndarray:
    n = len(x) // 160
    return 10 * np.log10((x[: n * 160].reshape(n, 160) ** 2).mean(axis=1) + 1e-12)


@pytest.mark.slow  # the `meeting` fixture builds a meeting: 13 s, paid by whichever test runs first
def test_rttm_turns_match_speech_energy(meeting) -> None:
    _, m = meeting
    y, turns = m["audio"], m["turns"]
    assert y.shape[1] == 7 and len({t[0] for t in turns}) == 3
    db = _frame_db(y[:, 6])
    inside = np.zeros(len(db), bool)
    for _, s, e in turns:
        inside[int(s * 100) : int(e * 100) + 1] = True
    assert np.median(db[inside]) - np.median(db[~inside]) > 10  # speech vs pauses
    loud = db > np.percentile(db[~inside], 99) + 6  # clearly speech
    # Reverberation tails spill a little past turn ends: allow 120 ms.
    grown = np.convolve(inside, np.ones(25), mode="same") > 0
    assert loud[grown].sum() / loud.sum() > 0.97


@pytest.mark.slow  # `meeting` fixture
def test_words_inside_turns_and_overlap_consistent(meeting) -> None:
    _, m = meeting
    for w in m["words"]:
        assert w["end"] > w["start"]
        assert any(spk == w["speaker"] and s - 1e-3 <= w["start"] and w["end"] <= e + 1e-3 for spk, s, e in m["turns"])
    assert sum(w["align"] == "pocketsphinx" for w in m["words"]) > 0.7 * len(m["words"])
    ratio = _overlap_ratio([(s, e) for _, s, e in m["turns"]])
    assert m["rec"].extra["overlap_ratio"] == pytest.approx(ratio, abs=1e-4)
    assert 0.0 < ratio < 0.4


def _doa(block: np.ndarray) -> float:
    g = arrays.geometry("circular-7").T[:2]
    X = np.array([pra.transform.stft.analysis(c, 512, 256) for c in block.T]).transpose(0, 2, 1)
    d = pra.doa.algorithms["NormMUSIC"](g, SR, 512, c=343.0, num_src=1)
    d.locate_sources(X, freq_range=[300.0, 3500.0])
    return float(np.degrees(d.azimuth_recon[0]) % 360)


@pytest.mark.slow  # `meeting` fixture
def test_trajectories_match_rendered_direction(meeting) -> None:
    """DOA on words spoken alone (no other talker within 0.3 s) agrees with the ground truth,
    for static and moving talkers alike."""
    _, m = meeting
    y, turns, traj = m["audio"], m["turns"], m["traj"]
    assert any(t["moving"] for t in traj.values())
    errors, moving_checked = [], 0
    for w in m["words"]:
        s, e = w["start"], w["end"]
        if e - s < 0.25 or any(spk != w["speaker"] and ts < e + 0.3 and te > s - 0.3 for spk, ts, te in turns):
            continue
        est = _doa(y[int(s * SR) : int(e * SR)])
        i = int(round((s + e) / 2 / 0.1))
        truth = traj[w["speaker"]]["azimuth"][i]
        errors.append(min(abs(est - truth), 360 - abs(est - truth)))
        t = traj[w["speaker"]]
        moving_checked += t["moving"] and t["azimuth"][int(s / 0.1)] != t["azimuth"][int(e / 0.1)]
        if len(errors) >= 40:
            break
    assert len(errors) >= 10 and moving_checked >= 1
    assert np.median(errors) < 8 and np.mean(np.array(errors) < 20) > 0.8


@pytest.mark.parametrize("d1, d2", [(5.0, 3.0), (3.0, 5.0), (4.0, 4.0)])
def test_overlap_delay_hits_requested_ratio(d1: float, d2: float) -> None:
    for r in np.linspace(0.0, min(d1, d2) / max(d1, d2), 7):
        tau, got = overlap_delay(d1, d2, float(r))
        overlap = max(0.0, min(d1, tau + d2) - tau)
        assert got == pytest.approx(r, abs=1e-9) and overlap / max(d1, tau + d2) == pytest.approx(r, abs=1e-9)
    tau, got = overlap_delay(5.0, 2.0, 0.9)  # infeasible: the short one sits inside the long one
    assert got == pytest.approx(0.4)


def test_mixture_overlap_matches_request(tmp_path: Path) -> None:
    build_mixture(MixtureConfig(out=tmp_path, hours=0.004, test_mixtures=2, p_real=0.0, shard_size=4,
                                workers=0, progress=False, seed=5))
    recs = list(read_manifest(tmp_path / "train.jsonl")) + list(read_manifest(tmp_path / "test.jsonl"))
    assert len(recs) >= 3
    for r in recs:
        a, b = r.extra["refs"]
        assert a["speaker"] != b["speaker"] and a["start"] == 0.0
        d1, d2 = a["end"] - a["start"], b["end"] - b["start"]
        feasible = min(d1, d2) / max(d1, d2)
        want = min(r.extra["requested_overlap"], feasible)
        assert r.extra["overlap_ratio"] == pytest.approx(want, abs=2e-3)
        y, _ = sf.read(tmp_path / r.audio, dtype="float32")
        db = _frame_db(y)
        # The later talker's start is audible: energy rises within 150 ms after it.
        k = int(b["start"] * 100)
        if b["start"] >= a["end"] - 0.05:  # no overlap: a pause, then speech
            assert db[k : k + 15].max() > db[max(0, k - 5) : k].min() + 6
        assert len(y) / SR == pytest.approx(r.duration, abs=1e-3)


def test_same_seed_same_bytes_meeting_and_mixture(tmp_path: Path) -> None:
    for k in ("a", "b"):
        build_meeting(MeetingConfig(out=tmp_path / f"m{k}", count=1, min_minutes=0.2, max_minutes=0.2, max_speakers=3,
                                    seed=9, workers=0, progress=False))
        build_mixture(MixtureConfig(out=tmp_path / f"x{k}", hours=0.0, test_mixtures=2, shard_size=2, seed=9,
                                    workers=0, progress=False))
    assert tree_digest(tmp_path / "ma") == tree_digest(tmp_path / "mb")
    assert tree_digest(tmp_path / "xa") == tree_digest(tmp_path / "xb")


def test_real_speakers_in_test_meetings_are_dev_speakers(tmp_path: Path) -> None:
    from corpus.readers import default_speechocean_dir, read_speechocean762, split_speakers

    if not default_speechocean_dir().exists():
        pytest.skip("shared speechocean762 not present")
    build_meeting(MeetingConfig(out=tmp_path, count=1, min_minutes=0.3, max_minutes=0.3, min_speakers=3, max_speakers=3,
                                test_fraction=1.0, p_real_speaker=1.0, seed=4, workers=0, progress=False))
    (rec,) = read_manifest(tmp_path / "test.jsonl")
    real = [s for s in rec.extra["speakers"] if s.startswith("speechocean762:")]
    _, dev = split_speakers(read_speechocean762(), 10)
    assert len(real) == 2 and {s.split(":")[1] for s in real} <= dev
    rttm = (tmp_path / rec.extra["rttm"]).read_text()
    assert all(s in rttm for s in real)
