"""Packed block-sparse linear layers: what a block-pruned weight is compiled into so that its
zeros cost nothing (shared/DESIGN.md: zeros in a dense weight give no speed on this CPU, torch's
BSR pays only at >= 90 % sparsity, MKL refuses thin blocks).

`BlockColumnLinear` (masks from `masks.block_column_mask`): the output rows come in blocks of
`block`; block b reads only its kept input columns `cols[b]` (the same count k for every block),
so the layer is one gather of the input and one batched matmul:

    x (N, in) -> x.T[cols] (blocks, k, N) -> W_b (block, k) @ . -> (blocks, block, N) -> (N, out)

`BlockRowLinear` (masks from `masks.block_row_mask`): the input columns come in blocks; block b
writes only its kept output rows `rows[b]`, so the layer is a batched matmul of contiguous input
slices and a scatter-add of the partial outputs.

Both are plain torch ops (index_select, bmm, index_add), so they also export to ONNX and run
under onnxruntime. Whether either beats the dense layer depends on shape, sparsity and batch:
`compression/latency.py` measures it, and the scheme mapping only picks what was measured faster.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from compression.masks import as_matrix

__all__ = ["BlockColumnLinear", "BlockRowLinear", "pack_linear"]


class BlockColumnLinear(nn.Module):
    def __init__(self, weight: Tensor, mask: Tensor, bias: Tensor | None, block: int) -> None:
        super().__init__()
        w, m = as_matrix(weight.detach()), as_matrix(mask.detach()).bool()
        out, inp = w.shape
        blocks = out // block
        kept = m.view(blocks, block, inp)[:, 0, :]  # the column pattern of each block
        k = int(kept[0].sum())
        if out % block or bool((kept.sum(1) != k).any()) or bool((m.view(blocks, block, inp) != kept[:, None]).any()):
            raise ValueError("the mask is not block-column structured with equal columns per block")
        cols = kept.nonzero()[:, 1].view(blocks, k)
        self.in_features, self.out_features, self.block = inp, out, block
        self.register_buffer("cols", cols.reshape(-1).contiguous())
        packed = torch.gather(w.view(blocks, block, inp), 2, cols[:, None, :].expand(-1, block, -1))
        self.register_buffer("weight", packed.contiguous())  # (blocks, block, k)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        xt = x.reshape(-1, self.in_features).t()  # (in, N)
        g = xt.index_select(0, self.cols).view(self.weight.shape[0], self.weight.shape[2], -1)  # (blocks, k, N)
        y = torch.bmm(self.weight, g).reshape(self.out_features, -1).t()  # (N, out)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)


class BlockRowLinear(nn.Module):
    def __init__(self, weight: Tensor, mask: Tensor, bias: Tensor | None, block: int) -> None:
        super().__init__()
        w, m = as_matrix(weight.detach()), as_matrix(mask.detach()).bool()
        out, inp = w.shape
        blocks = inp // block
        kept = m.view(out, blocks, block)[:, :, 0].t()  # (blocks, out): the row pattern of each block
        k = int(kept[0].sum())
        if inp % block or bool((kept.sum(1) != k).any()) or bool((m.view(out, blocks, block) != kept.t()[:, :, None]).any()):
            raise ValueError("the mask is not block-row structured with equal rows per block")
        rows = kept.nonzero()[:, 1].view(blocks, k)
        self.in_features, self.out_features, self.block = inp, out, block
        self.register_buffer("rows", rows.reshape(-1).contiguous())
        wb = w.view(out, blocks, block).permute(1, 0, 2)  # (blocks, out, block)
        packed = torch.gather(wb, 1, rows[:, :, None].expand(-1, -1, block))  # (blocks, k, block)
        self.register_buffer("weight", packed.contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        blocks, k, block = self.weight.shape
        xt = x.reshape(-1, self.in_features).t().reshape(blocks, block, -1)  # (blocks, block, N)
        part = torch.bmm(self.weight, xt).reshape(blocks * k, -1)  # (blocks * k, N)
        y = torch.zeros(self.out_features, part.shape[1], dtype=x.dtype, device=x.device)
        y = y.index_add(0, self.rows, part).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)


def pack_linear(linear: nn.Linear, mask: Tensor, scheme: str, block: int) -> nn.Module:
    """The packed module for a block-pruned linear layer (masked weights are what it computes)."""
    if scheme == "block_col":
        return BlockColumnLinear(linear.weight, mask, linear.bias, block)
    if scheme == "block_row":
        return BlockRowLinear(linear.weight, mask, linear.bias, block)
    raise ValueError(f"no packed kernel for scheme {scheme!r}")
