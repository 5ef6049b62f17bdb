"""Rooms: pyroomacoustics shoeboxes, late-reverberation tails, diffuse noise, moving sources.

Image-source RIRs are cheap in pyroomacoustics' C core (order 17, 7 mics: ~12 ms) but a
capped order truncates the reverberation: at RT60 0.6 s, order 17 measures only ~0.3 s. Rather
than pay for full order or ray tracing per utterance, `room_rirs` keeps the exact early part
(order <= `max_order`) and replaces what follows the mixing time with an exponentially decaying
noise tail whose level is fitted to the early energy and whose decay is the requested RT60 (the
usual "ISM early + stochastic late" hybrid). `measure_rt60` on the result lands near the target.

Moving talkers are rendered segment-wise: the dry signal is cut by triangular windows that sum
to one (50 % overlap), each piece is convolved with the RIR at the talker's position at that
moment, and the pieces overlap-add, so the direction changes smoothly without clicks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import pyroomacoustics as pra
from scipy.signal import fftconvolve, istft, lfilter

__all__ = [
    "RoomSpec", "sample_room", "sample_source", "room_rirs", "convolve", "render_moving",
    "diffuse_noise", "add_noise", "SPEED_OF_SOUND",
]

SPEED_OF_SOUND = 343.0
SR = 16000


@dataclass(frozen=True)
class RoomSpec:
    """One simulated room with the array placed in it (all lengths in metres)."""

    dims: tuple[float, float, float]
    rt60: float  # seconds, the target reverberation time
    max_order: int  # image-source order of the exact early part
    array_center: tuple[float, float, float]  # absolute position of the array's centre
    snr_db: float  # speech-to-diffuse-noise ratio at the reference mic
    noise_tilt: float  # noise spectrum ~ f^(-tilt): 0 white, 1 pink, 2 brown

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def sample_room(
    rng: np.random.Generator,
    rt60: tuple[float, float] = (0.15, 0.6),
    snr_db: tuple[float, float] = (5.0, 30.0),
    max_order: int = 12,
) -> RoomSpec:
    """A random meeting-room-sized shoebox with the array on a table away from the walls."""
    dims = (float(rng.uniform(3.5, 9.0)), float(rng.uniform(3.0, 7.0)), float(rng.uniform(2.5, 3.5)))
    center = tuple(
        float(rng.uniform(min(1.0, d / 2 - 0.1), max(d - 1.0, d / 2 + 0.1))) for d in dims[:2]
    ) + (float(rng.uniform(0.72, 1.0)),)
    return RoomSpec(
        dims=tuple(round(d, 3) for d in dims),  # type: ignore[arg-type]
        rt60=round(float(rng.uniform(*rt60)), 3),
        max_order=max_order,
        array_center=tuple(round(c, 3) for c in center),  # type: ignore[arg-type]
        snr_db=round(float(rng.uniform(*snr_db)), 2),
        noise_tilt=round(float(rng.uniform(0.0, 2.0)), 2),
    )


def sample_source(
    rng: np.random.Generator, room: RoomSpec, dist: tuple[float, float] = (0.7, 3.0), margin: float = 0.4
) -> np.ndarray:
    """A talker's mouth position (absolute): at a random azimuth and distance from the array,
    seated or standing height, at least `margin` from every wall (retries, then clips)."""
    c = np.asarray(room.array_center)
    dims = np.asarray(room.dims)
    for _ in range(100):
        az = rng.uniform(0, 2 * np.pi)
        r = rng.uniform(*dist)
        p = np.array([c[0] + r * np.cos(az), c[1] + r * np.sin(az), rng.uniform(1.1, 1.75)])
        if np.all(p[:2] > margin) and np.all(p[:2] < dims[:2] - margin):
            return p
    return np.clip(p, margin, dims - margin)


def _late_tail(h: np.ndarray, room: RoomSpec, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Replace the part of `h` after the mixing time by a fitted exponential noise tail."""
    t_d = int(np.argmax(np.abs(h)))
    t_c = t_d + int(0.8 * room.max_order * min(room.dims) / SPEED_OF_SOUND * sr)
    t_end = t_d + int(room.rt60 * sr)  # -60 dB
    if t_c >= t_end or t_c >= len(h):
        return h
    w0 = t_d + int(0.002 * sr)
    decay = np.exp(-13.8 * np.arange(len(h)) / (room.rt60 * sr))  # energy decay from t_d
    e0 = float(np.sum(h[w0:t_c] ** 2) / np.sum(decay[w0 - t_d : t_c - t_d]))
    n = t_end - t_d
    env = np.sqrt(e0 * np.exp(-13.8 * np.arange(n) / (room.rt60 * sr)))
    noise = lfilter([1.0], [1.0, -0.4], rng.standard_normal(n))  # late reverb is duller
    noise /= noise.std()
    tail = env * noise
    out = np.zeros(max(len(h), t_end))
    fade = min(int(0.01 * sr), len(h) - t_c)
    ramp = np.linspace(1.0, 0.0, fade)
    out[:t_c] = h[:t_c]
    out[t_c : t_c + fade] = h[t_c : t_c + fade] * ramp
    seg = np.arange(t_c - t_d, n)
    w = np.ones(len(seg))
    w[:fade] = 1.0 - ramp
    out[t_c:t_end] += tail[seg] * w
    return out


