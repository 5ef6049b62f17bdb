"""Weight averages: the trainer's EMA (evaluated, kept as best.pt, carried through a resume) and
`minutes train average` over checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.transducer import Transducer, load_checkpoint, save_checkpoint
from training.asr import TrainConfig, Trainer
from training.average import average_checkpoints, ema_weights
from tests.test_asr_model import tiny_config, write_real_manifest


def tiny_recipe(tmp_path: Path, manifest: Path, max_steps: int) -> TrainConfig:
    return TrainConfig(
        exp_dir=str(tmp_path / "exp"), train_manifests=[str(manifest)], dev_manifests=[str(manifest)], dev_utts=2,
        max_batch_seconds=8.0, max_batch_utts=2, curriculum=[0, 20.0], specaug_start=0, vocab_pieces=40,
        d_model=32, n_layers=2, n_heads=2, ff_mult=2, conv_kernel=5, subsample_channels=8, chunk_frames=4,
        left_chunks=2, pred_dim=32, joint_dim=32, ctc_only_steps=0, rnnt_ramp_steps=1, warmup_steps=2, lr=3e-3,
        ema_decay=0.5, freq_warp=0.1, threads=1, max_steps=max_steps, max_minutes=10.0, eval_minutes=100.0,
    )


def weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if v.is_floating_point() and not k.startswith("feat_")}


def test_ema_is_evaluated_saved_and_resumed(tmp_path: Path):
    torch.manual_seed(0)
    manifest = write_real_manifest(tmp_path, 4)
    Trainer(tiny_recipe(tmp_path, manifest, max_steps=4)).run()
    exp = tmp_path / "exp"
    last = torch.load(exp / "last.pt", map_location="cpu", weights_only=False)
    assert int(last["ema"]["n_averaged"]) == 4  # one average per optimiser step
    raw, avg = weights(last["model"]), weights(ema_weights(last))
    assert raw.keys() == avg.keys()
    assert any(not torch.equal(raw[k], avg[k]) for k in raw), "the average must lag the raw weights"
    # the final eval is of the average, so best.pt (the first eval is always a best) holds it
    best, _ = load_checkpoint(exp / "best.pt")
    assert all(torch.equal(best.state_dict()[k], avg[k]) for k in avg)
    # `minutes train average --ema` reads the same average out of last.pt
    averaged = average_checkpoints([exp / "last.pt"], tmp_path / "ema.pt", use_ema=True)
    assert all(torch.equal(averaged["model"][k], avg[k]) for k in avg)

    trainer = Trainer(tiny_recipe(tmp_path, manifest, max_steps=6), resume=True)
    assert int(trainer.ema.n_averaged) == 4
    assert all(torch.equal(trainer.ema.module.state_dict()[k], avg[k]) for k in avg)
    trainer.run()
    again = torch.load(exp / "last.pt", map_location="cpu", weights_only=False)
    assert again["step"] == 6 and int(again["ema"]["n_averaged"]) == 6


def test_average_of_checkpoints_is_their_mean_and_refuses_strangers(tmp_path: Path):
    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        save_checkpoint(tmp_path / f"m{seed}.pt", Transducer(tiny_config(40)), {"tokenizer": b"t", "step": seed * 10})
        paths.append(tmp_path / f"m{seed}.pt")
    avg = average_checkpoints(paths, tmp_path / "avg.pt")
    a, b = (torch.load(p, weights_only=False)["model"] for p in paths)
    model, blob = load_checkpoint(tmp_path / "avg.pt")  # loads as a model
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, (a[k] + b[k]) / 2)
    assert blob["step"] == 20 and [s["step"] for s in avg["averaged_from"]] == [10, 20]

    torch.manual_seed(3)
    other = tiny_config(41)
    save_checkpoint(tmp_path / "other.pt", Transducer(other), {"tokenizer": b"t"})
    with pytest.raises(ValueError, match="architecture"):
        average_checkpoints([paths[0], tmp_path / "other.pt"], tmp_path / "bad.pt")


def test_ema_warmup_forgets_the_first_weights(tmp_path: Path):
    """With `ema_warmup` the n-th update uses decay (1 + n) / (10 + n) (capped by ema_decay): after
    6 updates at ema_decay 0.999 the average has followed most of the way the raw weights went,
    while the plain 0.999 average stays near the weights of the first update (which it copies)."""
    import dataclasses

    torch.manual_seed(0)
    manifest = write_real_manifest(tmp_path, 4)
    base = dataclasses.replace(tiny_recipe(tmp_path, manifest, max_steps=6), ema_decay=0.999)
    moved = {}
    for warm in (False, True):
        cfg = dataclasses.replace(base, exp_dir=str(tmp_path / f"exp{warm}"), ema_warmup=warm)
        trainer = Trainer(cfg)
        start = {k: v.clone() for k, v in weights(trainer.model.state_dict()).items()}
        trainer.run()
        avg, raw = weights(trainer.ema.module.state_dict()), weights(trainer.model.state_dict())
        moved[warm] = sum(float((avg[k] - start[k]).norm()) for k in start) / \
            sum(float((raw[k] - start[k]).norm()) for k in start)
    assert moved[True] > 0.6 and moved[True] > 3 * moved[False], moved


def test_resuming_with_another_seed_branches_the_run(tmp_path: Path):
    """Same weights and step, another data order: the branch's next updates differ from the run's."""
    import dataclasses
    import shutil

    torch.manual_seed(0)
    manifest = write_real_manifest(tmp_path, 6)
    cfg = tiny_recipe(tmp_path, manifest, max_steps=2)
    Trainer(cfg).run()
    shutil.copytree(tmp_path / "exp", tmp_path / "branch")
    for exp, seed in (("exp", cfg.seed), ("branch", cfg.seed + 1)):
        Trainer(dataclasses.replace(cfg, exp_dir=str(tmp_path / exp), seed=seed, max_steps=4), resume=True).run()
    a, _ = load_checkpoint(tmp_path / "exp" / "last.pt")
    b, blob = load_checkpoint(tmp_path / "branch" / "last.pt")
    assert blob["step"] == 4
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
