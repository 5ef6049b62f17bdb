"""Offline diarisation pipeline, in the pyannote manner.

Fixed choices go to the constructor (DOA method, clustering variant, embedder); tunable values
(gates, segment lengths, noise levels, β, thresholds) come from a `PipelineConfig`, loadable
from TOML. `apply()` is a short sequence of named steps reported through a progress hook
`hook(step, done, total)`:

    doa -> segments -> embeddings -> clustering -> turns -> overlap

Clustering variants (the issue's methods): `emb_ahc` (β = 0), `stationary_ahc` (location
with q = 0), `kalman_ahc` (random-walk motion model).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.signal import resample_poly

from diarisation.clustering import AHCConfig, ahc
from diarisation.doa import DOAConfig, DOAEstimator, DOAFrames, azimuth_of
from diarisation.embedding import Embedder
from diarisation.kalman import RandomWalkConfig, smooth
from diarisation.overlap import OverlapConfig, add_overlaps, merge_turns
from diarisation.segments import SegmentConfig, SpeechSegment, make_segments
from minutes.types import Turn

__all__ = ["PipelineConfig", "OfflineDiariser", "DiarisationResult", "Prepared", "CLUSTERINGS", "load_config", "load_online_config"]

CLUSTERINGS = ("emb_ahc", "stationary_ahc", "kalman_ahc")
Hook = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PipelineConfig:
    doa: DOAConfig = field(default_factory=DOAConfig)
    segments: SegmentConfig = field(default_factory=SegmentConfig)
    # Defaults = the settings the benchmark chose on its dev meetings (bench/results/diarisation.md).
    ahc: AHCConfig = field(default_factory=lambda: AHCConfig(threshold=0.65, motion=RandomWalkConfig(q=0.01, r=0.004)))
    thresholds: dict[str, float] = field(default_factory=lambda: {"emb_ahc": 0.6, "stationary_ahc": 0.3})  # per variant, overrides ahc.threshold
    track: RandomWalkConfig = field(default_factory=lambda: RandomWalkConfig(q=0.002, r=0.004))  # output tracks
    embed_channel: int = 0  # which mic feeds the embedder
    overlap: OverlapConfig = field(default_factory=OverlapConfig)  # second talker from DOA


def _build(base, data: dict[str, Any]):
    """`base` (a dataclass instance) with the values in `data` replaced, nested tables into
    nested dataclasses (so a partial table keeps the other defaults of that field)."""
    kw = {}
    for f in fields(base):
        if f.name not in data:
            continue
        v, cur = data[f.name], getattr(base, f.name)
        if is_dataclass(cur) and isinstance(v, dict):
            v = _build(cur, v)
        elif isinstance(cur, tuple) and isinstance(v, list):
            v = tuple(v)
        kw[f.name] = v
    return replace(base, **kw)


def load_config(path: str | Path | None = None, data: dict | None = None) -> PipelineConfig:
    """PipelineConfig from a TOML file (tables [doa], [segments], [ahc], [ahc.motion], ...;
    a file's [online] table is for `load_online_config`)."""
    if path is not None:
        data = tomllib.loads(Path(path).read_text())
    return _build(PipelineConfig(), {k: v for k, v in (data or {}).items() if k != "online"})


def load_online_config(path: str | Path | None = None, data: dict | None = None):
    """OnlineConfig from the [online] table of a pipeline TOML file."""
    from diarisation.online import OnlineConfig

    if path is not None:
        data = tomllib.loads(Path(path).read_text())
    return _build(OnlineConfig(), (data or {}).get("online", {}))


@dataclass
class DiarisationResult:
    turns: list[Turn]  # speaker turns with mean azimuth
    segments: list[SpeechSegment]
    labels: np.ndarray  # (S,) cluster index per segment
    tracks: dict[str, tuple[np.ndarray, np.ndarray]]  # speaker -> (times, azimuth degrees)


@dataclass
class Prepared:
    """What the clustering variants share: DOA frames, segments and their embeddings."""

    frames: DOAFrames
    segments: list[SpeechSegment]
    embeddings: np.ndarray  # (S, D)
    frame_len: float = 0.128  # s, one DOA frame


def _speaker(k: int) -> str:
    return f"S{k + 1}"


class OfflineDiariser:
    """Whole-recording diariser: (N, M) audio + geometry -> speaker turns and azimuth tracks."""

    def __init__(self, clustering: str = "kalman_ahc", doa: str = "normmusic",
                 embedder: Embedder | None = None, config: PipelineConfig = PipelineConfig()) -> None:
        if clustering not in CLUSTERINGS:
            raise ValueError(f"clustering must be one of {CLUSTERINGS}")
        self.clustering = clustering
        self.embedder = embedder or Embedder()
        ahc_cfg = config.ahc
        if clustering == "emb_ahc":
            ahc_cfg = replace(ahc_cfg, beta=0.0)
        elif clustering == "stationary_ahc":
            ahc_cfg = replace(ahc_cfg, motion=replace(ahc_cfg.motion, q=0.0))
        if clustering in config.thresholds:
            ahc_cfg = replace(ahc_cfg, threshold=config.thresholds[clustering])
        self.config = replace(config, doa=replace(config.doa, method=doa), ahc=ahc_cfg)

    def apply(self, audio: np.ndarray, geometry: np.ndarray, sample_rate: int,
              hook: Hook | None = None) -> DiarisationResult:
        """(N, M) audio at `sample_rate`, geometry (M, 3) metres -> turns and tracks."""
        return self.cluster(self.prepare(audio, geometry, sample_rate, hook), hook)

    def prepare(self, audio: np.ndarray, geometry: np.ndarray, sample_rate: int,
                hook: Hook | None = None, frames: DOAFrames | None = None) -> "Prepared":
        """Steps doa -> segments -> embeddings. They do not depend on the clustering variant,
        so a benchmark comparing variants runs them once (`cluster` takes the result)."""
        hook = hook or (lambda step, done, total: None)
        cfg = self.config
        est = DOAEstimator(geometry, sample_rate, cfg.doa)
        if frames is None:  # (a caller may pass frames it computed with the same DOAConfig)
            frames = est.process(audio)
        hook("doa", len(frames), len(frames))
        segs = make_segments(frames, cfg.segments, cfg.doa.block * est.step / sample_rate)
        hook("segments", len(segs), len(segs))
        mono = audio[:, min(cfg.embed_channel, audio.shape[1] - 1)].astype(np.float32)
        if sample_rate != 16000:
            mono = resample_poly(mono, 16000, sample_rate).astype(np.float32)
        embs = np.zeros((len(segs), self.embedder.dim), np.float32)
        for i, s in enumerate(segs):
            embs[i] = self.embedder(mono[int(s.start * 16000) : int(s.end * 16000)])
            hook("embeddings", i + 1, len(segs))
        return Prepared(frames, segs, embs, cfg.doa.block * est.step / sample_rate)

    def cluster(self, prep: "Prepared", hook: Hook | None = None) -> DiarisationResult:
        """Steps clustering -> turns."""
        hook = hook or (lambda step, done, total: None)
        segs = prep.segments
        times = np.array([(s.start + s.end) / 2 for s in segs])
        vecs = np.array([s.vector for s in segs]).reshape(-1, 2)
        rs = np.array([s.r for s in segs])
        labels = ahc(prep.embeddings, np.array([s.duration for s in segs]), times, vecs, rs, self.config.ahc)
        hook("clustering", 1, 1)
        turns, tracks = self._turns(segs, labels, times, vecs, rs)
        hook("turns", len(turns), len(turns))
        if self.config.overlap.enabled:
            extra = add_overlaps([(s.start, s.end, _speaker(int(k))) for s, k in zip(segs, labels)],
                                 prep.frames, tracks, prep.frame_len, self.config.overlap)
            turns = merge_turns(turns + extra)
            hook("overlap", len(extra), len(extra))
        return DiarisationResult(turns, segs, labels, tracks)

    def _turns(self, segs, labels, times, vecs, rs):
        turns: list[Turn] = []
        run: list[int] = []

        def close() -> None:
            if run:
                v = vecs[run].sum(axis=0)
                turns.append(Turn(_speaker(int(labels[run[0]])), segs[run[0]].start, segs[run[-1]].end,
                                  round(float(azimuth_of(v)), 1)))

        for i, s in enumerate(segs):
            if run and (labels[i] != labels[run[-1]] or s.start - segs[run[-1]].end > 0.05):
                close()
                run = []
            run.append(i)
        close()
        tracks = {}
        for k in np.unique(labels):
            idx = np.flatnonzero(labels == k)
            tracks[_speaker(int(k))] = (times[idx], azimuth_of(smooth(times[idx], vecs[idx], self.config.track, rs[idx])))
        return turns, tracks
