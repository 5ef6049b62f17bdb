"""Tiny rendered scenes for the diariser's tests and self-checks (the corpus package builds the
real simulated meetings; tests cannot depend on /work/data, so they render their own).

A scene is a list of `Utterance`s placed in a shoebox room around an array at given azimuths;
a talker may move (linear azimuth sweep), rendered as short pieces each placed where the
talker is at that moment. Output: (N, M) audio, reference `Turn`s, and per-utterance
trajectories for tracking error. Array geometries come from `minutes.arrays.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyroomacoustics as pra
import soundfile as sf

from minutes.types import Turn

__all__ = ["Utterance", "Scene", "render", "speechocean_dir", "load_speaker_audio", "active_spans"]


def speechocean_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "speechocean762-train"


def load_speaker_audio(speaker: str, n: int, folder: Path | None = None) -> list[np.ndarray]:
    """First `n` utterances of a speechocean762 speaker (e.g. "0001"), float32 16 kHz."""
    folder = (folder or speechocean_dir()) / "audio" / f"SPEAKER{speaker}"
    return [sf.read(p, dtype="float32")[0] for p in sorted(folder.glob("*.flac"))[:n]]


def active_spans(x: np.ndarray, sample_rate: int, floor_db: float = -35.0, min_gap: float = 0.3) -> list[tuple[float, float]]:
    """Where a clean source is actually speaking (read speech has long pauses inside an
    utterance; a reference that calls them speech would charge every diariser for them)."""
    hop = sample_rate // 100
    n = len(x) // hop
    if n == 0:
        return []
    e = 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    on = e > e.max() + floor_db
    spans: list[list[float]] = []
    for k in np.flatnonzero(on):
        t = k * hop / sample_rate
        if spans and t - spans[-1][1] < min_gap:
            spans[-1][1] = t + hop / sample_rate
        else:
            spans.append([t, t + hop / sample_rate])
    return [(a, b) for a, b in spans]


@dataclass(frozen=True)
class Utterance:
    speaker: str
    audio: np.ndarray  # mono float32 at the scene rate
    start: float  # seconds
    azimuth: float  # degrees at the start
    azimuth_end: float | None = None  # degrees at the end (None: static)
    distance: float = 1.5  # metres from the array centre, horizontal


@dataclass
class Scene:
    audio: np.ndarray  # (N, M)
    turns: list[Turn]
    trajectories: list[tuple[str, np.ndarray, np.ndarray]]  # (speaker, times, azimuths)
    geometry: np.ndarray
    sample_rate: int


def render(utterances: list[Utterance], geometry: np.ndarray, sample_rate: int = 16000,
           room: tuple[float, float, float] = (6.0, 5.0, 3.0), rt60: float = 0.3,
           snr_db: float = 25.0, piece: float = 0.25, seed: int = 0) -> Scene:
    """Render the utterances (speech trimmed of silence by the caller) through one room."""
    rng = np.random.default_rng(seed)
    dims = np.array(room)
    centre = np.array([dims[0] / 2, dims[1] / 2, 1.0])
    absorption, order = pra.inverse_sabine(rt60, dims)
    pra_room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=min(order, 10))
    turns, trajs = [], []
    for u in utterances:
        dur = len(u.audio) / sample_rate
        end_az = u.azimuth if u.azimuth_end is None else u.azimuth_end
        n_pieces = 1 if u.azimuth_end is None else max(1, int(np.ceil(dur / piece)))
        step = int(np.ceil(len(u.audio) / n_pieces))
        for k in range(n_pieces):
            seg = u.audio[k * step : (k + 1) * step]
            frac = (k + 0.5) / n_pieces
            az = np.deg2rad(u.azimuth + frac * (end_az - u.azimuth))
            pos = centre + [u.distance * np.cos(az), u.distance * np.sin(az), 0.3]
            pra_room.add_source(pos, signal=seg, delay=u.start + k * step / sample_rate)
        for a, b in active_spans(u.audio, sample_rate):
            turns.append(Turn(u.speaker, u.start + a, u.start + b, float(np.mod(u.azimuth, 360))))
        t = np.linspace(u.start, u.start + dur, 20)
        trajs.append((u.speaker, t, np.mod(u.azimuth + (t - u.start) / dur * (end_az - u.azimuth), 360)))
    pra_room.add_microphone_array(pra.MicrophoneArray((centre + geometry).T, sample_rate))
    pra_room.simulate()
    audio = pra_room.mic_array.signals.T.astype(np.float32)
    total = int(max(t.end for t in turns) * sample_rate) + sample_rate // 2
    audio = audio[:total]
    if len(audio) < total:
        audio = np.pad(audio, ((0, total - len(audio)), (0, 0)))
    speech_power = np.mean(audio[np.abs(audio).max(axis=1) > 1e-4] ** 2)
    audio += rng.standard_normal(audio.shape).astype(np.float32) * np.sqrt(speech_power * 10 ** (-snr_db / 10))
    audio /= np.abs(audio).max() + 1e-9
    return Scene(audio * 0.5, turns, trajs, geometry, sample_rate)
