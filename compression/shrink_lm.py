"""Structured shrinking of the external LSTM LM: keep the most useful hidden units.

Why: once the encoder runs in int8 the beam search is most of the CPU time, and the LM's
recurrent matrix is its largest read per step (hidden 512: 512 x 2048 weights for every
hypothesis that emitted, 3.2 ms a step in float on this CPU). Halving the hidden size quarters
that matrix. Zeros would give nothing on a CPU (DESIGN.md), so units are cut out: a unit is one
row in each of the four gate blocks of `weight_ih`/`weight_hh`/biases, one column of `weight_hh`
(its output fed back) and one column of the output layer. The shrunk LM is then fine-tuned by
distillation from the full one (`minutes train lm --init-from SHRUNK --teacher FULL`).

Importance of unit j: E|h_j| over real text x (||W_out[:, j]|| + ||W_hh[:, j]||), i.e. how much
the unit's typical output moves the next-token logits and the next step's gates. Units that
are rarely active or whose outputs nothing reads go first.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from models.lm import LMConfig, TokenLM

__all__ = ["unit_importance", "shrink_lm"]


@torch.no_grad()
def unit_importance(lm: TokenLM, sentences: list[list[int]], batch: int = 128) -> torch.Tensor:
    """(H,) importance of each hidden unit of a one-layer LM, from its activations on `sentences`
    (lists of the LM's piece ids)."""
    if lm.config.num_layers != 1:
        raise ValueError("shrink_lm handles one-layer LMs (the served LM has one)")
    lm.eval()
    total = torch.zeros(lm.config.hidden_dim)
    count = 0
    for i in range(0, len(sentences), batch):
        seqs = sentences[i : i + batch]
        lens = torch.tensor([len(s) + 1 for s in seqs])
        x = torch.full((len(seqs), int(lens.max())), lm.config.bos_eos, dtype=torch.long)
        for r, s in enumerate(seqs):
            x[r, 1 : len(s) + 1] = torch.tensor(s, dtype=torch.long)
        h, _ = lm.lstm(lm.embed(x))
        mask = (torch.arange(x.shape[1]).unsqueeze(0) < lens.unsqueeze(1)).unsqueeze(-1)
        total += (h.abs() * mask).sum((0, 1))
        count += int(lens.sum())
    mean_abs = total / max(count, 1)
    reads = lm.out.weight.norm(dim=0) + lm.lstm.weight_hh_l0.norm(dim=0)
    return mean_abs * reads


@torch.no_grad()
def shrink_lm(lm: TokenLM, hidden: int, importance: torch.Tensor) -> TokenLM:
    """A new LM with the `hidden` most important units of `lm` (weights copied, in their order)."""
    H = lm.config.hidden_dim
    if not 0 < hidden <= H:
        raise ValueError(f"hidden must be in 1..{H}, got {hidden}")
    keep = importance.topk(hidden).indices.sort().values
    gate_rows = torch.cat([keep + g * H for g in range(4)])  # input, forget, cell, output blocks
    small = TokenLM(replace(lm.config, hidden_dim=hidden))
    src, dst = lm.lstm, small.lstm
    small.embed.weight.copy_(lm.embed.weight)
    dst.weight_ih_l0.copy_(src.weight_ih_l0[gate_rows])
    dst.weight_hh_l0.copy_(src.weight_hh_l0[gate_rows][:, keep])
    dst.bias_ih_l0.copy_(src.bias_ih_l0[gate_rows])
    dst.bias_hh_l0.copy_(src.bias_hh_l0[gate_rows])
    small.out.weight.copy_(lm.out.weight[:, keep])
    small.out.bias.copy_(lm.out.bias)
    return small.eval()

