"""Overlapped speech from direction: a second talker inside a segment, found by DOA frames.

A single-label diariser misses every second of overlap (10 % of speech in the corpus'
meetings). Speech is sparse in time-frequency, so in a 128 ms frame during overlap the
strongest direction flips between the two talkers. After clustering every speaker has a
location track; a segment whose speech frames point, often enough, at another speaker's
track (and not at its own speaker's) gets that speaker as an overlapping turn over the span
of those frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diarisation.doa import DOAFrames, unit
from minutes.types import Turn

__all__ = ["OverlapConfig", "add_overlaps", "merge_turns"]


@dataclass(frozen=True)
class OverlapConfig:
    enabled: bool = True
    tol_deg: float = 12.0  # a frame points at a speaker when this close to their track
    own_deg: float = 20.0  # ... and at least this far from the segment's own speaker
    min_frames: int = 3  # frames needed in a segment
    min_frac: float = 0.1  # of the segment's speech frames


def _track_vectors(tracks: dict[str, tuple[np.ndarray, np.ndarray]], t: np.ndarray) -> dict[str, np.ndarray]:
    """Each speaker's direction at times t (nearest track point; (T, 2) unit vectors)."""
    out = {}
    for spk, (times, az) in tracks.items():
        if len(times) == 0:
            continue
        order = np.argsort(times)
        times, az = times[order], az[order]
        k = np.clip(np.searchsorted(times, t), 0, len(times) - 1)
        k0 = np.clip(k - 1, 0, len(times) - 1)
        k = np.where(np.abs(times[k0] - t) < np.abs(times[k] - t), k0, k)
        out[spk] = unit(az[k])
    return out


def add_overlaps(segments: list[tuple[float, float, str]], frames: DOAFrames,
                 tracks: dict[str, tuple[np.ndarray, np.ndarray]], frame_len: float,
                 cfg: OverlapConfig) -> list[Turn]:
    """segments: (start, end, speaker) of the clustering -> extra overlapping turns."""
    if not cfg.enabled or len(tracks) < 2 or len(frames) == 0:
        return []
    sp = frames.speech
    t, v = frames.times[sp], frames.vectors[sp]
    dirs = _track_vectors(tracks, t)
    names = list(dirs)
    cos = np.stack([(v * dirs[n]).sum(axis=1) for n in names], axis=1)  # (T, K)
    nearest = np.argmax(cos, axis=1)
    near_ok = cos[np.arange(len(t)), nearest] > np.cos(np.deg2rad(cfg.tol_deg))
    extra: list[Turn] = []
    own_cos = np.cos(np.deg2rad(cfg.own_deg))
    for a, b, spk in segments:
        m = (t >= a) & (t < b)
        n = int(m.sum())
        if n == 0 or spk not in dirs:
            continue
        own = cos[:, names.index(spk)]
        for j, other in enumerate(names):
            if other == spk:
                continue
            hit = m & near_ok & (nearest == j) & (own < own_cos)
            k = int(hit.sum())
            if k >= cfg.min_frames and k >= cfg.min_frac * n:
                th = t[hit]
                extra.append(Turn(other, max(a, th[0] - frame_len / 2), min(b, th[-1] + frame_len / 2)))
    return extra


def merge_turns(turns: list[Turn], gap: float = 0.05) -> list[Turn]:
    """Per speaker, join turns that overlap or nearly touch; sorted by start."""
    out: list[Turn] = []
    for spk in sorted({x.speaker for x in turns}):
        mine = sorted((x for x in turns if x.speaker == spk), key=lambda x: x.start)
        cur = mine[0]
        for x in mine[1:]:
            if x.start - cur.end <= gap:
                cur = Turn(spk, cur.start, max(cur.end, x.end), cur.azimuth if cur.azimuth is not None else x.azimuth)
            else:
                out.append(cur)
                cur = x
        out.append(cur)
    return sorted(out, key=lambda x: (x.start, x.speaker))
