"""The `meeting` recipe: simulated meetings for diarisation and meeting transcription.

Each meeting: 3-6 TTS talkers of distinct base voices (train meetings use training identities
and texts, test meetings held-out ones), seated round a microphone array in a random shoebox
room; some stand up and walk arcs round the table while talking. Turns follow one another with
pauses or overlap, the overlap controlled to a target ratio drawn from 5-20 %; short
backchannels ("yeah", "right") overlap long turns. With `p_real_speaker`, up to two seats are
real speechocean762 speakers reading their own prompts (dev speakers only in test meetings),
so a diariser meets real voices too. Outputs per meeting:

- `audio/<id>.flac`: all array channels, 16 kHz, with diffuse noise at the room's SNR;
- `rttm/<id>.rttm`: speaker turns from word-aligned speech (sentences of one turn merged when
  less than 0.5 s apart);
- `words/<id>.json`: every word with speaker, start, end and the talker's azimuth at its middle,
  and the alignment method (pocketsphinx forced alignment; proportional fallback);
- `trajectories/<id>.json`: every talker's azimuth and position every 0.1 s, and whether moving.

Meeting times are those of the dry signal; the rendered audio lags by the propagation delay
only (2-9 ms at 0.7-3 m): pyroomacoustics' fractional-delay offset is removed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyroomacoustics as pra
import soundfile as sf

from corpus import rooms, tts
from corpus.align import align_words
from corpus.build import BuildStats, run_shards
from corpus.manifest import Record
from corpus.trajectory import Trajectory, Waypoint
from minutes import arrays
from minutes.transcript import to_rttm
from minutes.types import Turn as SpeakerTurn

SR = 16000
BACKCHANNELS = ("YEAH", "RIGHT", "OKAY", "I SEE", "EXACTLY", "SURE", "MM HMM", "YES", "GOOD POINT", "ABSOLUTELY")
_PRA_DELAY = pra.constants.get("frac_delay_length") // 2


@dataclass(frozen=True)
class MeetingConfig:
    out: Path
    count: int = 24
    min_minutes: float = 2.0
    max_minutes: float = 10.0
    min_speakers: int = 3
    max_speakers: int = 6
    overlap: tuple[float, float] = (0.05, 0.20)  # target overlap ratio range
    p_moving: float = 0.35  # chance that a talker walks at some point
    test_fraction: float = 0.34  # last meetings use held-out voices and texts
    array: str = "circular-7"
    seed: int = 0
    max_order: int = 12
    snr_db: tuple[float, float] = (5.0, 30.0)  # diffuse noise, at the reference mic
    rt60: tuple[float, float] = (0.15, 0.6)
    workers: int = 2
    progress: bool = True
    resume: bool = False  # carry on an interrupted build of the same plan
    # Chance that a seat is a real speechocean762 speaker (at most 2 a meeting): train meetings
    # draw from the training speakers, test meetings from the held-out dev speakers.
    p_real_speaker: float = 0.0
    corpus_dir: Path | None = None
    n_dev: int = 10


@dataclass(frozen=True)
class RealTalker:
    """A real speaker: says only their own recorded utterances (read speech, trimmed)."""

    speaker: str
    utterances: tuple[tuple[str, str], ...]  # (audio path, normalised text)
    source: str = "speechocean762"
    rate: float = 1.0


@dataclass(frozen=True)
class Turn:
    speaker: int  # index into the meeting's voices
    texts: tuple[str, ...]  # sentences of the turn
    backchannel: bool = False
    audio: tuple[str, ...] = ()  # real talkers: the recordings of `texts`


@dataclass(frozen=True)
class MeetingPlan:
    id: str
    split: str
    seed: int
    duration: float  # target seconds (the meeting ends at the first turn end past it)
    voices: tuple[tts.Voice | RealTalker, ...]
    overlap: float  # target overlap ratio
    room: rooms.RoomSpec
    trajectories: tuple[Trajectory, ...]
    turns: tuple[Turn, ...]
    out: Path
    array: str
    extra: dict = field(default_factory=dict)


def _person(v: tts.Voice) -> str:
    """Voices that are one human across engines count as one person (kal, slt)."""
    name = v.name.replace("16", "").replace("_diphone", "").replace("cmu_us_", "").replace("_arctic_hts", "")
    return name


def _pick_voices(rng: random.Random, n: int, held_out: bool) -> list[tts.Voice]:
    """`n` identities of distinct persons; espeak-ng (robotic) is rarely picked."""
    cands = [v for v in tts.identity_grid() if tts.is_held_out(v) == held_out]
    rng.shuffle(cands)
    chosen: list[tts.Voice] = []
    for v in sorted(cands, key=lambda v: rng.random() * (4.0 if v.engine == "espeak" else 1.0)):
        if _person(v) not in {_person(c) for c in chosen}:
            chosen.append(v)
        if len(chosen) == n:
            break
    return chosen


def _trajectory(rng: random.Random, room: rooms.RoomSpec, seat_az: float, duration: float, moving: bool) -> Trajectory:
    r = rng.uniform(0.8, 2.2)
    pts = [Waypoint(0.0, seat_az, r, rng.uniform(0.2, 0.45))]
    if moving:  # 1-3 walks along arcs, standing height while walking and after
        t = rng.uniform(0.05, 0.5) * duration
        for _ in range(rng.randint(1, 3)):
            if t >= duration:
                break
            walk = rng.uniform(4.0, 15.0)
            last = pts[-1]
            d_az = rng.choice([-1, 1]) * rng.uniform(30.0, 110.0)
            h = rng.uniform(0.55, 0.85)
            pts.append(Waypoint(round(t, 3), last.azimuth, last.distance, h))
            pts.append(Waypoint(round(t + walk, 3), last.azimuth + d_az, float(np.clip(last.distance + rng.uniform(-0.6, 0.6), 0.8, 2.8)), h))
            t += walk + rng.uniform(10.0, 40.0)
    return Trajectory(tuple(pts), room.array_center, room.dims)


def _plan_meeting(i: int, cfg: MeetingConfig, pool, rng: random.Random, real: dict) -> MeetingPlan:
    split = "test" if i >= round(cfg.count * (1 - cfg.test_fraction)) else "train"
    n_spk = rng.randint(cfg.min_speakers, cfg.max_speakers)
    voices: list[tts.Voice | RealTalker] = list(_pick_voices(rng, n_spk, held_out=split == "test"))
    n_spk = len(voices)
    if cfg.p_real_speaker > 0 and real.get(split):
        n_real = min(2, sum(rng.random() < cfg.p_real_speaker for _ in voices))
        for k, name in enumerate(rng.sample(sorted(real[split]), n_real)):
            voices[n_spk - 1 - k] = RealTalker(name, tuple(real[split][name]))
    duration = rng.uniform(cfg.min_minutes, cfg.max_minutes) * 60
    room = rooms.sample_room(np.random.default_rng(rng.getrandbits(32)), cfg.rt60, cfg.snr_db, cfg.max_order)
    # Seats at least 25 degrees apart, so each talker is a separate direction when seated.
    seats: list[float] = []
    while len(seats) < n_spk:
        a = rng.uniform(0, 360)
        if all(min(abs(a - s), 360 - abs(a - s)) >= 25 for s in seats):
            seats.append(a)
    trajs = tuple(_trajectory(rng, room, a, duration, rng.random() < cfg.p_moving) for a in seats)
    dominance = [rng.gammavariate(1.5, 1.0) for _ in range(n_spk)]
    turns: list[Turn] = []
    est, prev = 0.0, -1
    intro = list(range(n_spk))  # everyone speaks early on, so short meetings have every talker
    rng.shuffle(intro)
    while est < duration * 1.3 + 20:
        spk = intro.pop() if intro and intro[-1] != prev else prev
        while spk == prev:
            spk = rng.choices(range(n_spk), dominance)[0]
        texts = []
        talker = voices[spk]
        if isinstance(talker, RealTalker):
            utts = rng.sample(talker.utterances, min(len(talker.utterances), rng.choice([1, 1, 2, 3])))
            turns.append(Turn(spk, tuple(t for _, t in utts), audio=tuple(a for a, _ in utts)))
            est += sum(len(t.split()) for _, t in utts) / 2.0 + 0.8
            prev = spk
            continue
        for _ in range(rng.choices([1, 2, 3], [0.55, 0.3, 0.15])[0]):
            sp = pool.sample(rng, "test" if split == "test" else "train")
            if sp[0] != "meeting" and rng.random() < 0.4:  # meeting talk dominates meetings
                sp = pool.sample(rng, "test" if split == "test" else "train")
            texts.append(sp[1])
        turns.append(Turn(spk, tuple(texts)))
        est += sum(len(t.split()) for t in texts) / 2.6 / voices[spk].rate + 0.8
        if rng.random() < 0.15:
            other = rng.choice([k for k in range(n_spk) if k != spk])
            if isinstance(voices[other], RealTalker):
                prev = spk
                continue
            turns.append(Turn(other, (rng.choice(BACKCHANNELS),), backchannel=True))
        prev = spk
    return MeetingPlan(
        f"meeting-{cfg.seed:03d}-{i:04d}", split, rng.getrandbits(32), round(duration, 2), tuple(voices),
        round(rng.uniform(*cfg.overlap), 3), room, trajs, tuple(turns), cfg.out, cfg.array,
    )


def plan(cfg: MeetingConfig) -> list[MeetingPlan]:
    from corpus.sentences import load_pool

    pool = load_pool()
    rng = random.Random(cfg.seed)
    real: dict[str, dict[str, list[tuple[str, str]]]] = {}
    if cfg.p_real_speaker > 0:
        from corpus.readers import read_speechocean762, split_speakers

        utts = read_speechocean762(cfg.corpus_dir)
        train_spk, dev_spk = split_speakers(utts, cfg.n_dev)
        for split, spk in (("train", train_spk), ("test", dev_spk)):
            for u in utts:
                if u.speaker in spk:
                    real.setdefault(split, {}).setdefault(f"speechocean762:{u.speaker}", []).append((u.audio, u.text))
    return [_plan_meeting(i, cfg, pool, rng, real) for i in range(cfg.count)]


def _overlap_ratio(intervals: list[tuple[float, float]]) -> float:
    """Time with >= 2 talkers / time with >= 1 talker."""
    ev = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    one = two = 0.0
    active, last = 0, 0.0
    for t, d in ev:
        if active >= 1:
            one += t - last
        if active >= 2:
            two += t - last
        active += d
        last = t
    return two / one if one > 0 else 0.0


@dataclass
class _Placed:
    speaker: int
    start: float
    audio: np.ndarray
    text: str
    words: list  # WordTime relative to `start`
    method: str
    backchannel: bool


def _schedule(p: MeetingPlan, audio: list[list[np.ndarray]], rng: random.Random) -> list[_Placed]:
    """Place turns on the timeline, steering overlap towards the plan's target ratio."""
    placed: list[_Placed] = []
    busy_until = [0.0] * len(p.voices)  # no talker speaks over themself
    speech: list[tuple[float, float]] = []
    t_end, prev_main = 0.5, None
    for turn, clips in zip(p.turns, audio):
        dur = sum(len(c) for c in clips) / SR
        if turn.backchannel:
            if prev_main is None:
                continue
            ps, pe = prev_main
            start = max(ps + 0.3 * (pe - ps) + rng.uniform(0, 0.4 * (pe - ps)), busy_until[turn.speaker] + 0.1)
            if start + dur > pe + 0.5:
                continue
        elif prev_main is None:
            start = 0.5
        else:
            ps, pe = prev_main
            if _overlap_ratio(speech) < p.overlap and rng.random() < 0.85:
                ov = rng.uniform(0.3, max(0.35, min(2.5, 0.5 * (pe - ps), 0.5 * dur)))
                start = pe - ov
            else:
                start = t_end + rng.uniform(0.15, 1.2)
            start = max(start, busy_until[turn.speaker] + 0.2, ps + 0.1)
        if not turn.backchannel and start > p.duration:
            break
        t = start
        for k, (c, text) in enumerate(zip(clips, turn.texts)):
            words, method = align_words(text, c)
            placed.append(_Placed(turn.speaker, round(t, 4), c, text, words, method, turn.backchannel))
            speech.append((t, t + len(c) / SR))
            t += len(c) / SR + (rng.uniform(0.12, 0.5) if k + 1 < len(clips) else 0.0)
        busy_until[turn.speaker] = t
        t_end = max(t_end, t)
        if not turn.backchannel:
            prev_main = (start, t)
    return placed


