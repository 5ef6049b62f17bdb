"""Chunk-wise streaming Conformer encoder.

Shapes: B batch, T feature frames (10 ms), N encoder frames (40 ms x stack), D model width, H heads.

Why this shape:
- Conv2d subsampling (4x) in front, then stacking of 2 (80 ms frames): the measured probes on
  this machine learnt far faster with convolutions than with plain frame stacking. Its input
  is left-padded with 3 zero frames (zero = the train mean after normalisation), so
  N = T // (4 * stack) exactly and a stream can carry the same 3
  frames as its cache: chunk-wise output equals whole-utterance output.
- Attention is restricted to the frame's own chunk and `left_chunks` chunks before it, both
  when training (a mask) and when streaming (a fixed-size key/value cache with a validity
  mask), so the streaming view computes exactly what training saw.
- No positional encoding: the causal depthwise convolution gives each frame its order, and
  nothing depends on absolute position, so an hour-long stream is no different from a
  5-second training utterance.
- Streaming state is passed in and returned (`EncoderState`), never kept on the module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FEAT_CACHE = 3  # feature frames of left context the subsampling convs need


@dataclass
class EncoderConfig:
    n_mels: int = 80
    d_model: int = 192
    n_layers: int = 6
    n_heads: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15  # causal depthwise kernel, in encoder frames
    subsample_channels: int = 64
    stack: int = 2  # conv outputs (40 ms) stacked per encoder frame: 2 -> 80 ms frames
    chunk_frames: int = 8  # encoder frames per chunk (8 x 40 ms = 320 ms)
    left_chunks: int = 8  # chunks of left context for attention
    dropout: float = 0.1

    @property
    def left_frames(self) -> int:
        return self.chunk_frames * self.left_chunks

    @property
    def subsampling(self) -> int:
        """Feature frames (10 ms) per encoder frame."""
        return 4 * self.stack


@dataclass
class EncoderState:
    """Per-stream encoder caches, batched on dim B (dim 1 for the per-layer tensors)."""

    feat: Tensor  # (B, 3, n_mels) last normalised feature frames
    key: Tensor  # (L, B, H, left_frames, D/H)
    value: Tensor  # (L, B, H, left_frames, D/H)
    valid: Tensor  # (B, left_frames) bool: which cached key/value slots hold real frames
    conv: Tensor  # (L, B, D, conv_kernel - 1) last inputs of each causal depthwise conv

    @staticmethod
    def stack(states: list["EncoderState"]) -> "EncoderState":
        return EncoderState(
            feat=torch.cat([s.feat for s in states], 0),
            key=torch.cat([s.key for s in states], 1),
            value=torch.cat([s.value for s in states], 1),
            valid=torch.cat([s.valid for s in states], 0),
            conv=torch.cat([s.conv for s in states], 1),
        )

    def unstack(self) -> list["EncoderState"]:
        return [
            EncoderState(
                feat=self.feat[b : b + 1], key=self.key[:, b : b + 1], value=self.value[:, b : b + 1],
                valid=self.valid[b : b + 1], conv=self.conv[:, b : b + 1],
            )
            for b in range(self.feat.shape[0])
        ]


class Subsampling(nn.Module):
    """Two 3x3 stride-2 convolutions, then `stack` outputs concatenated per frame:
    (B, T + 3, F) -> (B, T // (4 * stack), D). Stacking halves the encoder's frame rate
    (80 ms), which halves the encoder and transducer-loss cost on this CPU."""

    def __init__(self, n_mels: int, channels: int, d_model: int, stack: int = 1) -> None:
        super().__init__()
        self.stack = stack
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU(),
        )
        f = ((n_mels - 3) // 2 + 1 - 3) // 2 + 1
        self.out = nn.Linear(channels * f * stack, d_model)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x.unsqueeze(1))  # (B, C, N4, F')
        b, c, n, f = y.shape
        n = n // self.stack
        y = y[:, :, : n * self.stack].transpose(1, 2).reshape(b, n, self.stack * c * f)
        return self.out(y)


class FeedForward(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, hidden), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(hidden, d), nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ChunkAttention(nn.Module):
    """Multi-head self-attention; the mask or the cache decides what each frame sees."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.dropout = dropout
        self.drop = nn.Dropout(dropout)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return q, k, v  # each (B, H, N, D/H)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        b, h, n, dh = y.shape
        return self.drop(self.out(y.transpose(1, 2).reshape(b, n, h * dh)))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, N, D), mask (B, 1, N, N) bool (True = may attend)."""
        q, k, v = self._split(x)
        return self._attend(q, k, v, mask)

    def infer(self, x: Tensor, key: Tensor, value: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, n, D) one chunk; key/value (B, H, Lc, D/H); valid (B, Lc) -> y, new key, new value."""
        q, k, v = self._split(x)
        kk, vv = torch.cat([key, k], 2), torch.cat([value, v], 2)
        ones = torch.ones(valid.shape[0], x.shape[1], dtype=torch.bool, device=x.device)
        mask = torch.cat([valid, ones], 1)[:, None, None, :]
        lc = key.shape[2]
        return self._attend(q, kk, vv, mask), kk[:, :, -lc:], vv[:, :, -lc:]


