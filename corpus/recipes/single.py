"""The `single` recipe: single-speaker utterances for recogniser training and testing.

Mix (train): TTS pseudo-speakers clean (~25 %) and through simulated rooms (~60 %), and real
speechocean762 train-split speech through rooms (~15 %; the clean real speech is already in
`speechocean762/train.jsonl`). The test split is made first, so it exists early: held-out TTS
identities (`tts.is_held_out`) reading held-out sentences (`sentences.is_test_text`), all
through rooms. Room audio stores the array's reference (centre) mic only, unless
`all_channels`, and the manifest records the array, geometry, room and talker position.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import soundfile as sf

from corpus import rooms, tts
from corpus.build import BuildStats, run_shards
from corpus.manifest import Record
from corpus.readers import Utterance, read_speechocean762, split_speakers
from minutes import arrays

SR = 16000
WORDS_PER_SECOND = 3.1  # flite/festival/espeak/piper at rate 1.0, measured on a 1.4 h build
MAX_WORDS = 40


def _text(pool, rng: random.Random, split: str, rate: float) -> tuple[str, str]:
    """A sentence, or several run together, aiming at a duration drawn from 2-12 s: the pool's
    sentences alone average ~3.5 s, shorter than the utterances a recogniser must handle."""
    target = rng.uniform(2.0, 12.0) * WORDS_PER_SECOND * rate
    src, text = pool.sample(rng, split)
    while len(text.split()) < 0.8 * target:
        more = pool.sample(rng, split)[1]
        if len(text.split()) + len(more.split()) > MAX_WORDS:
            break
        text = f"{text} {more}"
    return src, text


@dataclass(frozen=True)
class SingleConfig:
    out: Path
    hours: float = 10.0  # train hours to make
    seed: int = 0
    test_utts: int = 300
    array: str = "circular-7"
    all_channels: bool = False
    p_clean: float = 0.25  # share of TTS train items left clean (no room)
    p_real: float = 0.15  # share of train items that are real speech through a room
    shard_size: int = 32
    max_order: int = 10
    workers: int = 2
    progress: bool = True
    resume: bool = False  # carry on an interrupted build of the same plan
    corpus_dir: Path | None = None  # real speech (speechocean762 layout); None: the shared copy
    n_dev: int = 10


@dataclass(frozen=True)
class Item:
    """One planned utterance: what to say (or which real file), who, in which room, where."""

    id: str
    split: str
    text: str
    speaker: str
    source: str
    seed: int
    voice: tts.Voice | None = None
    real_audio: str | None = None
    room: rooms.RoomSpec | None = None
    position: tuple[float, float, float] | None = None  # absolute talker position
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Shard:
    """Planned items one worker renders together (`single`/`native`: `Item`s; `mixture`: `MixPlan`s),
    written under `out/audio/<split>/<index>/`."""

    index: int
    items: tuple[Any, ...]
    out: Path
    array: str
    all_channels: bool


def split_into_shards(items: Sequence[Any], size: int, out: Path, array: str, all_channels: bool) -> list[Shard]:
    """`items` in order, `size` to a shard (the last one may be shorter)."""
    return [Shard(k, tuple(items[s : s + size]), out, array, all_channels) for k, s in enumerate(range(0, len(items), size))]


def _voices(held_out: bool) -> tuple[list[tts.Voice], list[float]]:
    vs = [v for v in tts.identity_grid() if tts.is_held_out(v) == held_out]
    per_base: dict[tuple[str, str], int] = {}
    for v in vs:
        per_base[(v.engine, v.name)] = per_base.get((v.engine, v.name), 0) + 1
    return vs, [tts.VOICE_WEIGHTS[(v.engine, v.name)] / per_base[(v.engine, v.name)] for v in vs]


def _room_item(rng: random.Random, nrng: np.random.Generator, cfg: SingleConfig) -> tuple[rooms.RoomSpec, tuple]:
    room = rooms.sample_room(nrng, max_order=cfg.max_order)
    pos = rooms.sample_source(nrng, room)
    return room, tuple(round(float(p), 3) for p in pos)


def plan(cfg: SingleConfig, real: list[Utterance]) -> list[Shard]:
    """Every shard of the build, decided from the seed alone (no audio is made here)."""
    from corpus.sentences import load_pool

    pool = load_pool()
    rng = random.Random(cfg.seed)
    nrng = np.random.default_rng(cfg.seed)
    items: list[Item] = []
    test_voices, test_w = _voices(True)
    for i in range(cfg.test_utts):
        v = rng.choices(test_voices, test_w)[0]
        src, text = _text(pool, rng, "test", v.rate)
        room, pos = _room_item(rng, nrng, cfg)
        items.append(Item(f"test-{i:06d}", "test", text, v.speaker, v.source, rng.getrandbits(32), v, None, room, pos, {"text_source": src}))
    train_voices, train_w = _voices(False)
    budget = cfg.hours * 3600
    i = 0
    while budget > 0:
        if real and rng.random() < cfg.p_real:
            u = rng.choice(real)
            room, pos = _room_item(rng, nrng, cfg)
            items.append(Item(f"train-{i:07d}", "train", u.text, u.speaker, "speechocean762", rng.getrandbits(32),
                              None, u.audio, room, pos, {"real_id": u.id}))
            budget -= u.duration + 0.3
        else:
            v = rng.choices(train_voices, train_w)[0]
            src, text = _text(pool, rng, "train", v.rate)
            room, pos = (None, None) if rng.random() < cfg.p_clean else _room_item(rng, nrng, cfg)
            items.append(Item(f"train-{i:07d}", "train", text, v.speaker, v.source, rng.getrandbits(32), v, None, room, pos, {"text_source": src}))
            budget -= len(text.split()) / WORDS_PER_SECOND / v.rate + 0.3
        i += 1
    return split_into_shards(items, cfg.shard_size, cfg.out, cfg.array, cfg.all_channels)


def _render_item(item: Item, dry: np.ndarray, shard: Shard) -> Record:
    rng = np.random.default_rng(item.seed)
    rel = f"audio/{item.split}/{shard.index:05d}/{item.id}.flac"
    base = dict(id=item.id, audio=rel, sample_rate=SR, duration=0.0, text=item.text,
                speaker=item.speaker, source=item.source, split=item.split, extra=dict(item.extra))
    if item.room is None:
        y = dry[:, None]
    else:
        geom = arrays.geometry(shard.array)
        mics = geom + np.asarray(item.room.array_center)
        if not shard.all_channels:
            ref = arrays.reference_mic(shard.array)
            mics, geom_keep = mics[ref : ref + 1], [ref]
        else:
            geom_keep = list(range(len(geom)))
        h = rooms.room_rirs(item.room, mics, np.asarray(item.position), rng)
        wet = rooms.convolve(dry, h)[: len(dry) + int(0.3 * SR)]
        noise = rooms.diffuse_noise(rng, len(wet), geom[geom_keep], item.room.noise_tilt)
        y = rooms.add_noise(wet, noise, item.room.snr_db, ref=0 if not shard.all_channels else arrays.reference_mic(shard.array))
        rel_pos = np.asarray(item.position) - np.asarray(item.room.array_center)
        base.update(room=item.room.to_dict(), array=shard.array, geometry=geom.round(5).tolist(),
                    positions=[rel_pos.round(3).tolist()], azimuth=round(float(arrays.azimuth_deg(rel_pos)), 2))
        base["extra"]["channels_kept"] = geom_keep
    y = y * (rng.uniform(0.25, 0.9) / max(1e-6, float(np.abs(y).max())))  # level variety, no clipping
    path = shard.out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y.astype(np.float32), SR, format="FLAC", subtype="PCM_16")
    base.update(channels=y.shape[1], duration=round(len(y) / SR, 4))
    if item.voice is not None:
        base["extra"].update(rate=item.voice.rate, pitch_cents=item.voice.pitch_cents)
    return Record(**base)


def render_shard(shard: Shard) -> list[Record]:
    """Worker: synthesize/read every item's dry speech, then room, noise, write FLAC."""
    tts_idx = [k for k, it in enumerate(shard.items) if it.voice is not None]
    synth = tts.synthesize_many([(shard.items[k].voice, shard.items[k].text) for k in tts_idx])
    dry: dict[int, np.ndarray] = dict(zip(tts_idx, synth))
    for k, it in enumerate(shard.items):
        if it.real_audio is not None:
            x, sr = sf.read(it.real_audio, dtype="float32", always_2d=True)
            dry[k] = tts.resample(x[:, 0], sr)
    return [_render_item(it, dry[k], shard) for k, it in enumerate(shard.items) if len(dry[k]) > SR // 4]


def real_train_utterances(corpus_dir: Path | None, n_dev: int) -> list[Utterance]:
    """Real utterances of the training speakers only (dev speakers are never rendered), with
    speaker ids prefixed as in the real manifests."""
    utts = read_speechocean762(corpus_dir)
    train_spk, _ = split_speakers(utts, n_dev)
    return [
        Utterance(u.id, u.audio, u.text, f"speechocean762:{u.speaker}", u.duration, u.sample_rate)
        for u in utts if u.speaker in train_spk
    ]


def build_single(cfg: SingleConfig) -> BuildStats:
    real = real_train_utterances(cfg.corpus_dir, cfg.n_dev) if cfg.p_real > 0 else []
    return run_shards(render_shard, plan(cfg, real), cfg.out, cfg.workers, cfg.progress, desc="single", resume=cfg.resume)


def plan_digest(shards: list[Shard]) -> str:
    """A short fingerprint of a plan (tests use it to check seeds are honoured)."""
    h = hashlib.sha1()
    for s in shards:
        for it in s.items:
            h.update(f"{it.id}|{it.text}|{it.speaker}|{it.room}|{it.position}".encode())
    return h.hexdigest()[:16]