def _render(p: MeetingPlan, placed: list[_Placed], nrng: np.random.Generator) -> np.ndarray:
    geom = arrays.geometry(p.array)
    mics = geom + np.asarray(p.room.array_center)
    total = int((max(x.start + len(x.audio) / SR for x in placed) + 1.0) * SR)
    out = np.zeros((total + SR, len(mics)), np.float32)
    gains = [10 ** (nrng.uniform(-4, 4) / 20) for _ in p.voices]
    cache: dict[tuple, np.ndarray] = {}
    for x in placed:
        traj = p.trajectories[x.speaker]
        t0, t1 = x.start, x.start + len(x.audio) / SR
        a, b = traj.absolute(t0), traj.absolute(t1)
        if np.linalg.norm(a - b) < 0.01:
            key = (x.speaker, *np.round(a, 2))
            if key not in cache:
                cache[key] = rooms.room_rirs(p.room, mics, a, nrng)
            wet = rooms.convolve(x.audio, cache[key])
        else:
            wet = rooms.render_moving(x.audio, p.room, mics, lambda tau, s=t0: traj.absolute(s + tau), nrng)
        wet = wet[_PRA_DELAY:] * gains[x.speaker]
        i0 = int(round(t0 * SR))
        n = min(len(wet), len(out) - i0)
        out[i0 : i0 + n] += wet[:n]
    out = out[:total]
    noise = rooms.diffuse_noise(nrng, len(out), geom, p.room.noise_tilt)
    ref = arrays.reference_mic(p.array) if p.array in ("circular-7", "linear-4") else 0
    out = rooms.add_noise(out, noise, p.room.snr_db, ref=ref)
    return out * (0.9 / max(1e-6, float(np.abs(out).max())))


