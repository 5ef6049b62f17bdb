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


def average_checkpoints(paths: list[Path], out: Path) -> dict:
    """Mean of the floating-point weights of `paths` (integer buffers from the first)."""
    if len(paths) < 2:
        raise ValueError("averaging needs at least two checkpoints")
    blobs = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    avg = average_checkpoints(args.checkpoint, args.out)
    print(f"{args.out}: mean of {len(avg['averaged_from'])} checkpoints (steps "
          f"{', '.join(str(a['step']) for a in avg['averaged_from'])})")
    return 0
