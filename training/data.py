"""Training data for the transducer: manifests -> cached log-mel -> length-bucketed batches.

Why this shape (measured on 2 shared cores): decoding FLAC and computing fbank every epoch
would cost as much as the model's forward pass, so raw log-mel is cached in memory as float16
(~60 MB per hour of audio). Manifests are re-read at every epoch so that a corpus still being
built feeds the run as it grows. Tempo perturbation is done on the cached features (time
interpolation), SpecAugment on normalised features — both cheap.
"""

from __future__ import annotations

import functools
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torchaudio.compliance import kaldi

from corpus.manifest import read_manifest, resolve_audio
from models.features import FbankConfig, fbank

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    id: str
    audio: str  # absolute path
    duration: float
    text: str


def read_items(manifests: list[str], max_duration: float = 30.0, min_duration: float = 0.3) -> list[Item]:
    """Items of every manifest that exist now (a missing manifest is skipped: it may come later)."""
    items: list[Item] = []
    for m in manifests:
        if not Path(m).exists():
            continue
        for r in read_manifest(m):
            if min_duration <= r.duration <= max_duration and r.text.strip():
                items.append(Item(f"{m}:{r.id}", str(resolve_audio(r, m)), r.duration, r.text))
    return items


def load_audio(path: str, sample_rate: int = 16000) -> torch.Tensor:
    """Mono float32 at `sample_rate`; multi-channel files give their first channel (the
    reference microphone the simulator writes first)."""
    import soundfile as sf  # here, not at the top: training from feature packs needs no audio decoder

    data, sr = sf.read(path, dtype="float32", always_2d=True)
    wave = torch.from_numpy(np.ascontiguousarray(data[:, 0]))
    if sr != sample_rate:
        wave = torchaudio.functional.resample(wave, sr, sample_rate)
    return wave


class FeatureCache:
    """id -> raw log-mel (T, F) float16, computed on first use."""

    def __init__(self, cfg: FbankConfig = FbankConfig()) -> None:
        self.cfg = cfg
        self.store: dict[str, torch.Tensor] = {}

    def get(self, item: Item) -> torch.Tensor:
        f = self.store.get(item.id)
        if f is None:
            f = fbank(load_audio(item.audio, self.cfg.sample_rate), self.cfg).half()
            self.store[item.id] = f
        return f.float()


def feature_stats(cache: FeatureCache, items: list[Item], n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Global per-bin mean and std of raw log-mel over a sample of training items."""
    rng = random.Random(seed)
    sample = rng.sample(items, min(n, len(items)))
    feats = torch.cat([cache.get(it) for it in sample])
    return feats.mean(0), feats.std(0).clamp(min=1e-3)


def make_batches(items: list[Item], max_seconds: float, max_utts: int, rng: random.Random) -> list[list[Item]]:
    """Buckets of similar length (sorted with a little noise), each <= max_seconds of audio."""
    order = sorted(items, key=lambda it: it.duration * (1 + 0.1 * rng.random()))
    batches: list[list[Item]] = []
    cur: list[Item] = []
    longest = 0.0
    for it in order:
        if cur and (max(longest, it.duration) * (len(cur) + 1) > max_seconds or len(cur) >= max_utts):
            batches.append(cur)
            cur, longest = [], 0.0
        cur.append(it)
        longest = max(longest, it.duration)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def tempo(feats: torch.Tensor, factor: float) -> torch.Tensor:
    """Tempo perturbation on features: resample the time axis by 1/factor."""
    if abs(factor - 1.0) < 1e-6:
        return feats
    t = max(8, int(round(feats.shape[0] / factor)))
    return F.interpolate(feats.T[None], size=t, mode="linear", align_corners=False)[0].T


@functools.lru_cache(maxsize=128)
def _warp_source(num_bins: int, factor: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each output mel bin: the two source bins and the weight of the upper one.
    Bin centres are those of `models.features.fbank` (Kaldi's defaults: 20 Hz to Nyquist); Kaldi's
    piecewise-linear VTLN warp (cut-offs 100 Hz and Nyquist − 500 Hz) sends each output centre to
    the frequency it reads, as `fbank(vtln_warp=factor)` does with its filters."""
    low, high = 20.0, FbankConfig().sample_rate / 2
    _, centres = kaldi.get_mel_banks(num_bins, FbankConfig().window, high * 2, low, high, 100.0, -500.0, 1.0)
    centres = centres.double().flatten()
    warped = kaldi.vtln_warp_freq(100.0, high - 500.0, low, high, factor, centres)
    pos = torch.from_numpy(np.interp(warped.numpy(), centres.numpy(), np.arange(num_bins, dtype=np.float64)))
    below = pos.floor().long().clamp(0, num_bins - 1)
    above = (below + 1).clamp(max=num_bins - 1)
    return below, above, (pos - below).float()


def freq_warp(feats: torch.Tensor, factor: float) -> torch.Tensor:
    """Vocal-tract-length perturbation on cached (T, F) log-mel: the spectral envelope is
    scaled along frequency, what a shorter or longer vocal tract does to formants. `factor` is
    Kaldi's VTLN warp factor: the result approximates `fbank(wave, vtln_warp=factor)`.
    Tempo perturbation on features only stretches time, so without this the ~100 training speakers
    are the only formant scales the model sees (children and adults of unseen speakers differ by
    ~15 %). Factor is rounded to 0.01 so the warp tables are cached."""
    factor = round(factor, 2)
    if abs(factor - 1.0) < 1e-6:
        return feats
    below, above, w = _warp_source(feats.shape[1], factor)
    return feats[:, below] * (1 - w) + feats[:, above] * w


def spec_augment(x: torch.Tensor, rng: random.Random, freq_masks: int = 2, freq_width: int = 12,
                 time_masks: int = 2, time_frac: float = 0.05) -> torch.Tensor:
    """In place on normalised (T, F) features: masked regions are set to 0 (the mean)."""
    t, f = x.shape
    for _ in range(freq_masks):
        w = rng.randint(0, freq_width)
        s = rng.randint(0, max(0, f - w))
        x[:, s : s + w] = 0
    for _ in range(time_masks):
        w = rng.randint(0, max(1, int(time_frac * t)))
        s = rng.randint(0, max(0, t - w))
        x[s : s + w] = 0
    return x


def collate(feats: list[torch.Tensor], targets: list[list[int]]):
    """Pad to (B, T, F), (B, U); lengths as int64."""
    fl = torch.tensor([f.shape[0] for f in feats])
    tl = torch.tensor([len(t) for t in targets])
    x = torch.zeros(len(feats), int(fl.max()), feats[0].shape[1])
    y = torch.zeros(len(targets), max(1, int(tl.max())), dtype=torch.long)
    for i, (f, t) in enumerate(zip(feats, targets)):
        x[i, : f.shape[0]] = f
        y[i, : len(t)] = torch.tensor(t, dtype=torch.long)
    return x, fl, y, tl
