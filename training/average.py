"""`minutes train average`: one checkpoint whose weights are the mean of several.

Why: runs that branch from the same weights (here: the distillation stage continued with and
without vocal-tract-length perturbation) stay in one basin, and the mean of their weights is a
model at least as good as either, for free at inference (a "model soup"; ESPnet and icefall
average their last checkpoints the same way). The checkpoints must share one architecture and
tokenizer; the first one's config, tokenizer and bookkeeping are kept, optimiser state is dropped
(an average has no Adam moments), and the sources are recorded under "averaged_from".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def ema_weights(blob: dict) -> dict[str, torch.Tensor]:
    """The trainer's weight average stored in a last.pt (torch AveragedModel state: "module." keys)."""
    if "ema" not in blob:
        raise ValueError("checkpoint has no EMA (trained without ema_decay, or not a last.pt)")
    return {k.removeprefix("module."): v for k, v in blob["ema"].items() if k.startswith("module.")}


def average_checkpoints(paths: list[Path], out: Path, use_ema: bool = False) -> dict:
    """Mean of the floating-point weights of `paths` (integer buffers from the first); with
    `use_ema`, of the weight averages the trainer keeps in each last.pt instead of the raw weights."""
    if len(paths) < (1 if use_ema else 2):
        raise ValueError("averaging needs at least two checkpoints (or one last.pt with use_ema)")
    blobs = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
    if use_ema:
        for b in blobs:
            b["model"] = ema_weights(b)
    first = blobs[0]
    for p, b in zip(paths[1:], blobs[1:]):
        if b["config"] != first["config"]:
            raise ValueError(f"{p}: another architecture than {paths[0]}")
        if b.get("tokenizer") != first.get("tokenizer"):
            raise ValueError(f"{p}: another tokenizer than {paths[0]}")
        if b["model"].keys() != first["model"].keys():
            raise ValueError(f"{p}: other weights than {paths[0]}")
    weights = {}
    for k, v in first["model"].items():
        if v.is_floating_point():
            weights[k] = torch.stack([b["model"][k].float() for b in blobs]).mean(0).to(v.dtype)
        else:
            weights[k] = v
    avg = {k: v for k, v in first.items() if k not in ("model", "optimizer", "ema", "py_rng")}
    avg["model"] = weights
    avg["step"] = max(int(b.get("step", 0)) for b in blobs)
    avg["averaged_from"] = [{"path": str(p), "step": b.get("step")} for p, b in zip(paths, blobs)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    torch.save(avg, tmp)
    tmp.replace(out)
    return avg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("average", help="average the weights of checkpoints of one architecture",
                       description=__doc__)
    p.add_argument("--checkpoint", type=Path, action="append", required=True, help="repeat for each")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--ema", action="store_true", help="average the EMA weights kept in each last.pt")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    avg = average_checkpoints(args.checkpoint, args.out, use_ema=args.ema)
    print(f"{args.out}: mean of {len(avg['averaged_from'])} checkpoints (steps "
          f"{', '.join(str(a['step']) for a in avg['averaged_from'])})")
    return 0
