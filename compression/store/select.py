"""Choosing a store variant by a latency budget: the most accurate recogniser whose measured
CPU cost per stream fits.

Why measured numbers from the manifests: a variant's cost is sealed with it
(`bench/compression.py` -> `metrics.rtf_cpu_streaming_alone`, CPU seconds per audio second, one
stream, one thread, relative to the dense default measured in the same run), and so is its
accuracy on real speech (`metrics.wer_speechocean762_dev`). A variant without both numbers is
not a candidate: the server never guesses a model's speed from its size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from compression.store.manifest import Manifest
from compression.store.store import ModelStore, StoreError

log = logging.getLogger(__name__)

__all__ = ["RTF_KEY", "WER_KEY", "Candidate", "candidates", "choose_by_budget"]

RTF_KEY = "rtf_cpu_streaming_alone"
WER_KEY = "wer_speechocean762_dev"
RECOGNISERS = ("chunked-whisper-transducer", "chunked-conformer-transducer", "conformer-transducer")


@dataclass(frozen=True)
class Candidate:
    ref: str  # name/version
    rtf: float
    wer: float


def candidates(store: ModelStore) -> list[Candidate]:
    """Every version of every recogniser in the store with both measured numbers."""
    out = []
    for name in store.names():
        for version in store.versions(name):
            try:
                m: Manifest = store.manifest(name, version)
            except StoreError:
                continue
            rtf, wer = m.metrics.get(RTF_KEY), m.metrics.get(WER_KEY)
            if m.architecture in RECOGNISERS and isinstance(rtf, (int, float)) and isinstance(wer, (int, float)):
                out.append(Candidate(f"{name}/{version}", float(rtf), float(wer)))
    return out


def choose_by_budget(store: ModelStore, budget: float, verify: bool = True) -> Candidate:
    """The lowest-WER candidate with `rtf` <= `budget` (ties: the faster, then the newer version:
    a re-sealed variant with the same measured numbers supersedes its predecessor); a `StoreError`
    naming the fastest one when none fits. With `verify`, a candidate whose files do not match
    its manifest is passed over (with a warning): a budget never selects a model that cannot load."""
    pool = candidates(store)
    if not pool:
        raise StoreError(f"no model in {store.root} records both {RTF_KEY} and {WER_KEY}")
    fits = [c for c in pool if c.rtf <= budget]
    if not fits:
        fastest = min(pool, key=lambda c: c.rtf)
        raise StoreError(f"no model fits a latency budget of RTF {budget:g}; the fastest is {fastest.ref} "
                         f"at {fastest.rtf:g}")
    order = {c.ref: i for i, c in enumerate(pool)}  # store order: a name's versions oldest first
    for c in sorted(fits, key=lambda c: (c.wer, c.rtf, -order[c.ref])):
        if not verify:
            return c
        try:
            store.verify(*c.ref.split("/"))
            return c
        except StoreError as exc:
            log.warning("latency budget: %s passed over: %s", c.ref, exc)
    raise StoreError(f"every model within a latency budget of RTF {budget:g} failed its checksums")
