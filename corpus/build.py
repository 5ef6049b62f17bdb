"""Running a recipe: shards over a process pool, manifests appended as shards finish.

A recipe plans every shard in the parent from the seed (cheap: texts, voices, rooms, positions),
then workers render them. `Pool.imap` returns shards in order, so manifest lines come out in the
same order on every run and the same seed gives the same bytes, while a trainer can already
read the lines written so far. Workers run one thread each (BLAS, torch, onnxruntime): the pool
is the parallelism, and two threads per process were measured slower on these 2 cores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from corpus.manifest import ManifestWriter, Record

log = logging.getLogger(__name__)

__all__ = ["BuildStats", "run_shards", "single_thread_env", "tree_digest"]


def single_thread_env() -> None:
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


@dataclass
class BuildStats:
    """What a build (this run of it) made, per split, and how fast (hours of audio per
    wall-clock minute)."""

    records: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    skipped_shards: int = 0  # done by an earlier run (resume); not in these numbers

    def add(self, r: Record) -> None:
        self.records[r.split] = self.records.get(r.split, 0) + 1
        self.seconds[r.split] = self.seconds.get(r.split, 0.0) + r.duration

    @property
    def hours(self) -> float:
        return sum(self.seconds.values()) / 3600

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records, "hours": {k: round(v / 3600, 4) for k, v in self.seconds.items()},
            "wall_s": round(self.wall_s, 1), "skipped_shards": self.skipped_shards,
            "hours_per_minute": round(self.hours / max(self.wall_s / 60, 1e-9), 4),
        }


PROGRESS = ".progress.jsonl"


def _resume_point(out: Path) -> tuple[int, dict[str, int]]:
    """(shards already done, manifest lines per split after them) from the progress log.
    Shards complete in order (`imap`), so the done ones are exactly the first K."""
    f = out / PROGRESS
    if not f.exists():
        return 0, {}
    last = None
    for line in f.read_text().splitlines():
        try:
            last = json.loads(line)
        except json.JSONDecodeError:
            break  # torn last line: the entry before it stands
    return (last["done"], last["lines"]) if last else (0, {})


def _truncate_lines(path: Path, n: int) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)[:n] if path.exists() else []
    path.write_text("".join(lines), encoding="utf-8")
    return lines


def run_shards(
    render: Callable[[Any], list[Record]],
    shards: Sequence[Any],
    out: Path,
    workers: int = 2,
    progress: bool = True,
    desc: str = "corpus",
    resume: bool = False,
) -> BuildStats:
    """Render `shards` with `render(shard) -> records` on `workers` processes (0: in this
    process), appending each record to `out/<split>.jsonl` as its shard completes. With
    `resume`, shards a previous (interrupted) run of the same plan finished are kept, lines of
    a half-written shard are dropped, and the build carries on from there."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    stats = BuildStats()
    skip, lines = _resume_point(out) if resume else (0, {})
    stats.skipped_shards = skip
    if not resume:
        (out / PROGRESS).unlink(missing_ok=True)
    for split, n in lines.items():
        _truncate_lines(out / f"{split}.jsonl", n)
    for f in out.glob("*.jsonl"):  # a fresh build, or splits with no complete shard yet
        if f.name != PROGRESS and f.stem not in lines:
            f.unlink()
    counts = dict(lines)
    writers: dict[str, ManifestWriter] = {}
    progress_log = open(out / PROGRESS, "a", encoding="utf-8")
    t0 = time.time()
    bar = tqdm(total=len(shards), initial=skip, desc=desc, unit="shard", disable=not progress, smoothing=0.05)

    def consume(results: Iterable[list[Record]]) -> None:
        for done, recs in enumerate(results, skip + 1):
            for r in recs:
                if r.split not in writers:
                    writers[r.split] = ManifestWriter(out / f"{r.split}.jsonl", append=True)
                writers[r.split].write(r)
                counts[r.split] = counts.get(r.split, 0) + 1
                stats.add(r)
            progress_log.write(json.dumps({"done": done, "lines": counts}) + "\n")
            progress_log.flush()
            bar.update(1)
            bar.set_postfix(hours=f"{stats.hours:.2f}")
            if done % 10 == 0 or done == len(shards):
                log.info("%s: %d/%d shards, %.3f h in %.0f s", desc, done, len(shards), stats.hours, time.time() - t0)

    todo = shards[skip:]
    try:
        if workers <= 0:
            single_thread_env()
            consume(map(render, todo))
        else:
            ctx = mp.get_context("fork")
            with ctx.Pool(workers, initializer=single_thread_env, maxtasksperchild=200) as pool:
                consume(pool.imap(render, todo))
    finally:
        bar.close()
        progress_log.close()
        for w in writers.values():
            w.close()
    stats.wall_s = time.time() - t0
    return stats


def tree_digest(root: Path) -> str:
    """SHA-1 over every file's path and bytes under `root`, leaving out the timing and progress
    files: two builds with the same arguments and seed give the same digest."""
    h = hashlib.sha1()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and p.name not in ("build_stats.json", PROGRESS):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()
