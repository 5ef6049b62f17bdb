"""Log-mel filterbank features, the same in training and in streaming.

Why Kaldi's fbank with `snip_edges=True` and no dither: every 10 ms frame then depends only on
its own 25 ms of samples, so features computed chunk by chunk on a live stream are bit-for-bit
those of the whole file (the recogniser relies on it, and a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchaudio.compliance import kaldi


@dataclass(frozen=True)
class FbankConfig:
    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0

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
