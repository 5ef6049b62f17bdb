"""The `real` recipe: manifests over a real corpus, split by whole speakers, audio in place."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from corpus.manifest import write_manifest
from corpus.readers import read_corpus, split_speakers, to_records

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RealConfig:
    """Where the corpus is, what to call it in manifests, how many speakers to hold out."""

    corpus_dir: Path
    out: Path
    source: str = "speechocean762"
    n_dev: int = 10


def build_real(cfg: RealConfig) -> dict[str, int]:
    """Write `train.jsonl` and `dev.jsonl` under `cfg.out`; return record counts per split."""
    utts = read_corpus(cfg.corpus_dir)
    train_spk, dev_spk = split_speakers(utts, cfg.n_dev)
    counts = {}
    for split, speakers in (("train", train_spk), ("dev", dev_spk)):
        recs = to_records([u for u in utts if u.speaker in speakers], split, cfg.source)
        counts[split] = write_manifest(cfg.out / f"{split}.jsonl", recs)
    log.info("real corpus %s: %s (dev speakers %s)", cfg.corpus_dir, counts, sorted(dev_spk))
    return counts
