"""Overlapped speech from direction: a second talker, found by the DOA frames' two peaks.

A single-label diariser misses every second of overlap (10 % of speech in the corpus'
meetings, and most of the offline diariser's remaining error). Two cues point at the second
talker during overlap, frame by frame (128 ms):

- the strongest direction flips between the talkers (speech is sparse in time-frequency, so
  in one frame one talker or the other dominates the band);
- the spatial spectrum's second peak sits on the other talker while the first sits on the
  segment's own speaker (on the benchmark's train meetings: ~30 % of overlap frames against
  ~3 % of single-talker frames per other speaker when its height is ≥ half the first's).

After clustering every speaker has a location track. A frame *hits* speaker B when either peak
(the second only when high enough) is within `tol_deg` of B's track, nearer to B than to any
other track, and B is not the frame's own speaker nor within `own_deg` of them (two talkers
that close cannot be told apart by direction). One hit is noise; `min_hits` hits of B within a
`window` is B talking over the own speaker, over the span from that run's first to last hit.
The same functions serve the offline pipeline (tracks from the clustering) and the online
filter (tracks from the best particle).

Most overlap sits at a change of speaker (in the corpus' meetings 80 % of the overlaps are
the next talker starting before the last one ends; median 0.8 s), and there one hit means far
more than in the middle of a turn. So at every change A -> B the turn of A is carried
on into B's while hits of A keep coming no more than `change_gap` apart (from the change on,
at most `change_max`), and B's turn is started back into A's the same way (`change_spans`;
the online filter does it at a step whose speaker differs from the last step's). On the
benchmark's 24 train meetings: kalman_ahc DER 10.9 % -> 9.9 %, particle_online 15.6 -> 15.0 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diarisation.doa import DOAFrames, unit
from minutes.types import Turn

__all__ = ["OverlapConfig", "frame_hits", "hit_spans", "change_spans", "add_overlaps", "merge_turns"]


@dataclass(frozen=True)
class OverlapConfig:
    enabled: bool = True
    # Defaults: the best of a grid on the benchmark's 24 train meetings (kalman_ahc: DER 13.7 %
    # without the step, 11.9 % with the first peak only, 11.5 % with both).
    tol_deg: float = 10.0  # a peak points at a speaker when this close to their track
    own_deg: float = 25.0  # speakers this close to the own speaker are not told apart
    use_second: bool = True  # count the spatial spectrum's second peak as well as the first
    min_ratio2: float = 0.7  # ... when its height is at least this share of the first's
    window: float = 0.8  # s: hits are counted in a sliding window this long
    min_hits: int = 4  # hits of one speaker inside the window that make them a second talker
    # At a change of speaker: a talker's turn carries on over the other's while its
    # hits are at most change_gap s apart, for at most change_max s (0 = off). Train-tuned.
    change_gap: float = 0.5
    change_max: float = 2.0


def frame_hits(v1: np.ndarray, v2: np.ndarray, ratio2: np.ndarray, dirs: np.ndarray,
               own: np.ndarray, cfg: OverlapConfig) -> np.ndarray:
    """Which other speakers each frame points at.

    v1, v2: (T, 2) first/second peak unit vectors (v2 rows of zeros: no second peak);
    ratio2: (T,); dirs: (T, K, 2) or (K, 2) speaker directions; own: (T,) the frame's own
    speaker index (-1: none, then no hits). -> (T, K) bool."""
    T = len(v1)
    if T == 0:
        return np.zeros((0, dirs.shape[-2]), bool)
    if dirs.ndim == 2:
        dirs = np.broadcast_to(dirs, (T, *dirs.shape))
    K = dirs.shape[1]
    tol = np.cos(np.deg2rad(cfg.tol_deg))
    cols = np.arange(K)[None, :]

    def near(v: np.ndarray) -> np.ndarray:
        cos = np.einsum("td,tkd->tk", v, dirs)
        return (cos > tol) & (cols == np.argmax(cos, axis=1)[:, None])

    hit = near(v1)
    if cfg.use_second:
        hit |= near(v2) & (ratio2 >= cfg.min_ratio2)[:, None]
    has_own = own >= 0
    own_dir = dirs[np.arange(T), np.maximum(own, 0)]  # (T, 2)
    apart = np.einsum("td,tkd->tk", own_dir, dirs) < np.cos(np.deg2rad(cfg.own_deg))
    return hit & apart & (cols != own[:, None]) & has_own[:, None]


def hit_spans(times: np.ndarray, hits: np.ndarray, frame_len: float,
              cfg: OverlapConfig) -> list[tuple[int, float, float]]:
    """(T,) frame times (sorted), (T, K) hits -> [(speaker index, start, end)]: runs of frames
    whose `window` holds ≥ min_hits hits of that speaker, trimmed to the run's first and last hit."""
    out: list[tuple[int, float, float]] = []
    if len(times) == 0:
        return out
    lo = np.searchsorted(times, times - cfg.window / 2, side="left")
    hi = np.searchsorted(times, times + cfg.window / 2, side="right")
    for k in range(hits.shape[1]):
        h = hits[:, k]
        if h.sum() < cfg.min_hits:
            continue
        cs = np.concatenate([[0], np.cumsum(h)])
        active = (cs[hi] - cs[lo]) >= cfg.min_hits
        idx = np.flatnonzero(active)
        # Runs of active frames (a gap in time longer than the window also ends a run).
        breaks = np.flatnonzero((np.diff(idx) > 1) | (np.diff(times[idx]) > cfg.window)) + 1
        for run in np.split(idx, breaks):
            th = times[run[h[run]]]
            if len(th):
                out.append((k, float(th[0] - frame_len / 2), float(th[-1] + frame_len / 2)))
    return out