def room_rirs(
    room: RoomSpec, mics: np.ndarray, source: np.ndarray, rng: np.random.Generator, sr: int = SR
) -> np.ndarray:
    """(M, L) RIRs from `source` (absolute, metres) to `mics` ((M, 3) absolute): exact image
    sources up to `room.max_order`, stochastic late tail to the requested RT60."""
    e_abs, order_full = pra.inverse_sabine(room.rt60, list(room.dims))
    r = pra.ShoeBox(
        list(room.dims), fs=sr, materials=pra.Material(e_abs), max_order=min(room.max_order, order_full)
    )
    r.add_microphone_array(np.asarray(mics, dtype=float).T)
    r.add_source(np.asarray(source, dtype=float))
    r.compute_rir()
    hs = [_late_tail(np.asarray(r.rir[m][0], dtype=float), room, rng, sr) for m in range(len(mics))]
    L = max(len(h) for h in hs)
    out = np.zeros((len(mics), L), dtype=np.float32)
    for m, h in enumerate(hs):
        out[m, : len(h)] = h
    return out


def convolve(x: np.ndarray, rirs: np.ndarray) -> np.ndarray:
    """(N,) dry signal, (M, L) RIRs -> (N + L - 1, M) wet signal."""
    return np.stack([fftconvolve(x, h) for h in rirs], axis=1).astype(np.float32)


def render_moving(
    x: np.ndarray,
    room: RoomSpec,
    mics: np.ndarray,
    position_at: Callable[[float], np.ndarray],
    rng: np.random.Generator,
    seg_s: float = 0.25,
    sr: int = SR,
) -> np.ndarray:
    """Render a talker who moves while speaking: `position_at(t)` gives the absolute position
    t seconds into `x`. Pieces `seg_s` apart are cross-faded (triangular windows, sum = 1).
    Returns (N + L - 1, M)."""
    hop = max(1, int(seg_s * sr))
    n = len(x)
    pieces = []
    for k in range(int(np.ceil(n / hop)) + 1):
        c = k * hop
        lo, hi = max(0, c - hop), min(n, c + hop)
        if lo >= hi:
            continue
        t = np.arange(lo, hi)
        w = 1.0 - np.abs(t - c) / hop
        h = room_rirs(room, mics, position_at(c / sr), rng, sr)
        pieces.append((lo, convolve(x[lo:hi] * w, h)))
    out = np.zeros((max(lo + p.shape[0] for lo, p in pieces), len(mics)), np.float32)
    for lo, p in pieces:
        out[lo : lo + p.shape[0]] += p
    return out


def diffuse_noise(
    rng: np.random.Generator, n: int, geometry: np.ndarray, tilt: float = 1.0, sr: int = SR, block_s: float = 20.0
) -> np.ndarray:
    """(n, M) spherically diffuse noise for mics at `geometry` ((M, 3), metres): independent
    STFT-domain noise mixed per frequency by the Cholesky factor of the diffuse coherence
    sinc(2 f d / c), coloured as f^(-tilt/2) in amplitude. Generated in independent blocks that
    are cross-faded, so memory stays flat for hour-long meetings. Unit RMS per channel."""
    nfft = 512
    geometry = np.asarray(geometry, dtype=float)
    m = len(geometry)
    f = np.fft.rfftfreq(nfft, 1 / sr)
    d = np.linalg.norm(geometry[:, None, :] - geometry[None, :, :], axis=-1)
    gamma = np.sinc(2 * f[:, None, None] * d[None] / SPEED_OF_SOUND) + 1e-6 * np.eye(m)
    chol = np.linalg.cholesky(gamma)  # (F, M, M)
    colour = (np.maximum(f, 50.0) / 1000.0) ** (-tilt / 2)
    colour[0] = 0.0
    block = int(block_s * sr)
    xfade = nfft
    up = np.sin(np.linspace(0, np.pi / 2, xfade, dtype=np.float32))[:, None]  # equal power
    out = np.zeros((n + xfade, m), dtype=np.float32)
    for i, start in enumerate(range(0, n, block)):
        length = min(block, n - start) + xfade
        frames = length // (nfft // 2) + 2
        z = (rng.standard_normal((m, len(f), frames)) + 1j * rng.standard_normal((m, len(f), frames))).astype(np.complex64)
        z = np.einsum("fij,jft->ift", chol.astype(np.complex64), z) * colour[None, :, None]
        y = istft(z, fs=sr, nperseg=nfft)[1][:, :length].T.astype(np.float32)
        if i > 0:  # the previous block overhangs by `xfade`: cross-fade into it
            y[:xfade] *= up
            out[start : start + xfade] *= up[::-1]
        out[start : start + length] += y
    out = out[:n]
    rms = np.sqrt(np.mean(out**2, axis=0, keepdims=True)) + 1e-12
    return out / rms


def add_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float, ref: int = 0) -> np.ndarray:
    """Scale `noise` so the reference channel's speech-to-noise ratio over the active speech
    (frames within 30 dB of the loudest) is `snr_db`; return speech + noise, both (N, M)."""
    s = speech[:, ref]
    hop = SR // 100
    k = len(s) // hop
    e = (s[: k * hop].reshape(k, hop) ** 2).mean(axis=1) if k else np.array([np.mean(s**2)])
    p_speech = float(e[e > e.max() * 1e-3].mean()) if e.max() > 0 else 0.0
    p_noise = float(np.mean(noise[:, ref] ** 2)) + 1e-12
    g = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))
    return (speech + g * noise).astype(np.float32)
