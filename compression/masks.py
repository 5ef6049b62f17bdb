"""Pruning masks for one weight matrix: unstructured, block-based (2111.11581) and whole units.

Every mask is chosen by magnitude and has the weight's shape (1 = kept). A 2-D view is used
for every layer type: a Linear's (out, in); a Conv1d's (out, in * kernel); an LSTMCell's
`weight_ih`/`weight_hh` (4 * hidden, in), whose four gates are pruned alike because they are rows.

Block-based pruning, as the kernel in `compression/block_sparse.py` needs it: the rows are cut
into blocks of `block` consecutive rows, and inside each block the same number of whole columns
is kept (the block's strongest columns by L2 norm over its rows). So each block is a small dense
matrix over a gathered subset of the input: a gather and one batched matmul run it, with no
per-element indexing. "block_row" is the transpose (blocks of columns, rows kept inside them).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["SCHEMES", "as_matrix", "unstructured_mask", "block_column_mask", "block_row_mask", "mask_for",
           "kept_per_block"]

SCHEMES = ("dense", "unstructured", "block_col", "block_row")


def as_matrix(weight: Tensor) -> Tensor:
    """The 2-D view masks are computed on: (out, everything else)."""
    return weight.reshape(weight.shape[0], -1)


def kept_per_block(columns: int, sparsity: float) -> int:
    """Columns each block keeps at `sparsity` (at least one)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), not {sparsity}")
    return max(1, int(round(columns * (1.0 - sparsity))))


def unstructured_mask(weight: Tensor, sparsity: float) -> Tensor:
    """Keep the largest |w|, `sparsity` of the entries zeroed (ties broken by position)."""
    w = weight.detach().abs().flatten()
    drop = int(math.floor(w.numel() * sparsity))
    mask = torch.ones_like(w)
    if drop:
        mask[w.argsort()[:drop]] = 0.0
    return mask.view_as(weight)


def block_column_mask(weight: Tensor, sparsity: float, block: int) -> Tensor:
    """Blocks of `block` rows; each keeps its `kept_per_block` strongest columns."""
    m = as_matrix(weight.detach())
    rows, cols = m.shape
    if rows % block:
        raise ValueError(f"{rows} rows do not split into blocks of {block}")
    keep = kept_per_block(cols, sparsity)
    scores = m.view(rows // block, block, cols).pow(2).sum(1)  # (blocks, cols)
    idx = scores.topk(keep, dim=1).indices
    mask = torch.zeros(rows // block, cols, dtype=m.dtype, device=m.device).scatter_(1, idx, 1.0)
    return mask[:, None, :].expand(-1, block, -1).reshape(rows, cols).view_as(weight).contiguous()


def block_row_mask(weight: Tensor, sparsity: float, block: int) -> Tensor:
    """Blocks of `block` columns; each keeps its strongest rows (the transpose of block_col)."""
    m = as_matrix(weight.detach())
    return block_column_mask(m.t().contiguous(), sparsity, block).t().reshape(weight.shape).contiguous()


def mask_for(weight: Tensor, scheme: str, sparsity: float, block: int = 32) -> Tensor:
    """The mask a plan entry asks for ("dense" or sparsity 0: all ones)."""
    if scheme == "dense" or sparsity == 0.0:
        return torch.ones_like(weight)
    if scheme == "unstructured":
        return unstructured_mask(weight, sparsity)
    if scheme == "block_col":
        return block_column_mask(weight, sparsity, block)
    if scheme == "block_row":
        return block_row_mask(weight, sparsity, block)
    raise ValueError(f"unknown pruning scheme {scheme!r} (known: {', '.join(SCHEMES)})")
