"""Speech regions and short segments: the units the offline diariser clusters.

Regions come from the DOA frames' speech gate (hangover-closed and length-filtered). Inside a
region the direction is watched for a jump — two talkers taking turns without a pause sit in
different places — and the region is cut there; the pieces are then split into segments of
about `seg_len` seconds, short enough to hold one talker, long enough for an embedding.
Each segment carries its DOA observation: the dominant direction of its speech frames
(`robust_direction`), and an observation noise that grows with the share of frames pointing
elsewhere (overlap, reverberation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diarisation.doa import DOAFrames, robust_direction

__all__ = ["SegmentConfig", "SpeechSegment", "speech_regions", "make_segments"]


@dataclass(frozen=True)
class SegmentConfig:
    min_gap: float = 0.5  # s: shorter pauses do not end a region (the corpus merges < 0.5 s)
    min_region: float = 0.3  # s: shorter regions are dropped (clicks, noise bursts)
    pad: float = 0.05  # s added at both ends of a region (gate frames are coarse)
    seg_len: float = 1.2  # s: target segment length
    jump_deg: float = 30.0  # direction change that cuts a region (0 disables)
    jump_context: int = 4  # frames averaged either side when looking for a jump
    r_base: float = 0.004  # observation noise of a clean segment DOA (unit-vector units)
    r_spread: float = 0.2  # added × (share of the segment's frames away from its direction)


@dataclass(frozen=True)
class SpeechSegment:
    start: float
    end: float
    vector: np.ndarray  # (2,) unit vector of the segment's direction
    r: float  # observation noise variance of `vector`
    n_frames: int  # speech DOA frames inside

    @property
    def duration(self) -> float:
        return self.end - self.start


def speech_regions(frames: DOAFrames, cfg: SegmentConfig, frame_len: float) -> list[tuple[float, float]]:
    """Gate flags -> [(start, end)] seconds, gaps < min_gap closed, short regions dropped."""
    regions: list[list[float]] = []
    half = frame_len / 2
    for t, s in zip(frames.times, frames.speech):
        if not s:
            continue
        if regions and t - half - regions[-1][1] < cfg.min_gap:
            regions[-1][1] = t + half
        else:
            regions.append([t - half, t + half])
    return [(max(0.0, a - cfg.pad), b + cfg.pad) for a, b in regions if b - a >= cfg.min_region]


def _jumps(frames: DOAFrames, idx: np.ndarray, cfg: SegmentConfig) -> list[float]:
    """Times inside a region where the mean direction before and after differ > jump_deg."""
    if cfg.jump_deg <= 0 or len(idx) < 2 * cfg.jump_context + 1:
        return []
    v, t, c = frames.vectors[idx], frames.times[idx], cfg.jump_context
    cos_thr = np.cos(np.deg2rad(cfg.jump_deg))
    score = np.full(len(idx), 1.0)
    for k in range(c, len(idx) - c + 1):
        a, b = v[k - c : k].sum(0), v[k : k + c].sum(0)
        score[k] = a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9)
    cuts, k = [], c
    while k <= len(idx) - c:
        if score[k] < cos_thr:
            end = k
            while end + 1 <= len(idx) - c and score[end + 1] < cos_thr:
                end += 1
            best = k + int(np.argmin(score[k : end + 1]))
            cuts.append(0.5 * (t[best - 1] + t[best]))
            k = end + c  # one cut per jump
        k += 1
    return cuts


def _observation(frames: DOAFrames, a: float, b: float, cfg: SegmentConfig) -> tuple[np.ndarray, float, int]:
    m = (frames.times >= a) & (frames.times < b) & frames.speech
    if not m.any():  # padded edges only: fall back to all frames in range
        m = (frames.times >= a) & (frames.times < b)
    if not m.any():
        return np.array([1.0, 0.0]), 1.0, 0
    vec, inliers = robust_direction(frames.vectors[m])
    return vec, cfg.r_base + cfg.r_spread * (1 - inliers) + cfg.r_base * 4 / m.sum(), int(m.sum())


def make_segments(frames: DOAFrames, cfg: SegmentConfig, frame_len: float) -> list[SpeechSegment]:
    """Speech regions -> direction-change cuts -> ~seg_len segments with DOA observations."""
    out = []
    for a, b in speech_regions(frames, cfg, frame_len):
        idx = np.flatnonzero((frames.times >= a) & (frames.times < b) & frames.speech)
        bounds = [a, *_jumps(frames, idx, cfg), b]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            n = max(1, int(round((hi - lo) / cfg.seg_len)))
            edges = np.linspace(lo, hi, n + 1)
            for s, e in zip(edges[:-1], edges[1:]):
                vec, r, k = _observation(frames, s, e, cfg)
                out.append(SpeechSegment(float(s), float(e), vec, r, k))
    return out