def _runs(segments: list[tuple[float, float, str]], gap: float = 0.05) -> list[tuple[float, float, str]]:
    """Sorted (start, end, speaker) segments -> turns: runs of one speaker's touching segments."""
    out: list[list] = []
    for a, b, spk in segments:
        if out and out[-1][2] == spk and a - out[-1][1] <= gap:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b, spk])
    return [tuple(x) for x in out]


def change_spans(turns: list[tuple[float, float, str]], times: np.ndarray, hits: np.ndarray,
                 names: list[str], frame_len: float, cfg: OverlapConfig) -> list[Turn]:
    """Overlap at changes of speaker. turns: sorted single-talker (start, end, speaker);
    times (T,) sorted frame times with hits (T, K) over `names`. At each change A -> B (the
    turns touch: < 0.1 s apart) at time c: A's turn is carried on from c while A's hits follow
    each other (and c) at most change_gap apart, up to min(c + change_max, B's end); likewise
    B's turn started back from c into A's."""
    out: list[Turn] = []
    if cfg.change_gap <= 0 or len(times) == 0:
        return out
    for (a0, a1, sa), (b0, b1, sb) in zip(turns[:-1], turns[1:]):
        if sa == sb or b0 - a1 >= 0.1 or sa not in names or sb not in names:
            continue
        ka, kb = names.index(sa), names.index(sb)
        fwd = np.flatnonzero((times >= b0) & (times < min(b1, b0 + cfg.change_max)))
        back = np.flatnonzero((times < b0) & (times > max(a0, b0 - cfg.change_max)))[::-1]
        for idx, k, spk, sign in ((fwd, ka, sa, 1.0), (back, kb, sb, -1.0)):
            last, prev = None, b0
            for i in idx:
                if sign * (times[i] - prev) > cfg.change_gap:
                    break
                if hits[i, k]:
                    last = prev = float(times[i])
            if last is None:
                continue
            if sign > 0:
                out.append(Turn(spk, b0, min(b1, last + frame_len / 2)))
            else:
                out.append(Turn(spk, max(a0, last - frame_len / 2), b0))
    return out


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
    """segments: (start, end, speaker) of the clustering -> extra overlapping turns (clipped to
    the segments of other speakers, so an overlap never extends speech past what the gate heard)."""
    if not cfg.enabled or len(tracks) < 2 or len(frames) == 0 or not segments:
        return []
    dirs = _track_vectors(tracks, frames.times)
    names = list(dirs)
    segs = sorted(segments)
    starts = np.array([a for a, _, _ in segs])
    k = np.searchsorted(starts, frames.times, side="right") - 1
    inside = (k >= 0) & (frames.times < np.array([b for _, b, _ in segs])[np.maximum(k, 0)])
    own = np.array([names.index(segs[j][2]) if segs[j][2] in names else -1 for j in range(len(segs))])[np.maximum(k, 0)]
    own = np.where(inside & frames.speech, own, -1)
    sel = own >= 0
    if not sel.any():
        return []
    D = np.stack([dirs[n] for n in names], axis=1)[sel]  # (T', K, 2)
    hits = frame_hits(frames.vectors[sel], frames.vectors2[sel],
                      frames.ratio2[sel] if len(frames.ratio2) == len(frames.times) else np.zeros(sel.sum()),
                      D, own[sel], cfg)
    extra: list[Turn] = []
    for j, a, b in hit_spans(frames.times[sel], hits, frame_len, cfg):
        for s0, s1, spk in segs:  # clip to the speech segments of other speakers
            if spk != names[j] and s1 > a and s0 < b:
                extra.append(Turn(names[j], max(a, s0), min(b, s1)))
    return extra + change_spans(_runs(segs), frames.times[sel], hits, names, frame_len, cfg)


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
