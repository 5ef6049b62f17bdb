"""Render the demo page's bundled sample meeting: a short 3-speaker scene on a circular-7 array.

Why its own renderer: the demo needs a sample of a few MB (7 channels × 16 kHz make ~1 MB per
10 s of FLAC), while the corpus builder's `meeting` recipe makes minutes-long meetings for
training and evaluation. The talkers are real speech (speechocean762) from speakers the corpus
holds out for dev (`corpus.readers.split_speakers`), so no model has trained on their voices;
pyroomacoustics renders them through a shoebox room onto the array, each from its own direction.

Writes `<out>/<name>.flac` (7 channels, 16-bit), `<name>.rttm` (who spoke when) and
`<name>.json` (reference: geometry preset, speakers with azimuths, turns with text).
Run: `python -m corpus.sample_meeting --out clients/web/samples` (same seed, same bytes).
`--from-corpus DIR --meeting ID` imports a meeting the corpus builder made instead.
It lives in `corpus/` (not `clients/`, whose web page it feeds) because it reads the corpus:
`clients/` never imports `corpus/`.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from minutes.arrays import geometry
from minutes.transcript import circular_mean, read_rttm, to_rttm
from minutes.types import Turn as SpeakerTurn

SAMPLE_RATE = 16000
SAMPLES = Path(__file__).resolve().parents[1] / "clients" / "web" / "samples"


@dataclass(frozen=True)
class SampleConfig:
    """What the scene is made of; defaults give the committed sample."""

    name: str = "meeting"
    speakers: tuple[str, ...] = ("0560", "2061", "1260")  # adult dev speakers of speechocean762
    azimuths: tuple[float, ...] = (30.0, 150.0, 260.0)  # degrees, CCW from the array's +x axis
    distance: float = 1.2  # metres from the array centre
    utterances_per_speaker: int = 2
    max_utterance_seconds: float = 4.5  # before trimming silence
    gap: tuple[float, float] = (0.3, 0.7)  # seconds of silence between turns (uniform)
    room: tuple[float, float, float] = (6.0, 5.0, 3.0)  # metres
    array_centre: tuple[float, float, float] = (3.0, 2.5, 0.8)  # on the table
    talker_height: float = 1.2
    rt60: float = 0.3  # seconds
    snr_db: float = 45.0  # white noise added after the room
    seed: int = 7
    corpus_dir: Path | None = None


@dataclass
class Turn:
    speaker: str
    start: float
    end: float
    text: str
    azimuth: float
    utterance: str = ""
    extra: dict = field(default_factory=dict)


def _trim(x: np.ndarray, thresh_db: float = -40.0) -> np.ndarray:
    """Cut leading/trailing silence (20 ms frames below `thresh_db` of the peak frame)."""
    hop = SAMPLE_RATE // 50
    n = len(x) // hop
    if n == 0:
        return x
    energy = np.array([np.mean(x[i * hop:(i + 1) * hop] ** 2) for i in range(n)]) + 1e-12
    db = 10 * np.log10(energy / energy.max())
    voiced = np.nonzero(db > thresh_db)[0]
    return x[max(voiced[0] - 2, 0) * hop:min(voiced[-1] + 3, n) * hop]


def _pick_utterances(cfg: SampleConfig):
    from corpus.readers import read_speechocean762

    utts = read_speechocean762(cfg.corpus_dir)
    by_spk = {s: sorted((u for u in utts if u.speaker == s), key=lambda u: u.id) for s in cfg.speakers}
    rng = np.random.default_rng(cfg.seed)
    picked = {}
    for s, us in by_spk.items():
        if not us:
            raise SystemExit(f"speaker {s} not found in the corpus")
        # Sentences read better in a demo than digit strings; short ones keep the file small.
        us = [u for u in us if len(u.text.split()) >= 4 and u.duration <= cfg.max_utterance_seconds]
        idx = rng.choice(len(us), size=cfg.utterances_per_speaker, replace=False)
        picked[s] = [us[i] for i in sorted(idx)]
    return picked


def render(cfg: SampleConfig) -> tuple[np.ndarray, list[Turn]]:
    """Return (audio (N, 7) float32, turns) for the scene."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(cfg.seed)
    picked = _pick_utterances(cfg)
    order = [(s, k) for k in range(cfg.utterances_per_speaker) for s in cfg.speakers]
    absorption, max_order = pra.inverse_sabine(cfg.rt60, list(cfg.room))
    room = pra.ShoeBox(list(cfg.room), fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=max_order)
    centre = np.array(cfg.array_centre)
    room.add_microphone_array((geometry("circular-7") + centre).T)
    turns: list[Turn] = []
    t = 0.5
    for s, k in order:
        u = picked[s][k]
        x, sr = sf.read(u.audio, dtype="float32")
        if sr != SAMPLE_RATE:
            raise SystemExit(f"{u.audio}: {sr} Hz, expected {SAMPLE_RATE}")
        x = _trim(x)
        x = 0.1 * x / (np.sqrt(np.mean(x**2)) + 1e-9)  # equal loudness across talkers
        az = cfg.azimuths[cfg.speakers.index(s)]
        pos = centre + np.array([cfg.distance * math.cos(math.radians(az)), cfg.distance * math.sin(math.radians(az)), 0.0])
        pos[2] = cfg.talker_height
        room.add_source(pos.tolist(), signal=x, delay=t)
        turns.append(Turn(s, round(t, 3), round(t + len(x) / SAMPLE_RATE, 3), u.text, az, u.id))
        t += len(x) / SAMPLE_RATE + rng.uniform(*cfg.gap)
    room.simulate()
    audio = room.mic_array.signals.T[: int((t + 0.5) * SAMPLE_RATE)]
    # The room delays sound by distance/c and the RIR's own leading zeros: keep turn times as
    # emitted (source time) since the offset (~ 4 ms + filter delay) is far below a word.
    audio = audio + rng.normal(0, 1, audio.shape) * np.sqrt(np.mean(audio**2)) * 10 ** (-cfg.snr_db / 20)
    audio = 0.5 * audio / np.max(np.abs(audio))
    return audio.astype(np.float32), turns


