"""Move a checkpoint through a size-limited channel: split its weights into shards, join them back.

Why: files coming back from a lent accelerator machine are capped (16 MB each), and a
5M-parameter transducer in float32 is larger. Shards hold whole tensors, so joining is exact;
the optimiser state is dropped (a model continues from weights via `init_from`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

SHARD_PREFIX = "shard"


def split_checkpoint(checkpoint: str | Path, out_dir: str | Path, max_mb: float = 12.0) -> list[Path]:
    """Writes `<out_dir>/shard0.pt, shard1.pt, ...`; the first also holds everything but weights
    and optimiser."""
    blob = torch.load(checkpoint, map_location="cpu", weights_only=False)
    weights = blob.pop("model")
    blob.pop("optimizer", None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[dict] = [{}]
    size = 0
    for name, tensor in weights.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_mb * 1e6:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    paths = []
    for i, part in enumerate(shards):
        p = out / f"{SHARD_PREFIX}{i}.pt"
        torch.save({"model": part, **(blob if i == 0 else {}), "shards": len(shards)}, p)
        paths.append(p)
    return paths


def join_checkpoint(shard_dir: str | Path, out: str | Path) -> Path:
    """Inverse of `split_checkpoint`: one checkpoint `load_checkpoint` reads."""
    d = Path(shard_dir)
    first = torch.load(d / f"{SHARD_PREFIX}0.pt", map_location="cpu", weights_only=False)
    weights = dict(first.pop("model"))
    n = first.pop("shards")
    for i in range(1, n):
        weights.update(torch.load(d / f"{SHARD_PREFIX}{i}.pt", map_location="cpu", weights_only=False)["model"])
    torch.save({**first, "model": weights}, out)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("checkpoint")
    s.add_argument("out_dir")
    s.add_argument("--max-mb", type=float, default=12.0)
    j = sub.add_parser("join")
    j.add_argument("shard_dir")
    j.add_argument("out")
    a = ap.parse_args(argv)
    if a.cmd == "split":
        for p in split_checkpoint(a.checkpoint, a.out_dir, a.max_mb):
            print(p, p.stat().st_size)
    else:
        print(join_checkpoint(a.shard_dir, a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
