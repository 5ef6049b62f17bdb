"""Agglomerative clustering of segments with a location-aware affinity (arXiv 2109.10598 style).

    affinity(a, b) = cos(ē_a, ē_b) + β · tanh( LLR(a, b) / (τ · min(n_a, n_b)) )

ē is a cluster's duration-weighted mean embedding; LLR(a, b) = ℓ(a ∪ b) − ℓ(a) − ℓ(b) is the
Kalman log-likelihood ratio of the clusters' time-ordered DOA observations
(`diarisation.kalman`). Dividing by the smaller cluster's size makes it a per-interleaving
quantity (every switch between two places costs once); tanh bounds what one bad DOA can do.
The pair with the highest affinity merges while that affinity is ≥ `threshold`: one criterion
both orders the merges and stops them. β = 0 is embeddings-only AHC; q = 0 in the motion
model is the stationary-location baseline.

Cost: a Kalman pass per candidate pair is too dear to do for all pairs after every merge, so
the search is lazy: pairs sit in a max-heap keyed by the upper bound cos + β, and a pair's
exact affinity is computed only when it reaches the top; it is then re-pushed with its exact
value. The first exact value on top is the true maximum.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from diarisation.kalman import RandomWalkConfig, Track, llr

__all__ = ["AHCConfig", "Cluster", "ahc"]


@dataclass(frozen=True)
class AHCConfig:
    threshold: float = 0.45  # stop when the best affinity falls below this
    beta: float = 0.5  # weight of the location term (0 = embeddings only)
    tau: float = 2.0  # LLR scale per interleaving, nats
    motion: RandomWalkConfig = field(default_factory=RandomWalkConfig)
    min_cluster: float = 3.0  # s: smaller final clusters are folded into their best neighbour


@dataclass
class Cluster:
    members: list[int]  # segment indices
    emb_sum: np.ndarray  # duration-weighted embedding sum
    duration: float
    track: Track | None

    @property
    def centroid(self) -> np.ndarray:
        return self.emb_sum / (np.linalg.norm(self.emb_sum) + 1e-9)


def _location(a: Cluster, b: Cluster, cfg: AHCConfig) -> tuple[float, Track | None]:
    if cfg.beta == 0 or a.track is None or b.track is None:
        return 0.0, None
    value, merged = llr(a.track, b.track, cfg.motion)
    n = min(len(a.track.times), len(b.track.times))
    return math.tanh(value / (cfg.tau * n)), merged


def ahc(embeddings: np.ndarray, durations: np.ndarray, times: np.ndarray | None,
        vectors: np.ndarray | None, r: np.ndarray | None, cfg: AHCConfig) -> np.ndarray:
    """Segments -> integer labels (S,). embeddings (S, D) unit rows; durations (S,) seconds;
    times/vectors/r: each segment's DOA observation (centre time, (2,) unit vector, noise)."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, int)
    use_loc = cfg.beta != 0 and vectors is not None
    clusters: dict[int, Cluster] = {}
    for i in range(n):
        tr = Track.make(times[i : i + 1], vectors[i : i + 1], r[i : i + 1], cfg.motion) if use_loc else None
        clusters[i] = Cluster([i], embeddings[i] * durations[i], float(durations[i]), tr)
    heap: list[tuple[float, bool, int, int]] = []  # (-value, exact, a, b)
    bonus = abs(cfg.beta) if use_loc else 0.0

    def push_bounds(a: int, others) -> None:
        ca = clusters[a].centroid
        for b in others:
            if b != a:
                heapq.heappush(heap, (-(float(ca @ clusters[b].centroid) + bonus), False, min(a, b), max(a, b)))

    for a in range(n):
        push_bounds(a, range(a + 1, n))
    merged_tracks: dict[tuple[int, int], Track | None] = {}
    next_id = n
    while heap:
        neg, exact, a, b = heapq.heappop(heap)
        if a not in clusters or b not in clusters:
            continue
        if not exact:
            loc, mt = _location(clusters[a], clusters[b], cfg) if use_loc else (0.0, None)
            merged_tracks[(a, b)] = mt
            value = float(clusters[a].centroid @ clusters[b].centroid) + cfg.beta * loc
            heapq.heappush(heap, (-value, True, a, b))
            continue
        if -neg < cfg.threshold:
            break
        ca, cb = clusters.pop(a), clusters.pop(b)
        clusters[next_id] = Cluster(ca.members + cb.members, ca.emb_sum + cb.emb_sum,
                                    ca.duration + cb.duration, merged_tracks.pop((a, b), None))
        push_bounds(next_id, list(clusters))
        next_id += 1
    _fold_small(clusters, cfg)
    labels = np.zeros(n, int)
    for k, c in enumerate(sorted(clusters.values(), key=lambda c: min(c.members))):
        labels[c.members] = k
    return labels


def _fold_small(clusters: dict[int, Cluster], cfg: AHCConfig) -> None:
    """Clusters shorter than min_cluster are rarely real speakers (a cough, a misplaced DOA):
    give their segments to the most similar large cluster (embedding + location)."""
    big = [k for k, c in clusters.items() if c.duration >= cfg.min_cluster]
    if not big:
        return
    for k in [k for k, c in clusters.items() if c.duration < cfg.min_cluster]:
        small = clusters.pop(k)
        best = max(big, key=lambda j: float(small.centroid @ clusters[j].centroid) + cfg.beta * _location(small, clusters[j], cfg)[0])
        clusters[best].members += small.members