def write(cfg: SampleConfig, out: Path) -> dict:
    audio, turns = render(cfg)
    out.mkdir(parents=True, exist_ok=True)
    sf.write(out / f"{cfg.name}.flac", audio, SAMPLE_RATE, subtype="PCM_16")
    (out / f"{cfg.name}.rttm").write_text(to_rttm([SpeakerTurn(t.speaker, t.start, t.end) for t in turns], cfg.name))
    ref = {
        "name": cfg.name,
        "audio": f"{cfg.name}.flac",
        "sample_rate": SAMPLE_RATE,
        "channels": int(audio.shape[1]),
        "array": "circular-7",
        "duration": round(len(audio) / SAMPLE_RATE, 3),
        "speakers": {s: {"azimuth": a} for s, a in zip(cfg.speakers, cfg.azimuths)},
        "text": " ".join(tr.text for tr in turns),
        "turns": [{k: v for k, v in asdict(tr).items() if k != "extra"} for tr in turns],
        "source": "speechocean762 dev speakers rendered with pyroomacoustics (corpus/sample_meeting.py)",
    }
    (out / f"{cfg.name}.json").write_text(json.dumps(ref, indent=1) + "\n")
    return ref


def import_corpus_meeting(corpus_dir: Path, meeting_id: str, out: Path, name: str) -> dict:
    """Copy one meeting of the corpus builder's `meeting` recipe (corpus/recipes/meeting.py)
    into the samples, with a reference in the same shape as `write`'s: turns from its RTTM,
    each with the words whose middle falls inside it and their mean azimuth."""
    import shutil

    from corpus.manifest import read_manifest

    rec = next(r for split in ("test", "train") if (corpus_dir / f"{split}.jsonl").exists()
               for r in read_manifest(corpus_dir / f"{split}.jsonl") if r.id == meeting_id)
    words = json.loads((corpus_dir / rec.extra["words"]).read_text())
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(corpus_dir / rec.audio, out / f"{name}.flac")
    turns = []
    ref_turns = [t for ts in read_rttm(corpus_dir / rec.extra["rttm"]).values() for t in ts]
    for t in ref_turns:
        inside = [w for w in words if w["speaker"] == t.speaker and t.start <= (w["start"] + w["end"]) / 2 < t.end]
        mean = circular_mean(w["azimuth"] for w in inside)
        turns.append({"speaker": t.speaker, "start": t.start, "end": round(t.end, 3),
                      "text": " ".join(w["word"] for w in inside),
                      "azimuth": None if mean is None else round(mean, 1), "utterance": ""})
    (out / f"{name}.rttm").write_text(to_rttm(ref_turns, name))
    ref = {
        "name": name, "audio": f"{name}.flac", "sample_rate": rec.sample_rate, "channels": rec.channels,
        "array": rec.array, "duration": round(rec.duration, 3),
        "speakers": {t["speaker"]: {"azimuth": t["azimuth"]} for t in turns},
        "text": rec.text, "turns": turns,
        "source": f"corpus meeting recipe ({rec.id}, {rec.source}); room {rec.room}",
    }
    (out / f"{name}.json").write_text(json.dumps(ref, indent=1) + "\n")
    return ref


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=SAMPLES)
    p.add_argument("--seed", type=int, default=SampleConfig.seed)
    p.add_argument("--from-corpus", type=Path, default=None, help="a `meeting` corpus folder to import from")
    p.add_argument("--meeting", default=None, help="with --from-corpus: the meeting id")
    p.add_argument("--name", default="corpus-meeting", help="with --from-corpus: the sample's file name")
    args = p.parse_args(argv)
    if args.from_corpus:
        ref = import_corpus_meeting(args.from_corpus, args.meeting, args.out, args.name)
        print(json.dumps({k: ref[k] for k in ("name", "duration", "channels")}))
        return 0
    ref = write(SampleConfig(seed=args.seed), args.out)
    print(json.dumps({k: ref[k] for k in ("name", "duration", "channels")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
