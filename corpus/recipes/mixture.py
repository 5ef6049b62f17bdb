"""The `mixture` recipe: two-talker overlapped utterances, LibriSpeechMix-style.

Two utterances (TTS pseudo-speakers of different persons, or real speechocean762 train
speakers) are placed in one room at directions at least 20 degrees apart; the first starts at
0, the second after a delay chosen so that overlap / (union of both talkers' speech) equals a
requested ratio drawn per mixture. When the request cannot be met (a short utterance inside a
long one caps the ratio at short/long), the delay is clipped and the ratio actually made is
recorded beside the request. References: per talker text, speaker, start, end, azimuth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from corpus import rooms, tts
from corpus.build import BuildStats, run_shards
from corpus.manifest import Record
from corpus.readers import Utterance
from corpus.recipes.meeting import _PRA_DELAY, _person
from corpus.recipes.single import Shard, _text, _voices, real_train_utterances, split_into_shards
from minutes import arrays

SR = 16000


@dataclass(frozen=True)
class MixtureConfig:
    out: Path
    hours: float = 1.0
    seed: int = 0
    test_mixtures: int = 100  # held-out voices and texts, made first
    overlap: tuple[float, float] = (0.1, 0.9)  # requested overlap ratio range
    p_real: float = 0.2  # chance that each talker is real speech
    array: str = "circular-7"
    all_channels: bool = False
    max_order: int = 10
    shard_size: int = 16
    workers: int = 2
    progress: bool = True
    resume: bool = False  # carry on an interrupted build of the same plan
    corpus_dir: Path | None = None
    n_dev: int = 10


@dataclass(frozen=True)
class Talker:
    speaker: str
    source: str
    text: str
    voice: tts.Voice | None = None
    real_audio: str | None = None


@dataclass(frozen=True)
class MixPlan:
    id: str
    split: str
    seed: int
    talkers: tuple[Talker, Talker]
    overlap: float  # requested ratio
    room: rooms.RoomSpec
    positions: tuple[tuple[float, float, float], tuple[float, float, float]]  # absolute
    gain_db: float  # level of the second talker relative to the first


def overlap_delay(d1: float, d2: float, ratio: float) -> tuple[float, float]:
    """Delay of the second talker (s) for overlap/union = `ratio`, and the ratio it gives.
    Partial overlap: ratio = (d1 - tau) / (tau + d2), so tau = (d1 - ratio * d2) / (1 + ratio),
    valid while tau >= max(0, d1 - d2); beyond that the shorter one is inside the longer."""
    tau = (d1 - ratio * d2) / (1 + ratio)
    tau = max(tau, 0.0, d1 - d2)
    overlap = max(0.0, min(d1, tau + d2) - tau)
    union = max(d1, tau + d2)
    return tau, overlap / union


def _talker(rng: random.Random, pool, split: str, voices, weights, real: list[Utterance], cfg: MixtureConfig) -> Talker:
    if split == "train" and real and rng.random() < cfg.p_real:
        u = rng.choice(real)
        return Talker(u.speaker, "speechocean762", u.text, real_audio=u.audio)
    v = rng.choices(voices, weights)[0]
    return Talker(v.speaker, v.source, _text(pool, rng, split, v.rate)[1], voice=v)


def _positions(nrng: np.random.Generator, room: rooms.RoomSpec) -> tuple[tuple, tuple]:
    c = np.asarray(room.array_center)
    a = rooms.sample_source(nrng, room)
    for _ in range(50):
        b = rooms.sample_source(nrng, room)
        d = abs(arrays.azimuth_deg(a - c) - arrays.azimuth_deg(b - c)) % 360
        if min(d, 360 - d) >= 20:
            break
    return tuple(np.round(a, 3).tolist()), tuple(np.round(b, 3).tolist())


def plan(cfg: MixtureConfig, real: list[Utterance]) -> list[Shard]:
    from corpus.sentences import load_pool

    pool = load_pool()
    rng = random.Random(cfg.seed)
    nrng = np.random.default_rng(cfg.seed)
    items: list[MixPlan] = []
    budget, i = cfg.hours * 3600, 0
    while len(items) < cfg.test_mixtures or budget > 0:
        split = "test" if len(items) < cfg.test_mixtures else "train"
        voices, weights = _voices(split == "test")
        a = _talker(rng, pool, split, voices, weights, real, cfg)
        b = a
        while _person_of(b) == _person_of(a):
            b = _talker(rng, pool, split, voices, weights, real, cfg)
        room = rooms.sample_room(nrng, max_order=cfg.max_order)
        items.append(MixPlan(f"{split}-mix-{i:06d}", split, rng.getrandbits(32), (a, b),
                             round(rng.uniform(*cfg.overlap), 3), room, _positions(nrng, room), round(rng.uniform(-3, 3), 2)))
        if split == "train":
            budget -= max(len(a.text.split()), len(b.text.split())) / 3.1 * 1.5
        i += 1
    return split_into_shards(items, cfg.shard_size, cfg.out, cfg.array, cfg.all_channels)


def _person_of(t: Talker) -> str:
    return _person(t.voice) if t.voice is not None else t.speaker


def _render(p: MixPlan, dry: tuple[np.ndarray, np.ndarray], shard: Shard) -> Record:
    nrng = np.random.default_rng(p.seed)
    d1, d2 = len(dry[0]) / SR, len(dry[1]) / SR
    tau, ratio = overlap_delay(d1, d2, p.overlap)
    geom = arrays.geometry(shard.array)
    keep = list(range(len(geom))) if shard.all_channels else [arrays.reference_mic(shard.array)]
    mics = geom[keep] + np.asarray(p.room.array_center)
    starts = (0.0, tau)
    n = int((max(d1, tau + d2) + 0.3) * SR)
    y = np.zeros((n, len(keep)), np.float32)
    gains = (1.0, 10 ** (p.gain_db / 20))
    for x, pos, s, g in zip(dry, p.positions, starts, gains):
        wet = rooms.convolve(x, rooms.room_rirs(p.room, mics, np.asarray(pos), nrng))[_PRA_DELAY:]
        i0 = int(round(s * SR))
        k = min(len(wet), n - i0)
        y[i0 : i0 + k] += g * wet[:k]
    ref = keep.index(arrays.reference_mic(shard.array))
    y = rooms.add_noise(y, rooms.diffuse_noise(nrng, n, geom[keep], p.room.noise_tilt), p.room.snr_db, ref=ref)
    y = y * (nrng.uniform(0.3, 0.9) / max(1e-6, float(np.abs(y).max())))
    rel = f"audio/{p.split}/{shard.index:05d}/{p.id}.flac"
    (shard.out / rel).parent.mkdir(parents=True, exist_ok=True)
    sf.write(shard.out / rel, y, SR, format="FLAC", subtype="PCM_16")
    c = np.asarray(p.room.array_center)
    refs = [
        {"speaker": t.speaker, "source": t.source, "text": t.text, "start": round(s, 4), "end": round(s + len(x) / SR, 4),
         "azimuth": round(float(arrays.azimuth_deg(np.asarray(pos) - c)), 2)}
        for t, x, pos, s in zip(p.talkers, dry, p.positions, starts)
    ]
    return Record(
        id=p.id, audio=rel, sample_rate=SR, channels=len(keep), duration=round(n / SR, 4),
        text=" ".join(r["text"] for r in sorted(refs, key=lambda r: r["start"])), speaker="multiple",
        source="mixture", split=p.split, room=p.room.to_dict(), array=shard.array, geometry=geom.round(5).tolist(),
        positions=[np.round(np.asarray(pos) - c, 3).tolist() for pos in p.positions],
        extra={"refs": refs, "overlap_ratio": round(ratio, 4), "requested_overlap": p.overlap,
               "gain_db": p.gain_db, "channels_kept": keep},
    )


def render_shard(shard: Shard) -> list[Record]:
    flat = [t for p in shard.items for t in p.talkers]
    tts_idx = [k for k, t in enumerate(flat) if t.voice is not None]
    audio: dict[int, np.ndarray] = dict(zip(tts_idx, tts.synthesize_many([(flat[k].voice, flat[k].text) for k in tts_idx])))
    for k, t in enumerate(flat):
        if t.real_audio is not None:
            x, sr = sf.read(t.real_audio, dtype="float32", always_2d=True)
            audio[k] = tts.trim_silence(tts.resample(x[:, 0], sr), floor_db=-35.0)
    out = []
    for j, p in enumerate(shard.items):
        pair = (audio[2 * j], audio[2 * j + 1])
        if min(len(pair[0]), len(pair[1])) > SR // 4:
            out.append(_render(p, pair, shard))
    return out


def build_mixture(cfg: MixtureConfig) -> BuildStats:
    real = real_train_utterances(cfg.corpus_dir, cfg.n_dev) if cfg.p_real > 0 else []
    return run_shards(render_shard, plan(cfg, real), cfg.out, cfg.workers, cfg.progress, desc="mixture", resume=cfg.resume)
