"""Random-walk Kalman model of a speaker's direction, on the unit circle's (cos, sin) plane.

State x = (cos, sin) of the speaker's azimuth, x_k = x_{k-1} + w, w ~ N(0, q·Δt·I); observation
z = x + v, v ~ N(0, r·I). Working on vectors instead of angles avoids the 359°/1° wrap; the
circle's curvature is ignored, which costs nothing at the few-degree steps a talker makes
between observations. q = 0 is the stationary model (a fixed location per speaker).

`loglik` is the prediction-error decomposition ℓ = Σ_k log N(z_k; x̂_k|k-1, S_k), computed by the
Kalman recursion (a scalar one: P stays isotropic; filterpy's `KalmanFilter` is the reference
the tests check it against); the prior N(0, p0·I) (p0 = 0.5 is the per-component variance of a
uniformly random direction) makes ℓ of different clusters comparable, so the clustering
criterion LLR(a, b) = ℓ(a ∪ b) − ℓ(a) − ℓ(b) is well defined: near +log(p0/r) per dimension
when a and b are one talker's track (the merge pays the prior once, not twice), and strongly
negative when the merged sequence keeps jumping between two places.

`p_static` > 0 scores each cluster by the mixture of "sits still" (q = 0) and "walks" (q):
ℓ = log(p·L₀ + (1 − p)·L_q). Why: the random walk's LLR for a seated talker's two halves is
far larger than the stationary model's (each half alone pays for the prediction variance that
grows over its gaps), so at one threshold the random walk merges seated neighbours more
readily; the mixture scores a still cluster as the stationary model does and a walking one as
the random walk does. The benchmark decides on its train meetings whether it pays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from filterpy.kalman import KalmanFilter

__all__ = ["RandomWalkConfig", "Track", "loglik", "llr", "smooth"]

_LOG2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class RandomWalkConfig:
    """Noise levels of the motion model (unit-vector units; 0.01 ≈ (5.7°)²)."""

    q: float = 0.0  # process noise per second; 0 = stationary talkers
    r: float = 0.01  # observation noise of one segment's DOA
    p0: float = 0.5  # prior variance per component (uniform direction)
    # Prior probability that a cluster's talker sits still (q = 0) rather than walks (q): ℓ is
    # then the log of the two models' mixture, so a cluster that never moves is scored as by the
    # stationary model and one that walks as by the random walk. 0 = the random walk alone.
    p_static: float = 0.0


def _filter(cfg: RandomWalkConfig) -> KalmanFilter:
    kf = KalmanFilter(dim_x=2, dim_z=2)
    kf.x = np.zeros((2, 1))
    kf.P = np.eye(2) * cfg.p0
    kf.F = np.eye(2)
    kf.H = np.eye(2)
    kf.R = np.eye(2) * cfg.r
    kf.Q = np.zeros((2, 2))
    return kf


def _loglik(times: np.ndarray, vectors: np.ndarray, q: float, cfg: RandomWalkConfig,
            r: np.ndarray | None) -> float:
    """ℓ under process noise q.

    Why not filterpy's `KalmanFilter` step by step (it is the reference: the tests check this
    against it): with F = H = I and isotropic P0, Q and R, the covariance stays a multiple of
    the identity, P = p·I, so the filter reduces to a scalar variance recursion and a 2-D mean,
    ~4x cheaper for the whole AHC in plain floats — and AHC runs it for every candidate pair."""
    rr = [cfg.r] * len(times) if r is None else [float(x) for x in r]
    p, x0, x1, total, prev = cfg.p0, 0.0, 0.0, 0.0, None
    for t, (z0, z1), rk in zip(np.asarray(times, float).tolist(), np.asarray(vectors, float).tolist(), rr):
        if prev is not None:
            p += q * max(t - prev, 0.0)
        s = p + rk
        y0, y1 = z0 - x0, z1 - x1
        total -= 0.5 * ((y0 * y0 + y1 * y1) / s + 2.0 * math.log(s)) + _LOG2PI
        g = p / s
        x0, x1, p, prev = x0 + g * y0, x1 + g * y1, p * rk / s, t
    return total


def loglik(times: np.ndarray, vectors: np.ndarray, cfg: RandomWalkConfig,
           r: np.ndarray | None = None) -> float:
    """ℓ of time-ordered observations: times (K,), vectors (K, 2), optional per-observation
    noise r (K,) (a segment whose frames disagree is a less certain observation). With
    0 < p_static < 1 and q > 0: log(p_static·L(q=0) + (1 − p_static)·L(q)), the Bayesian
    model average of "sits still" and "walks"."""
    lq = _loglik(times, vectors, cfg.q, cfg, r)
    if cfg.q <= 0 or cfg.p_static <= 0:
        return lq
    l0 = _loglik(times, vectors, 0.0, cfg, r)
    if cfg.p_static >= 1:
        return l0
    return float(np.logaddexp(math.log(cfg.p_static) + l0, math.log(1 - cfg.p_static) + lq))


@dataclass
class Track:
    """A cluster's time-ordered DOA observations and their cached ℓ under one model."""

    times: np.ndarray  # (K,)
    vectors: np.ndarray  # (K, 2)
    r: np.ndarray  # (K,)
    ll: float = float("nan")

    @classmethod
    def make(cls, times, vectors, r, cfg: RandomWalkConfig) -> "Track":
        order = np.argsort(times, kind="stable")
        t, v, rr = np.asarray(times)[order], np.asarray(vectors)[order], np.asarray(r)[order]
        return cls(t, v, rr, loglik(t, v, cfg, rr))

    def merge(self, other: "Track", cfg: RandomWalkConfig) -> "Track":
        return Track.make(np.concatenate([self.times, other.times]),
                          np.concatenate([self.vectors, other.vectors]),
                          np.concatenate([self.r, other.r]), cfg)


def llr(a: Track, b: Track, cfg: RandomWalkConfig) -> tuple[float, Track]:
    """LLR(a, b) = ℓ(a ∪ b) − ℓ(a) − ℓ(b), and the merged track (reused if they merge)."""
    m = a.merge(b, cfg)
    return m.ll - a.ll - b.ll, m


def smooth(times: np.ndarray, vectors: np.ndarray, cfg: RandomWalkConfig,
           r: np.ndarray | None = None) -> np.ndarray:
    """Rauch-Tung-Striebel smoothed directions (K, 2) of one track (filterpy's smoother):
    the offline diariser reports these as the speaker's azimuth track."""
    kf = _filter(cfg)
    n = len(times)
    if n == 0:
        return np.zeros((0, 2))
    xs, ps, qs = np.zeros((n, 2, 1)), np.zeros((n, 2, 2)), np.zeros((n, 2, 2))
    fs = np.repeat(np.eye(2)[None], n, axis=0)
    eye = np.eye(2)
    for k in range(n):
        if k:
            kf.Q = eye * (cfg.q * max(times[k] - times[k - 1], 0.0))
            kf.predict()
        qs[k] = kf.Q
        kf.update(vectors[k].reshape(2, 1), R=None if r is None else eye * r[k])
        xs[k], ps[k] = kf.x, kf.P
    # filterpy's smoother wants Q for the step k -> k+1 at index k.
    qs = np.concatenate([qs[1:], qs[-1:]])
    sx = kf.rts_smoother(xs, ps, fs, qs)[0] if n > 1 else xs
    return sx[:, :, 0]
