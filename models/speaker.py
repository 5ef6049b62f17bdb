"""Speaker-embedding model: a small TDNN (x-vector style) over log-mel features, trained with
an additive angular margin (AAM-softmax) loss.

Why a TDNN and not a ResNet: on one shared CPU core the diariser must embed a 1.5 s window
every half second inside a 0.05 real-time budget together with DOA, and a 1-D convolution
stack over 40 mel bands does that in a few milliseconds, where a 2-D ResNet of similar accuracy
costs ~10x more. The front end (log-mel + per-window mean normalisation) lives inside the
module so a checkpoint maps raw 16 kHz audio to an embedding with nothing else to agree on.

Shapes: B batch, T frames (10 ms), F mel bands, C channels, D embedding size, K classes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

__all__ = ["SpeakerConfig", "SpeakerEncoder", "AAMSoftmax", "save_speaker", "load_speaker"]


@dataclass(frozen=True)
class SpeakerConfig:
    """Model dimensions; saved inside the checkpoint so it rebuilds its own model."""

    sample_rate: int = 16000
    n_mels: int = 40  # log-mel bands
    channels: int = 256  # TDNN width
    pooled: int = 768  # channels before statistics pooling
    embedding: int = 128  # D
    dilations: tuple[int, ...] = (1, 2, 3)  # one k=3 dilated layer each after the k=5 input layer


class _TDNNBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.norm = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.relu(self.conv(x)))


class SpeakerEncoder(nn.Module):
    """Waveform (B, N) at `sample_rate` -> L2-normalised embedding (B, D)."""

    def __init__(self, cfg: SpeakerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mel = torchaudio.transforms.MelSpectrogram(
            cfg.sample_rate, n_fft=400, win_length=400, hop_length=160, n_mels=cfg.n_mels
        )
        layers = [_TDNNBlock(cfg.n_mels, cfg.channels, 5, 1)]
        layers += [_TDNNBlock(cfg.channels, cfg.channels, 3, d) for d in cfg.dilations]
        layers += [_TDNNBlock(cfg.channels, cfg.pooled, 1, 1)]
        self.tdnn = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(2 * cfg.pooled, cfg.embedding), nn.BatchNorm1d(cfg.embedding))

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, F, T) log-mel with the mean over time removed (channel normalisation:
        a room's transfer function is roughly a constant offset in the log-spectrum)."""
        feats = torch.log(self.mel(wave) + 1e-6)
        return feats - feats.mean(dim=-1, keepdim=True)

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, F, T) -> unnormalised embedding (B, D); training crops features directly."""
        h = self.tdnn(feats)
        stats = torch.cat([h.mean(dim=-1), h.std(dim=-1)], dim=-1)
        return self.head(stats)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.forward_features(self.features(wave)), dim=-1)


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax (ArcFace): logits s·cos(θ + m) for the target class,
    s·cos θ for the others. The margin forces same-speaker embeddings into a tighter cone than
    plain softmax does, which is what cosine scoring at test time needs."""

    def __init__(self, embedding: int, classes: int, margin: float = 0.2, scale: float = 30.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, embedding) * 0.01)
        self.margin, self.scale = margin, scale

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """emb (B, D) unnormalised, labels (B,) -> scalar loss."""
        cos = F.linear(F.normalize(emb), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
        theta = torch.acos(cos)
        target = torch.cos(theta + self.margin)
        # Keep the logit monotonic in θ when θ + m passes π (the standard "easy margin" fix).
        target = torch.where(theta + self.margin < math.pi, target, cos - self.margin * math.sin(self.margin))
        onehot = F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        logits = self.scale * (onehot * target + (1 - onehot) * cos)
        return F.cross_entropy(logits, labels)


def save_speaker(model: SpeakerEncoder, path: str | Path, extra: dict | None = None) -> None:
    """Checkpoint = config + weights (+ free-form metadata such as EER and training data)."""
    torch.save({"config": asdict(model.cfg), "state": model.state_dict(), "extra": extra or {}}, path)


def load_speaker(path: str | Path) -> SpeakerEncoder:
    """Rebuild a `SpeakerEncoder` in eval mode from its own checkpoint."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = ckpt["config"]
    cfg["dilations"] = tuple(cfg["dilations"])
    model = SpeakerEncoder(SpeakerConfig(**cfg))
    model.load_state_dict(ckpt["state"])
    return model.eval()
