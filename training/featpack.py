"""Feature packs: log-mel features of a corpus, quantised and compressed, for training elsewhere.

Why: a training run on a borrowed accelerator machine gets only a few tens of MB of files
beside the repository (no corpus, no audio decoder there). 80-dim log-mel quantised to 6 bits
per utterance (range [max - 30, max] in natural-log energy: 0.48 per step, i.e. an error of
std 0.14 against features whose normalised std is ~3) and compressed with LZMA takes about
15 MB per hour of speech, half of Opus at a bitrate whose log-mel error is of the same size,
and unlike a codec the error is uniform and unbiased. The trainer reads packs straight into
its feature cache (`TrainConfig.feature_packs`), so a pack trains exactly like its manifests.

A pack is two files: `<name>.json` (bits, feature kind, items with id/text/duration/frames/lo/hi)
and `<name>.xz` (the uint8 codes of all items, frame-major, concatenated). `--features whisper`
packs Whisper's log-mel (models/features.py) for a Whisper-initialised recipe: its values span
at most 2 units (8 decades / 4), so 6 bits keep a step of ~0.03; the trainer refuses a pack of
the other kind.

    python -m training.featpack --dirs .pka,.pkb --name train --budget-mb 30,38 --shuffle-from 1 \
        --manifest /work/data/corpus/speechocean762/train.jsonl ... (in the order items should go)
"""

from __future__ import annotations

import argparse
import json
import lzma
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.features import FbankConfig, fbank
from training.data import Item, load_audio, read_items

RANGE = 30.0  # log-energy range kept below each utterance's maximum
EST_BYTES_PER_CODE = 0.52  # measured LZMA ratio of 6-bit codes (for the budget)


@dataclass
class PackedUtterance:
    id: str
    text: str
    duration: float
    frames: int
    lo: float
    hi: float


def quantise(feats: np.ndarray, bits: int) -> tuple[np.ndarray, float, float]:
    """(T, F) float log-mel -> uint8 codes, lo, hi."""
    hi = float(feats.max())
    lo = max(float(feats.min()), hi - RANGE)
    levels = 2**bits - 1
    scale = (hi - lo) or 1.0
    codes = np.clip(np.round((feats - lo) / scale * levels), 0, levels).astype(np.uint8)
    return codes, lo, hi


def dequantise(codes: np.ndarray, lo: float, hi: float, bits: int) -> torch.Tensor:
    levels = 2**bits - 1
    return torch.from_numpy(codes.astype(np.float32) * ((hi - lo) / levels) + lo)


def write_pack(path: Path, utts: list[PackedUtterance], codes: list[np.ndarray], bits: int,
               features: str = "kaldi") -> int:
    """Writes `<path>.json` and `<path>.xz`; returns the compressed size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = lzma.compress(np.concatenate(codes).tobytes(), preset=6) if codes else b""
    path.with_suffix(".xz").write_bytes(blob)
    meta = {"bits": bits, "features": features, "n_mels": int(codes[0].shape[1]) if codes else 80,
            "items": [u.__dict__ for u in utts]}
    path.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
    return len(blob)


def read_pack(path: str | Path, features: str | None = None) -> list[tuple[Item, torch.Tensor]]:
    """Items of a pack with their raw log-mel (float16). `path` may name either file or neither
    suffix. `features` ("kaldi" or "whisper"): refuse a pack of another kind (packs written before
    the kind was recorded are Kaldi fbank)."""
    p = Path(path)
    p = p.with_suffix("") if p.suffix in (".json", ".xz") else p
    meta = json.loads(Path(str(p) + ".json").read_text(encoding="utf-8"))
    kind = meta.get("features", "kaldi")
    if features is not None and kind != features:
        raise ValueError(f"{p}: a pack of {kind} features, the model reads {features}")
    raw = np.frombuffer(lzma.decompress(Path(str(p) + ".xz").read_bytes()), dtype=np.uint8)
    n_mels, bits = meta["n_mels"], meta["bits"]
    out, pos = [], 0
    for u in meta["items"]:
        n = u["frames"] * n_mels
        codes = raw[pos : pos + n].reshape(u["frames"], n_mels)
        pos += n
        feats = dequantise(codes, u["lo"], u["hi"], bits).half()
        out.append((Item(f"{p.name}:{u['id']}", "", u["duration"], u["text"]), feats))
    if pos != raw.size:
        raise ValueError(f"{p}: {raw.size - pos} bytes of codes left over: index and data disagree")
    return out


def build_packs(manifests: list[str], dirs: list[Path], budgets_mb: list[float], name: str = "train", bits: int = 6,
                seed: int = 0, shuffle_from: int = 1, max_duration: float = 20.0, features: str = "kaldi") -> list[dict]:
    """Fill packs `<dir>/<name>.*`, one per directory, in manifest order, each up to its budget
    (one directory a transfer). Manifests from index `shuffle_from` on have their items shuffled
    (a random subset when the budgets run out)."""
    rng = random.Random(seed)
    items: list[Item] = []
    for i, m in enumerate(manifests):
        part = read_items([m], max_duration)
        if i >= shuffle_from:
            rng.shuffle(part)
        items.extend(part)
    reports: list[dict] = []
    it = iter(items)
    pending: Item | None = None
    for folder, budget in zip(dirs, budgets_mb):
        path = folder / name
        utts, codes, est = [], [], 0.0
        bar = tqdm(desc=f"pack {path}", unit="MB", total=budget)
        while True:
            cur = pending if pending is not None else next(it, None)
            pending = None
            if cur is None:
                break
            f = fbank(load_audio(cur.audio), FbankConfig(kind=features)).numpy()
            c, lo, hi = quantise(f, bits)
            cost = c.size * EST_BYTES_PER_CODE / 1e6
            if est + cost > budget:
                pending = cur
                break
            est += cost
            bar.update(cost)
            manifest, rid = cur.id.rsplit(":", 1)
            src = f"{Path(manifest).parent.name}/{Path(manifest).stem}"
            utts.append(PackedUtterance(f"{src}/{rid}", cur.text, cur.duration, int(c.shape[0]), lo, hi))
            codes.append(c)
        bar.close()
        size = write_pack(path, utts, codes, bits, features)
        reports.append({"pack": str(path), "items": len(utts), "hours": sum(u.duration for u in utts) / 3600,
                        "mb": size / 1e6})
        print(json.dumps(reports[-1]))
        if pending is None:
            break
    return reports


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", action="append", required=True, help="in order; repeat")
    ap.add_argument("--dirs", required=True, help="comma-separated folders, one pack each (<dir>/<name>.json|.xz)")
    ap.add_argument("--name", default="train")
    ap.add_argument("--budget-mb", default="35", help="comma-separated compressed size per pack")
    ap.add_argument("--bits", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shuffle-from", type=int, default=1, help="manifests from this index on are shuffled")
    ap.add_argument("--features", default="kaldi", choices=["kaldi", "whisper"], help="log-mel kind to pack")
    args = ap.parse_args(argv)
    dirs = [Path(d) for d in args.dirs.split(",")]
    budgets = [float(b) for b in args.budget_mb.split(",")]
    if len(budgets) == 1:
        budgets *= len(dirs)
    build_packs(args.manifest, dirs, budgets, args.name, args.bits, args.seed, args.shuffle_from,
                features=args.features)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