class CausalConv(nn.Module):
    """Conformer convolution module with a causal depthwise convolution."""

    def __init__(self, d: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.kernel = kernel
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Linear(d, 2 * d)
        self.dw = nn.Conv1d(d, d, kernel, groups=d)
        self.norm2 = nn.LayerNorm(d)
        self.pw2 = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def _pre(self, x: Tensor) -> Tensor:
        return F.glu(self.pw1(self.norm(x)), dim=-1).transpose(1, 2)  # (B, D, N)

    def _post(self, y: Tensor) -> Tensor:
        return self.drop(self.pw2(F.silu(self.norm2(y.transpose(1, 2)))))

    def forward(self, x: Tensor) -> Tensor:
        y = self._pre(x)
        return self._post(self.dw(F.pad(y, (self.kernel - 1, 0))))

    def infer(self, x: Tensor, cache: Tensor) -> tuple[Tensor, Tensor]:
        y = torch.cat([cache, self._pre(x)], 2)
        return self._post(self.dw(y)), y[:, :, -(self.kernel - 1) :]


class ConformerLayer(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.ff1 = FeedForward(d, d * cfg.ff_mult, cfg.dropout)
        self.attn = ChunkAttention(d, cfg.n_heads, cfg.dropout)
        self.conv = CausalConv(d, cfg.conv_kernel, cfg.dropout)
        self.ff2 = FeedForward(d, d * cfg.ff_mult, cfg.dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, mask)
        x = x + self.conv(x)
        return self.norm(x + 0.5 * self.ff2(x))

    def infer(self, x: Tensor, key: Tensor, value: Tensor, valid: Tensor, conv: Tensor):
        x = x + 0.5 * self.ff1(x)
        a, key, value = self.attn.infer(x, key, value, valid)
        x = x + a
        c, conv = self.conv.infer(x, conv)
        x = x + c
        return self.norm(x + 0.5 * self.ff2(x)), key, value, conv


def chunk_mask(lengths: Tensor, n: int, chunk: int, left_chunks: int) -> Tensor:
    """(B, 1, N, N) bool: frame i sees frame j iff j's chunk is i's or one of `left_chunks`
    before it, and j is a real (not padding) frame. The diagonal is always allowed so that
    padding rows never see nothing (which would give NaN)."""
    idx = torch.arange(n, device=lengths.device)
    ci, cj = (idx // chunk)[:, None], (idx // chunk)[None, :]
    allowed = (cj <= ci) & (cj >= ci - left_chunks)
    real = idx[None, :] < lengths[:, None]  # (B, N)
    mask = allowed[None] & real[:, None, :]
    return (mask | torch.eye(n, dtype=torch.bool, device=lengths.device)[None]).unsqueeze(1)


class StreamingConformer(nn.Module):
    """Normalised log-mel in, 40*stack ms encoder frames out; `forward` for whole utterances,
    `infer` for one chunk of a stream (same numbers)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.subsample = Subsampling(cfg.n_mels, cfg.subsample_channels, cfg.d_model, cfg.stack)
        self.layers = nn.ModuleList(ConformerLayer(cfg) for _ in range(cfg.n_layers))

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """feats (B, T, F) normalised, lengths (B,) -> (B, T // s, D), lengths // s (s = 4 * stack)."""
        x, out_len, _ = self.forward_tapped(feats, lengths, tap=0)
        return x, out_len

    def forward_tapped(self, feats: Tensor, lengths: Tensor, tap: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """`forward`, plus the output of layer `tap` (1-based; 0 = none) for a training-only head
        (distillation from a teacher's states: a middle layer leaves the top ones to the task)."""
        x = self.subsample(F.pad(feats, (0, 0, FEAT_CACHE, 0)))
        out_len = lengths // self.cfg.subsampling
        mask = chunk_mask(out_len, x.shape[1], self.cfg.chunk_frames, self.cfg.left_chunks)
        tapped = None
        for i, layer in enumerate(self.layers, start=1):
            x = layer(x, mask)
            if i == tap:
                tapped = x
        return x, out_len, tapped

    def initial_state(self, batch: int = 1, device: torch.device | str = "cpu") -> EncoderState:
        c = self.cfg
        dh = c.d_model // c.n_heads
        kv = (c.n_layers, batch, c.n_heads, c.left_frames, dh)
        return EncoderState(
            feat=torch.zeros(batch, FEAT_CACHE, c.n_mels, device=device),
            key=torch.zeros(kv, device=device),
            value=torch.zeros(kv, device=device),
            valid=torch.zeros(batch, c.left_frames, dtype=torch.bool, device=device),
            conv=torch.zeros(c.n_layers, batch, c.d_model, c.conv_kernel - 1, device=device),
        )

    def infer(self, feats: Tensor, state: EncoderState) -> tuple[Tensor, EncoderState]:
        """feats (B, s*n, F) normalised new frames (s = cfg.subsampling) (n <= chunk_frames; a chunk boundary must
        fall where training's did, so only the last call of a stream may have n < chunk)
        -> (B, n, D), new state."""
        x = torch.cat([state.feat, feats], 1)
        y = self.subsample(x)
        n = y.shape[1]
        keys, values, convs = [], [], []
        for i, layer in enumerate(self.layers):
            y, k, v, c = layer.infer(y, state.key[i], state.value[i], state.valid, state.conv[i])
            keys.append(k), values.append(v), convs.append(c)
        ones = torch.ones(y.shape[0], n, dtype=torch.bool, device=y.device)
        valid = torch.cat([state.valid, ones], 1)[:, -self.cfg.left_frames :]
        new = EncoderState(
            feat=x[:, -FEAT_CACHE:], key=torch.stack(keys), value=torch.stack(values),
            valid=valid, conv=torch.stack(convs),
        )
        return y, new
