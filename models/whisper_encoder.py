"""Whisper's encoder, made streaming: chunked attention, a bounded left context, a causal front
end and positions that never run out — minutes' encoder started from Whisper tiny.en's weights.

Shapes: B batch, T feature frames (10 ms), S encoder states (20 ms, Whisper's rate), N output
frames (40 ms = `stack` states), D width, H heads.

Why this shape:
- The layers are Whisper's (pre-LayerNorm blocks, GELU MLP, a key projection without bias,
  a final LayerNorm), so `load_whisper_weights` maps the pretrained tensors one to one.
- Front end: Whisper's two k=3 convolutions (the second with stride 2), but unpadded on the
  right: the input is left-padded with `FEAT_CACHE` frames of silence, so state s depends on
  feature frames 2s-3 .. 2s+1 only, and a stream carries those 3 frames as its cache.
  Streaming output then equals whole-utterance output.
- Attention sees the frame's own chunk and `left_chunks` chunks before it, by a mask when
  training and by a fixed-size key/value cache when streaming (as models/encoder.py does).
- Positions: Whisper adds a 1500-row table to the conv output, and an hour-long stream has
  more than 1500 states. `positions = "sliding"` reads the table at (offset + s) mod 1500, with
  the offset drawn at random per utterance in training, so the model learns that only
  differences of position mean anything and meets the wrap at 30 s in training, as it will in a
  stream; `"none"` drops the table. Both work on endless streams.
- Two 20 ms states are stacked (concatenated, then projected) to one 40 ms output frame, which
  halves the joiner's and the search's work; the encoder itself runs at Whisper's rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.encoder import chunk_mask

FEAT_CACHE = 3  # feature frames of left context the two convolutions need
SILENCE = (-7.1 + 4.0) / 4.0  # Whisper's normalised log-mel of digital silence (the floor at ceiling 0.9)


@dataclass
class WhisperEncoderConfig:
    kind: str = "whisper"
    n_mels: int = 80
    d_model: int = 384
    n_layers: int = 4
    n_heads: int = 6
    ff_mult: int = 4
    n_positions: int = 1500
    positions: str = "sliding"  # "sliding" or "none" (see the module docstring)
    stack: int = 2  # 20 ms states per output frame
    chunk_frames: int = 8  # output frames per chunk (8 x 40 ms = 320 ms)
    left_chunks: int = 6
    dropout: float = 0.1
    # structured pruning (compression/shrink.py) leaves layers of different sizes: per block, the
    # MLP's hidden width and the number of attention heads (empty = d_model * ff_mult and
    # n_heads everywhere). Heads keep their width, d_model // n_heads.
    ff_dims: list[int] = field(default_factory=list)
    layer_heads: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("ff_dims", "layer_heads"):
            got = getattr(self, name)
            if got and len(got) != self.n_layers:
                raise ValueError(f"{name} has {len(got)} entries for {self.n_layers} layers")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def ff_dim(self, layer: int) -> int:
        return self.ff_dims[layer] if self.ff_dims else self.d_model * self.ff_mult

    def heads(self, layer: int) -> int:
        return self.layer_heads[layer] if self.layer_heads else self.n_heads

    @property
    def total_heads(self) -> int:
        """Heads over all blocks: the streaming key/value cache holds them side by side."""
        return sum(self.heads(i) for i in range(self.n_layers))

    @property
    def subsampling(self) -> int:
        """Feature frames (10 ms) per output frame."""
        return 2 * self.stack

    @property
    def chunk_states(self) -> int:
        return self.chunk_frames * self.stack

    @property
    def left_frames(self) -> int:
        """20 ms states of attention context kept before the chunk."""
        return self.chunk_states * self.left_chunks


@dataclass
class WhisperEncoderState:
    """Per-stream caches, batched on dim 0. Every block's heads sit side by side on dim 1 of
    key/value (block i owns the next `cfg.heads(i)`), so blocks may have different head counts."""

    feat: Tensor  # (B, 3, n_mels) last feature frames
    key: Tensor  # (B, total heads, left_frames, head_dim)
    value: Tensor  # (B, total heads, left_frames, head_dim)
    valid: Tensor  # (B, left_frames) bool
    pos: Tensor  # (B,) int64: 20 ms states produced so far (the next state's position)

    @staticmethod
    def stack(states: list["WhisperEncoderState"]) -> "WhisperEncoderState":
        return WhisperEncoderState(
            feat=torch.cat([s.feat for s in states], 0), key=torch.cat([s.key for s in states], 0),
            value=torch.cat([s.value for s in states], 0), valid=torch.cat([s.valid for s in states], 0),
            pos=torch.cat([s.pos for s in states], 0),
        )

    def unstack(self) -> list["WhisperEncoderState"]:
        return [
            WhisperEncoderState(self.feat[b : b + 1], self.key[b : b + 1], self.value[b : b + 1],
                                self.valid[b : b + 1], self.pos[b : b + 1])
            for b in range(self.feat.shape[0])
        ]


class WhisperAttention(nn.Module):
    """Whisper's self-attention (fused q/k/v; the key's share of the bias is kept at zero).
    `heads` x `head_dim` may be narrower than `d` once heads are pruned."""

    def __init__(self, d: int, heads: int, dropout: float, head_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        inner = heads * (head_dim or d // heads)
        self.qkv = nn.Linear(d, 3 * inner)
        self.out = nn.Linear(inner, d)
        self.dropout = dropout
        with torch.no_grad():
            self.qkv.bias[inner : 2 * inner].zero_()
        self.qkv.bias.register_hook(
            lambda g: torch.cat([g[:inner], torch.zeros_like(g[inner : 2 * inner]), g[2 * inner :]]))

    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return q, k, v  # each (B, H, N, D/H)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        b, h, n, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(b, n, h * dh))


class WhisperBlock(nn.Module):
    def __init__(self, cfg: WhisperEncoderConfig, layer: int = 0) -> None:
        super().__init__()
        d, ff = cfg.d_model, cfg.ff_dim(layer)
        self.attn_norm = nn.LayerNorm(d)
        self.attn = WhisperAttention(d, cfg.heads(layer), cfg.dropout, cfg.head_dim)
        self.mlp_norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        q, k, v = self.attn.split(self.attn_norm(x))
        x = x + self.drop(self.attn.attend(q, k, v, mask))
        return x + self.drop(self.mlp(self.mlp_norm(x)))

    def infer(self, x: Tensor, key: Tensor, value: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, n, D) one chunk; key/value (B, H, Lc, D/H) cached; valid (B, Lc)."""
        q, k, v = self.attn.split(self.attn_norm(x))
        kk, vv = torch.cat([key, k], 2), torch.cat([value, v], 2)
        ones = torch.ones(valid.shape[0], x.shape[1], dtype=torch.bool, device=x.device)
        mask = torch.cat([valid, ones], 1)[:, None, None, :]
        x = x + self.attn.attend(q, kk, vv, mask)
        lc = key.shape[2]
        return x + self.mlp(self.mlp_norm(x)), kk[:, :, -lc:], vv[:, :, -lc:]