def _turns(placed: list[_Placed], names: list[str]) -> list[tuple[str, float, float]]:
    """Speaker turns from word times: a talker's sentences < 0.5 s apart merge into one turn."""
    spans = sorted(
        (names[x.speaker], x.start + x.words[0].start, x.start + x.words[-1].end) for x in placed if x.words
    )
    merged: dict[str, list[list[float]]] = {}
    for spk, s, e in spans:
        runs = merged.setdefault(spk, [])
        if runs and s - runs[-1][1] < 0.5:
            runs[-1][1] = max(runs[-1][1], e)
        else:
            runs.append([s, e])
    return sorted(((spk, s, e) for spk, runs in merged.items() for s, e in runs), key=lambda r: (r[1], r[0]))


def _read_real(path: str) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = tts.trim_silence(tts.resample(x[:, 0], sr), floor_db=-35.0)
    return (x * (0.5 / max(1e-6, float(np.abs(x).max())))).astype(np.float32)


def render_meeting(p: MeetingPlan) -> list[Record]:
    """Worker: synthesize every turn, schedule, render through the room, write all outputs."""
    rng = random.Random(p.seed)
    nrng = np.random.default_rng(p.seed)
    flat = [(p.voices[t.speaker], text) for t in p.turns if not t.audio for text in t.texts]
    synth = iter(tts.synthesize_many(flat))
    audio = [[_read_real(a) for a in t.audio] if t.audio else [next(synth) for _ in t.texts] for t in p.turns]
    placed = [x for x in _schedule(p, audio, rng) if len(x.audio) > 0]
    y = _render(p, placed, nrng)
    duration = len(y) / SR
    names = [v.speaker for v in p.voices]
    words = []
    for x in sorted(placed, key=lambda x: x.start):
        traj = p.trajectories[x.speaker]
        for w in x.words:
            s, e = x.start + w.start, x.start + w.end
            words.append({"word": w.word, "speaker": names[x.speaker], "start": round(s, 3), "end": round(e, 3),
                          "azimuth": round(float(traj.azimuth((s + e) / 2)), 2), "align": x.method})
    turns = _turns(placed, names)
    out = p.out
    for sub in ("audio", "rttm", "words", "trajectories"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    sf.write(out / "audio" / f"{p.id}.flac", y.astype(np.float32), SR, format="FLAC", subtype="PCM_16")
    (out / "rttm" / f"{p.id}.rttm").write_text(to_rttm([SpeakerTurn(spk, s, e) for spk, s, e in turns], p.id))
    (out / "words" / f"{p.id}.json").write_text(json.dumps(words, separators=(",", ":")))
    trajs = {names[k]: {**t.sample(duration), "moving": t.moving} for k, t in enumerate(p.trajectories)}
    (out / "trajectories" / f"{p.id}.json").write_text(json.dumps(trajs, separators=(",", ":")))
    ratio = _overlap_ratio([(s, e) for _, s, e in turns])
    geom = arrays.geometry(p.array)
    aligned = sum(1 for x in placed if x.method == "pocketsphinx") / max(1, len(placed))
    return [Record(
        id=p.id, audio=f"audio/{p.id}.flac", sample_rate=SR, channels=y.shape[1], duration=round(duration, 4),
        text=" ".join(x.text for x in sorted(placed, key=lambda x: x.start)), speaker="multiple",
        source="meeting:" + "+".join(sorted({v.source for v in p.voices})), split=p.split, room=p.room.to_dict(),
        array=p.array, geometry=geom.round(5).tolist(),
        positions=[np.round(t.relative(0.0), 3).tolist() for t in p.trajectories],
        extra={
            "speakers": names, "rttm": f"rttm/{p.id}.rttm", "words": f"words/{p.id}.json",
            "trajectories": f"trajectories/{p.id}.json", "overlap_ratio": round(ratio, 4),
            "target_overlap": p.overlap, "moving": [n for n, t in zip(names, p.trajectories) if t.moving],
            "turns": len(turns), "aligned_fraction": round(aligned, 3),
        },
    )]


def build_meeting(cfg: MeetingConfig) -> BuildStats:
    return run_shards(render_meeting, plan(cfg), cfg.out, cfg.workers, cfg.progress, desc="meeting", resume=cfg.resume)
