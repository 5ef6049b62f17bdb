"""Distillation from Whisper tiny.en's encoder: targets land on the right utterance, resume, and
the student's head learns them and is left out of the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.features import fbank
from models.transducer import Transducer, load_checkpoint, save_checkpoint
from tests.test_asr_model import real_utterances, tiny_config, write_real_manifest
from training.data import collate
from training.teacher import (POOL, TEACHER_FRAME_S, TeacherConfig, TeacherTargets, WhisperTeacher, extract,
                              manifest_dir, plan_windows, pool_frames)


def test_windows_keep_order_and_fit():
    from corpus.manifest import Record

    recs = [Record(f"r{i}", "a.flac", 16000, 1, d, "x", "s", "t", "train") for i, d in enumerate([12, 10, 9, 25, 3])]
    wins = plan_windows(recs, gap=0.5)
    assert [[r.id for r, _ in w] for w in wins] == [["r0", "r1"], ["r2"], ["r3", "r4"]]
    for w in wins:
        r, off = w[-1]
        assert off + r.duration <= 30.0
    assert wins[0][1][1] == pytest.approx(12.5)
    states = np.arange(1500 * 2, dtype=np.float32).reshape(1500, 2)
    pooled = pool_frames(states, 1.0, 0.4)  # 20 teacher frames from frame 50 -> 10 target frames
    assert pooled.shape == (10, 2)
    assert pooled[0, 0] == pytest.approx((states[50, 0] + states[51, 0]) / 2)


def test_targets_belong_to_their_utterance_and_extraction_resumes(tmp_path: Path):
    manifest = write_real_manifest(tmp_path, 6)
    cfg = TeacherConfig(out=str(tmp_path / "teacher"), threads=1)
    teacher = WhisperTeacher(threads=1)
    extract(str(manifest), cfg, teacher, limit=4)
    folder = manifest_dir(cfg.out, manifest)
    assert len((folder / "index.jsonl").read_text().splitlines()) == 4
    extract(str(manifest), cfg, teacher)  # resumes: only the two missing utterances are added
    index = [json.loads(x) for x in (folder / "index.jsonl").read_text().splitlines()]
    assert [e["id"] for e in index] == [f"u{i}" for i in range(6)]
    dim = json.loads((folder / "meta.json").read_text())["dim"]
    assert (folder / "states.f16").stat().st_size == sum(e["frames"] for e in index) * dim * 2

    targets = TeacherTargets(cfg.out, [str(manifest)])
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    for row in rows:
        t = targets.get(str(manifest), row["id"])
        assert abs(t.shape[0] - row["duration"] / (TEACHER_FRAME_S * POOL)) <= 1.5
    assert targets.get(str(manifest), "nope") is None

    # the stored span is this utterance's: encoded alone, its states agree with the packed ones
    # far better than with a neighbour's or a shifted span
    from training.data import load_audio

    stats = np.load(folder / "stats.npz")
    alone = teacher.encode([load_audio(str(tmp_path / "u1.flac")).numpy()])[0]
    mine = (pool_frames(alone, 0.0, rows[1]["duration"]) - stats["mean"]) / stats["std"]
    packed = targets.get(str(manifest), "u1")
    other = targets.get(str(manifest), "u2")
    n = min(len(mine), len(packed), len(other))

    def cos(a, b):
        return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))

    assert cos(mine[:n], packed[:n]) > 0.6
    assert cos(mine[:n], packed[:n]) > cos(mine[:n], other[:n]) + 0.15
    shift = 12  # 0.48 s
    assert cos(mine[:n], packed[:n]) > cos(mine[: n - shift], packed[shift:n]) + 0.1


def test_distillation_head_learns_and_is_not_shipped(tmp_path: Path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    utts = sorted(real_utterances(8), key=lambda u: u[0].numel())[:4]
    model = Transducer(tiny_config(40))
    model.set_distill_head(16, layer=1)
    feats = [fbank(w) for w, _ in utts]
    allf = torch.cat(feats)
    model.feat_mean.copy_(allf.mean(0))
    model.feat_std.copy_(allf.std(0))
    x, fl, y, tl = collate(feats, [[1, 2, 3]] * len(feats))
    # a learnable "teacher": smoothed normalised mel bands at 10 ms, on a different time grid
    # than the student's 40 ms frames (stretching them is the loss's job)
    targets = [model.normalise(f)[:, ::5][:, :16].contiguous() for f in feats]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    hist = []
    for _ in range(40):
        losses = model.forward_losses(x, fl, y, tl, transducer=False, distill_targets=targets)
        opt.zero_grad()
        losses["distill"].backward()
        opt.step()
        hist.append(float(losses["distill"].detach()))
    assert hist[-1] < 0.6 * hist[0], hist
    with pytest.raises(ValueError):
        Transducer(tiny_config(40)).forward_losses(x, fl, y, tl, transducer=False, distill_targets=targets)

    model.set_distill_head(0)  # what packaging does
    save_checkpoint(tmp_path / "m.pt", model)
    again, _ = load_checkpoint(tmp_path / "m.pt")
    assert again.distill is None and not any(k.startswith("distill") for k in again.state_dict())
    with torch.no_grad():
        assert torch.equal(model.encode(x, fl)[0], again.encode(x, fl)[0])