class StreamingWhisperEncoder(nn.Module):
    """Whisper log-mel (models.features kind "whisper") in, 40 ms frames out; `forward` for whole
    utterances, `infer` for one chunk of a stream (same numbers)."""

    def __init__(self, cfg: WhisperEncoderConfig) -> None:
        super().__init__()
        if cfg.positions not in ("sliding", "none"):
            raise ValueError(f"positions must be 'sliding' or 'none', not {cfg.positions!r}")
        self.cfg = cfg
        d = cfg.d_model
        self.conv1 = nn.Conv1d(cfg.n_mels, d, 3)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2)
        self.register_buffer("positions", sinusoids(cfg.n_positions, d))
        self.blocks = nn.ModuleList(WhisperBlock(cfg, i) for i in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d)
        self.stack_proj = nn.Linear(cfg.stack * d, d)

    # -- pieces shared by both views --------------------------------------------------------
    def _front(self, x: Tensor, offset: Tensor) -> Tensor:
        """x (B, 3 + T, F), left context included -> (B, T // 2, D) conv states with positions
        from `offset` (B,)."""
        y = self._convs(x)
        if self.cfg.positions == "sliding":
            idx = (offset[:, None] + torch.arange(y.shape[1], device=y.device)[None]) % self.cfg.n_positions
            y = y + self.positions[idx]
        return y

    def _convs(self, x: Tensor) -> Tensor:
        return F.gelu(self.conv2(F.gelu(self.conv1(x.transpose(1, 2))))).transpose(1, 2)

    def _stack(self, y: Tensor) -> Tensor:
        b, s, d = y.shape
        n = s // self.cfg.stack
        return self.stack_proj(y[:, : n * self.cfg.stack].reshape(b, n, self.cfg.stack * d))

    # -- whole utterances -------------------------------------------------------------------
    def forward(self, feats: Tensor, lengths: Tensor, offsets: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """feats (B, T, F), lengths (B,) -> (B, T // 4, D), lengths // 4."""
        x, out_len, _ = self.forward_tapped(feats, lengths, tap=0, offsets=offsets)
        return x, out_len

    def forward_tapped(self, feats: Tensor, lengths: Tensor, tap: int,
                       offsets: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """`forward`, plus the states after block `tap` (1-based; 0 = none; the last block gives
        the final LayerNorm's output, what Whisper's encoder returns), averaged in pairs to the
        output's 40 ms frames, for a training-only head. `offsets` (B,) start positions in the table; None = random in training mode (see
        the module docstring), 0 in eval mode."""
        c = self.cfg
        x = F.pad(feats, (0, 0, FEAT_CACHE, 0), value=SILENCE)
        if offsets is None and self.training and c.positions == "sliding":
            offsets = torch.randint(0, c.n_positions, (feats.shape[0],), device=feats.device)
        elif offsets is None:
            offsets = torch.zeros(feats.shape[0], dtype=torch.long, device=feats.device)
        y = self._front(x, offsets)
        # only states that make whole output frames are real: a stream never computes the others
        states = ((lengths // c.subsampling) * c.stack).clamp(max=y.shape[1])
        mask = chunk_mask(states, y.shape[1], c.chunk_states, c.left_chunks)
        tapped = None
        for i, block in enumerate(self.blocks, start=1):
            y = block(y, mask)
            if i == tap and i < c.n_layers:
                tapped = y
        y = self.norm(y)
        if tap == c.n_layers:
            tapped = y
        if tapped is not None:  # 20 ms -> 40 ms by averaging, as the teacher's targets are made
            n = tapped.shape[1] // c.stack
            tapped = tapped[:, : n * c.stack].reshape(tapped.shape[0], n, c.stack, -1).mean(2)
        return self._stack(y), lengths // c.subsampling, tapped

    @torch.no_grad()
    def whisper_reference(self, feats: Tensor) -> Tensor:
        """Whisper's own encoder over these weights, not streaming: symmetric conv padding, full
        attention, positions from 0. (B, T, F) -> (B, ceil(T / 2), D) final states. What
        faster-whisper's `encode` computes; the reader's parity test checks it."""
        y = self.whisper_front(feats)
        y = y + self.positions[: y.shape[1]]
        everything = torch.ones(1, 1, y.shape[1], y.shape[1], dtype=torch.bool, device=y.device)
        for block in self.blocks:
            y = block(y, everything)
        return self.norm(y)

    def whisper_front(self, feats: Tensor) -> Tensor:
        """Whisper's conv front end (one frame of zero padding on each side of each conv):
        (B, T, F) -> (B, ceil(T / 2), D); state s reads frames 2s-2 .. 2s+2."""
        y = F.gelu(F.conv1d(feats.transpose(1, 2), self.conv1.weight, self.conv1.bias, padding=1))
        return F.gelu(F.conv1d(y, self.conv2.weight, self.conv2.bias, stride=2, padding=1)).transpose(1, 2)

    def front_states(self, feats: Tensor) -> Tensor:
        """The streaming front end's conv states, positions left out: (B, T, F) -> (B, T // 2, D)."""
        return self._convs(F.pad(feats, (0, 0, FEAT_CACHE, 0), value=SILENCE))

    # -- streaming --------------------------------------------------------------------------
    def initial_state(self, batch: int = 1, device: torch.device | str = "cpu") -> WhisperEncoderState:
        c = self.cfg
        kv = (batch, c.total_heads, c.left_frames, c.head_dim)
        return WhisperEncoderState(
            feat=torch.full((batch, FEAT_CACHE, c.n_mels), SILENCE, device=device),
            key=torch.zeros(kv, device=device), value=torch.zeros(kv, device=device),
            valid=torch.zeros(batch, c.left_frames, dtype=torch.bool, device=device),
            pos=torch.zeros(batch, dtype=torch.long, device=device),
        )

    def infer(self, feats: Tensor, state: WhisperEncoderState) -> tuple[Tensor, WhisperEncoderState]:
        """feats (B, 4n, F) new frames (n <= chunk_frames; only a stream's last call may be
        shorter than a chunk, so chunk boundaries fall where training's did) -> (B, n, D), state."""
        x = torch.cat([state.feat, feats], 1)
        y = self._front(x, state.pos)
        s = y.shape[1]
        keys, values, first = [], [], 0
        for i, block in enumerate(self.blocks):
            h = self.cfg.heads(i)
            y, k, v = block.infer(y, state.key[:, first : first + h], state.value[:, first : first + h], state.valid)
            keys.append(k), values.append(v)
            first += h
        ones = torch.ones(y.shape[0], s, dtype=torch.bool, device=y.device)
        new = WhisperEncoderState(
            feat=x[:, -FEAT_CACHE:], key=torch.cat(keys, 1), value=torch.cat(values, 1),
            valid=torch.cat([state.valid, ones], 1)[:, -self.cfg.left_frames :], pos=state.pos + s,
        )
        return self._stack(self.norm(y)), new


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """Whisper's position table (sin half, then cos half); the pretrained file stores the same."""
    inc = torch.log(torch.tensor(max_timescale)) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


# -- pretrained weights ------------------------------------------------------------------------
def whisper_config_from_ct2(path: str | Path, **overrides) -> WhisperEncoderConfig:
    """The encoder dimensions a CTranslate2 Whisper model.bin holds (tiny: 4 x 384, 6 heads)."""
    from models.ctranslate2_reader import read_ct2

    m = read_ct2(path, prefix="encoder/")
    t = m.tensors
    layers = sum(1 for k in t if k.endswith("self_attention/linear_1/weight"))
    d = t["encoder/conv1/weight"].shape[0]
    return WhisperEncoderConfig(
        n_mels=t["encoder/conv1/weight"].shape[1], d_model=d, n_layers=layers,
        n_heads=int(t["encoder/num_heads"]), ff_mult=t["encoder/layer_0/ffn/linear_0/weight"].shape[0] // d,
        n_positions=t["encoder/position_encodings/encodings"].shape[0], **overrides,
    )


def load_whisper_weights(encoder: StreamingWhisperEncoder, path: str | Path) -> dict[str, str]:
    """Copy a CTranslate2 Whisper model.bin's encoder into `encoder` (float16 -> float32).
    Returns {our parameter: their tensor} for provenance; refuses a shape mismatch. The stacking
    projection is new and keeps its initialisation: it starts as the mean of the two states."""
    from models.ctranslate2_reader import read_ct2

    t = read_ct2(path, prefix="encoder/").tensors
    mapping = {"conv1.weight": "conv1/weight", "conv1.bias": "conv1/bias", "conv2.weight": "conv2/weight",
               "conv2.bias": "conv2/bias", "positions": "position_encodings/encodings",
               "norm.weight": "layer_norm/gamma", "norm.bias": "layer_norm/beta"}
    for i in range(encoder.cfg.n_layers):
        ours, theirs = f"blocks.{i}.", f"layer_{i}/"
        mapping |= {
            ours + "attn_norm.weight": theirs + "self_attention/layer_norm/gamma",
            ours + "attn_norm.bias": theirs + "self_attention/layer_norm/beta",
            ours + "attn.qkv.weight": theirs + "self_attention/linear_0/weight",
            ours + "attn.qkv.bias": theirs + "self_attention/linear_0/bias",
            ours + "attn.out.weight": theirs + "self_attention/linear_1/weight",
            ours + "attn.out.bias": theirs + "self_attention/linear_1/bias",
            ours + "mlp_norm.weight": theirs + "ffn/layer_norm/gamma",
            ours + "mlp_norm.bias": theirs + "ffn/layer_norm/beta",
            ours + "mlp.0.weight": theirs + "ffn/linear_0/weight",
            ours + "mlp.0.bias": theirs + "ffn/linear_0/bias",
            ours + "mlp.2.weight": theirs + "ffn/linear_1/weight",
            ours + "mlp.2.bias": theirs + "ffn/linear_1/bias",
        }
    own = encoder.state_dict()
    with torch.no_grad():
        for name, src in mapping.items():
            value = t["encoder/" + src].float()
            if value.shape != own[name].shape:
                raise ValueError(f"{name}: shape {tuple(own[name].shape)} but {src} is {tuple(value.shape)}")
            own[name].copy_(value)
        d = encoder.cfg.d_model
        eye = torch.eye(d) / encoder.cfg.stack
        encoder.stack_proj.weight.copy_(torch.cat([eye] * encoder.cfg.stack, 1))
        encoder.stack_proj.bias.zero_()
    return {k: "encoder/" + v for k, v in mapping.items()}
