"""Log-mel features, the same in training and in streaming: Kaldi's fbank or Whisper's log-mel.

Why every frame is computed from its own 25 ms window alone (Kaldi's `snip_edges=True`, no
dither; for Whisper's features, no centring or reflect padding): features computed chunk by
chunk on a live stream are then bit-for-bit those of the whole file (the recogniser relies on
it, and a test checks it).

Whisper's front end (`kind="whisper"`) is what a Whisper-initialised encoder was trained on:
a periodic Hann window, |rfft|² of 400 samples, 80 Slaney mel filters, log10 clamped at 1e-10,
a floor 8 decades below a maximum and the affine map (x + 4) / 4. Whisper takes that maximum
per 30 s window, which a stream cannot know; minutes uses a fixed one (`whisper_ceiling`,
the median per-utterance maximum of real training speech), so a frame never depends on the
future. Only the floor depends on it: the scale of every frame above it is Whisper's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torchaudio
from torchaudio.compliance import kaldi


@dataclass(frozen=True)
class FbankConfig:
    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    kind: str = "kaldi"  # "kaldi" (natural log of Kaldi fbank) or "whisper" (see the module docstring)
    whisper_ceiling: float = 0.9  # log10 power of the loudest bin (median per-utterance max of speechocean762 train: 0.93)

    @property
    def window(self) -> int:
        """Samples per analysis window."""
        return int(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def shift(self) -> int:
        """Samples between frame starts."""
        return int(self.sample_rate * self.frame_shift_ms / 1000)

    def num_frames(self, num_samples: int) -> int:
        """Frames that `num_samples` samples yield (snip_edges: only whole windows)."""
        return 0 if num_samples < self.window else 1 + (num_samples - self.window) // self.shift


def fbank(wave: torch.Tensor, cfg: FbankConfig = FbankConfig(), vtln_warp: float = 1.0) -> torch.Tensor:
    """(N,) float waveform in [-1, 1] -> (T, num_mel_bins) log-mel; T = cfg.num_frames(N).
    `vtln_warp` ≠ 1 warps the filters (Kaldi's VTLN), the reference for training.data.freq_warp."""
    if cfg.num_frames(wave.numel()) == 0:
        return torch.zeros(0, cfg.num_mel_bins)
    if cfg.kind == "whisper":
        if vtln_warp != 1.0:
            raise ValueError("vtln_warp is a Kaldi fbank option")
        return whisper_log_mel(wave, cfg)
    if cfg.kind != "kaldi":
        raise ValueError(f"unknown feature kind {cfg.kind!r} (kaldi or whisper)")
    return kaldi.fbank(
        wave.reshape(1, -1).float() * 32768.0,
        num_mel_bins=cfg.num_mel_bins,
        sample_frequency=float(cfg.sample_rate),
        frame_length=cfg.frame_length_ms,
        frame_shift=cfg.frame_shift_ms,
        dither=0.0,
        snip_edges=True,
        energy_floor=0.0,
        vtln_warp=vtln_warp,
    )


@functools.lru_cache(maxsize=4)
def _whisper_filters(sample_rate: int, n_fft: int, n_mels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_fft,) periodic Hann window and (n_fft//2 + 1, n_mels) Slaney mel filters (librosa's
    defaults, which Whisper's mel_filters.npz holds)."""
    window = torch.hann_window(n_fft)
    mel = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate,
                                                norm="slaney", mel_scale="slaney")
    return window, mel


def whisper_power_mel(wave: torch.Tensor, cfg: FbankConfig) -> torch.Tensor:
    """(N,) -> (T, n_mels) mel power of whole 25 ms windows every 10 ms (no padding)."""
    window, mel = _whisper_filters(cfg.sample_rate, cfg.window, cfg.num_mel_bins)
    frames = wave.reshape(-1).float().unfold(0, cfg.window, cfg.shift)  # (T, n_fft)
    spec = torch.fft.rfft(frames * window, dim=-1).abs().pow(2)
    return spec @ mel


def whisper_log_mel(wave: torch.Tensor, cfg: FbankConfig) -> torch.Tensor:
    """Whisper's normalised log-mel with a fixed maximum (streamable)."""
    x = whisper_power_mel(wave, cfg).clamp(min=1e-10).log10()
    return (torch.maximum(x, torch.tensor(cfg.whisper_ceiling - 8.0)) + 4.0) / 4.0
