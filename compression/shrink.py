"""Structured shrinking of the Whisper encoder: fewer MLP neurons, fewer attention heads, fewer
blocks — a smaller *dense* model, which is the one kind of pruning that runs faster on this CPU
with no special kernel (shared/DESIGN.md: zeros left in dense weights give nothing).

Why magnitude of whole units: a neuron or a head is removed with every weight that reads from it
and writes to it, so its importance is the product of the norms of what goes in and what comes
out (an MLP neuron: its row of the first linear and its column of the second; a head: its rows
of q, k and v and its columns of the output projection). That is cheap, needs no data, and the
fine-tune afterwards (`minutes train asr --init-from` the shrunk model) recovers what it cost.

The result is an ordinary checkpoint: `WhisperEncoderConfig.ff_dims` / `layer_heads` record the
new sizes, so training, evaluation, the store and the server load it like any other model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from models.transducer import Transducer
from models.whisper_encoder import StreamingWhisperEncoder, WhisperBlock

__all__ = ["ShrinkSpec", "neuron_importance", "head_importance", "shrink_encoder", "shrink_transducer"]


@dataclass(frozen=True)
class ShrinkSpec:
    """What one block keeps: MLP neurons and attention heads (None = all of them)."""

    ff_keep: int | None = None
    heads_keep: int | None = None


def neuron_importance(block: WhisperBlock) -> Tensor:
    """(ff,) one score per MLP hidden neuron: |row of the first linear| * |column of the second|."""
    w1, w2 = block.mlp[0].weight, block.mlp[2].weight
    return (w1.norm(dim=1) * w2.norm(dim=0)).detach()


def head_importance(block: WhisperBlock) -> Tensor:
    """(H,) one score per head: the norms of its q, k, v rows times the norm of its output columns."""
    att = block.attn
    h = att.heads
    w = att.qkv.weight.view(3, h, -1, att.qkv.in_features)  # (3, H, dh, D)
    incoming = w.pow(2).sum(dim=(2, 3)).sqrt().prod(dim=0)  # q, k and v of the head together
    outgoing = att.out.weight.view(att.out.out_features, h, -1).pow(2).sum(dim=(0, 2)).sqrt()
    return (incoming * outgoing).detach()


def _top(scores: Tensor, keep: int) -> Tensor:
    """Indices of the `keep` best scores, in their original order (order matters for nothing,
    but sorted indices keep a shrunk layer's weights in the same layout as the original's)."""
    if not 1 <= keep <= scores.numel():
        raise ValueError(f"keep {keep} of {scores.numel()} units: must be 1..{scores.numel()}")
    return scores.topk(keep).indices.sort().values


@torch.no_grad()
def _shrink_block(src: WhisperBlock, dst: WhisperBlock, spec: ShrinkSpec) -> None:
    dst.attn_norm.load_state_dict(src.attn_norm.state_dict())
    dst.mlp_norm.load_state_dict(src.mlp_norm.state_dict())
    # MLP: keep rows of the first linear, columns of the second
    ff = src.mlp[0].out_features
    keep = _top(neuron_importance(src), ff if spec.ff_keep is None else spec.ff_keep)
    dst.mlp[0].weight.copy_(src.mlp[0].weight[keep])
    dst.mlp[0].bias.copy_(src.mlp[0].bias[keep])
    dst.mlp[2].weight.copy_(src.mlp[2].weight[:, keep])
    dst.mlp[2].bias.copy_(src.mlp[2].bias)
    # attention: keep whole heads in q, k, v (rows) and in the output projection (columns)
    h = src.attn.heads
    heads = _top(head_importance(src), h if spec.heads_keep is None else spec.heads_keep)
    d = src.attn.qkv.in_features
    w = src.attn.qkv.weight.view(3, h, -1, d)[:, heads]
    b = src.attn.qkv.bias.view(3, h, -1)[:, heads]
    dst.attn.qkv.weight.copy_(w.reshape(-1, d))
    dst.attn.qkv.bias.copy_(b.reshape(-1))
    dst.attn.out.weight.copy_(src.attn.out.weight.view(d, h, -1)[:, heads].reshape(d, -1))
    dst.attn.out.bias.copy_(src.attn.out.bias)


def shrink_encoder(encoder: StreamingWhisperEncoder, specs: list[ShrinkSpec],
                   keep_layers: list[int] | None = None) -> StreamingWhisperEncoder:
    """A new, smaller encoder: `keep_layers` (indices into the original's blocks; None = all)
    each shrunk by its `specs` entry (one per kept block). The front end, positions, final norm
    and stacking projection are copied unchanged."""
    cfg = encoder.cfg
    keep_layers = list(range(cfg.n_layers)) if keep_layers is None else list(keep_layers)
    if len(specs) != len(keep_layers):
        raise ValueError(f"{len(specs)} shrink specs for {len(keep_layers)} kept blocks")
    if not keep_layers or any(not 0 <= i < cfg.n_layers for i in keep_layers):
        raise ValueError(f"keep_layers {keep_layers} must name blocks 0..{cfg.n_layers - 1}")
    src_blocks = [encoder.blocks[i] for i in keep_layers]
    new_cfg = copy.deepcopy(cfg)
    new_cfg.n_layers = len(keep_layers)
    new_cfg.ff_dims = [b.mlp[0].out_features if s.ff_keep is None else s.ff_keep for s, b in zip(specs, src_blocks)]
    new_cfg.layer_heads = [b.attn.heads if s.heads_keep is None else s.heads_keep for s, b in zip(specs, src_blocks)]
    new_cfg.__post_init__()
    for s, b in zip(specs, src_blocks):  # refuse before building layers of width 0
        _top(neuron_importance(b), b.mlp[0].out_features if s.ff_keep is None else s.ff_keep)
        _top(head_importance(b), b.attn.heads if s.heads_keep is None else s.heads_keep)
    out = StreamingWhisperEncoder(new_cfg)
    shared = {k: v for k, v in encoder.state_dict().items() if not k.startswith("blocks.")}
    out.load_state_dict(shared, strict=False)
    for src, dst, spec in zip(src_blocks, out.blocks, specs):
        _shrink_block(src, dst, spec)
    return out.train(encoder.training)


def shrink_transducer(model: Transducer, specs: list[ShrinkSpec],
                      keep_layers: list[int] | None = None) -> Transducer:
    """A copy of `model` with its Whisper encoder shrunk (predictor, joiner, heads unchanged).
    A distillation head reading a removed block is re-pointed at the last kept block."""
    if not isinstance(model.encoder, StreamingWhisperEncoder):
        raise TypeError("structured shrinking is implemented for the Whisper encoder")
    out = copy.deepcopy(model)
    out.encoder = shrink_encoder(model.encoder, specs, keep_layers)
    out.cfg = copy.deepcopy(model.cfg)
    out.cfg.encoder = out.encoder.cfg
    if out.cfg.distill_layer > out.encoder.cfg.n_layers:
        out.cfg.distill_layer = 0
    return out
