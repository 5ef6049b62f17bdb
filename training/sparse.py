"""Sparse fine-tuning: the masks of a pruning plan held through training, statically or with
MEST's prune-and-grow (arXiv 2110.14032).

Why masks are re-applied after every optimiser step rather than built into the layers: the
model stays a plain module (the EMA, checkpoints, evaluation and export see ordinary weights
that happen to be zero), and AdamW's update of a masked weight is simply undone.

Units. A mask is changed in units that keep it valid for its kernel (compression/masks.py):
- "unstructured": single weights, one group (the whole tensor);
- "block_col": a column inside a block of rows; each block is a group and keeps its count, so
  every block still keeps the same number of columns (the packed kernel needs that);
- "block_row": a row inside a block of columns, likewise.

MEST, as here:
- the target sparsity holds from the first step (the plan's masks, by magnitude);
- every `interval` updates until `end` of the run, a fraction `rate` of each group's kept units
  is mutated: the weakest by |w| + `grad_weight` x |grad| (each over its layer mean) are dropped and as many dropped units
  regrow at random, starting at zero (random growth needs no dense gradient: memory-economic);
- elastic mutation: the rate decays linearly from `rate` to 0 at `end`;
- soft memory bound: with `soft_bound`, units grow first and the prune waits `interval // 2`
  updates, so grown units are judged after training, not at zero; memory exceeds the bound by
  the grown units in between.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from compression.plan import LayerPlan, PrunePlan

__all__ = ["SparseConfig", "MaskKeeper"]


@dataclass
class SparseConfig:
    method: str = "static"  # "static" (masks fixed) or "mest"
    interval: int = 100  # updates between mutations
    rate: float = 0.1  # fraction of each group's kept units mutated at the first mutation
    end: int = 1000  # updates (from the start of sparse training) after which masks stay fixed
    soft_bound: bool = True
    grad_weight: float = 0.0  # importance: |w| / mean + this * |grad| / mean (per layer, over kept units)

    def __post_init__(self) -> None:
        if self.method not in ("static", "mest"):
            raise ValueError(f"sparse method must be 'static' or 'mest', not {self.method!r}")


def _units(x: Tensor, lp: LayerPlan) -> Tensor:
    """(groups, units, members): the mask or weight seen as the plan's mutation units."""
    m = x.reshape(x.shape[0], -1)
    out, inp = m.shape
    if lp.scheme == "block_col":  # group = block of rows, unit = column, members = the block's rows
        return m.view(out // lp.block, lp.block, inp).transpose(1, 2)
    if lp.scheme == "block_row":  # group = block of columns, unit = row
        return m.view(out, inp // lp.block, lp.block).transpose(0, 1)
    return m.reshape(1, -1, 1)  # unstructured: one group of single weights


def _from_units(u: Tensor, like: Tensor, lp: LayerPlan) -> Tensor:
    out = like.shape[0]
    if lp.scheme == "block_col":
        return u.transpose(1, 2).reshape(like.shape)
    if lp.scheme == "block_row":
        return u.transpose(0, 1).reshape(out, -1).reshape(like.shape)
    return u.reshape(like.shape)


class MaskKeeper:
    """Holds masks on a model's parameters; `enforce` after each optimiser step, `step` for MEST."""

    def __init__(self, model: nn.Module, masks: dict[str, Tensor], layers: dict[str, LayerPlan],
                 cfg: SparseConfig | None = None, seed: int = 0, plan: "PrunePlan | None" = None) -> None:
        self.params = dict(model.named_parameters())
        missing = set(masks) - set(self.params)
        if missing:
            raise KeyError(f"masks for parameters the model lacks: {sorted(missing)}")
        self.masks = {k: v.to(self.params[k].device, self.params[k].dtype) for k, v in masks.items()}
        self.layers = layers
        self.plan = plan  # the plan the masks came from: checkpoints carry it
        self.cfg = cfg or SparseConfig()
        self.rng = random.Random(seed)
        self.updates = 0
        self.pending: dict[str, int] = {}  # soft bound: units per group to keep when the delayed prune comes
        self.before: dict[str, Tensor] = {}  # soft bound: the masks before the growth
        self.enforce()

    # -- every update -----------------------------------------------------------------------
    @torch.no_grad()
    def enforce(self) -> None:
        for name, mask in self.masks.items():
            self.params[name].mul_(mask)

    @torch.no_grad()
    def enforce_on(self, other: nn.Module) -> None:
        """The masks applied to another copy of the model (the weight average)."""
        params = dict(other.named_parameters())
        for name, mask in self.masks.items():
            params[name].mul_(mask)

    def after_update(self) -> dict[str, float]:
        """Call after each optimiser step: masks re-applied, MEST mutations on schedule."""
        self.updates += 1
        stats: dict[str, float] = {}
        c = self.cfg
        if c.method == "mest":
            if self.pending and self.updates % c.interval == max(1, c.interval // 2):
                stats |= self._prune_pending()
            if self.updates % c.interval == 0 and self.updates <= c.end:
                stats |= self._mutate()
        self.enforce()
        return stats

    def rate_now(self) -> float:
        """Elastic mutation: linear decay from `rate` to 0 at `end`."""
        return self.cfg.rate * max(0.0, 1.0 - self.updates / max(1, self.cfg.end))

    # -- MEST -------------------------------------------------------------------------------
    def _kept_units(self, name: str) -> Tensor:
        """(groups, units) 1 where the unit is kept."""
        return _units(self.masks[name], self.layers[name])[:, :, 0]

    def _set_units(self, name: str, units: Tensor) -> None:
        mask, lp = self.masks[name], self.layers[name]
        full = _units(torch.empty_like(mask), lp)
        self.masks[name] = _from_units(units[:, :, None].expand_as(full), mask, lp).contiguous()

    @torch.no_grad()
    def _mutate(self) -> dict[str, float]:
        """Drop the weakest `rate_now` of each group's kept units and regrow as many at random;
        with the soft bound the growth comes first and the drop `interval // 2` updates later."""
        rate, changed = self.rate_now(), 0
        for name in self.masks:
            kept = int(self._kept_units(name)[0].sum())
            n = int(math.floor(rate * kept))
            if n == 0:
                continue
            if self.cfg.soft_bound:
                self.before[name] = self.masks[name].clone()
                self._grow(name, n)
                self.pending[name] = kept
            else:
                self._prune_to(name, kept - n)
                self._grow(name, n)
            changed += n * self._kept_units(name).shape[0]
        return {"mest_mutated": float(changed), "mest_rate": rate}

    @torch.no_grad()
    def _grow(self, name: str, n: int) -> None:
        """`n` random dropped units per group come back, their weights at zero."""
        u = self._kept_units(name)
        new = u.clone()
        gen = torch.Generator().manual_seed(self.rng.randrange(1 << 30))
        for g in range(u.shape[0]):
            free = (u[g] == 0).nonzero().flatten()
            new[g, free[torch.randperm(free.numel(), generator=gen)[:n]]] = 1.0
        old = self.masks[name]
        self._set_units(name, new)
        self.params[name][self.masks[name] > old] = 0.0

    @torch.no_grad()
    def _prune_to(self, name: str, keep: int) -> None:
        """Each group keeps its `keep` strongest kept units. Strength: the unit's weight norm over
        the layer's mean, plus `grad_weight` x its gradient norm over the layer's mean. Why the
        gradient: a unit regrown at zero cannot win on magnitude within a few fine-tuning updates
        (a pretrained weight is ~100 updates of size away), so without it MEST is a static mask."""
        lp, w = self.layers[name], self.params[name]
        kept = self._kept_units(name) > 0
        score = _units(w * self.masks[name], lp).pow(2).sum(2).sqrt()
        score = score / score[kept].mean().clamp(min=1e-12)
        if self.cfg.grad_weight and w.grad is not None:
            g = _units(w.grad, lp).pow(2).sum(2).sqrt()
            score = score + self.cfg.grad_weight * g / g[kept].mean().clamp(min=1e-12)
        score = score.masked_fill(~kept, -1.0)  # dropped units never win
        new = torch.zeros_like(score).scatter_(1, score.topk(keep, dim=1).indices, 1.0)
        self._set_units(name, new)

    def _prune_pending(self) -> dict[str, float]:
        """The soft bound's delayed prune; reports the share of kept weights that changed (grown
        units that earned a place over ones kept before)."""
        moved = total = 0
        for name, keep in self.pending.items():
            self._prune_to(name, keep)
            moved += int((self.masks[name] > self.before[name]).sum())
            total += int(self.masks[name].sum())
        self.pending, self.before = {}, {}
        self.enforce()
        return {"mest_turnover": moved / max(1, total)}

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"masks": {k: v.bool().cpu() for k, v in self.masks.items()}, "updates": self.updates,
                "pending": self.pending, "before": {k: v.bool().cpu() for k, v in self.before.items()},
                "rng": self.rng.getstate()}

    def load_state_dict(self, d: dict) -> None:
        self.masks = {k: v.to(self.params[k].device, self.params[k].dtype) for k, v in d["masks"].items()}
        self.updates, self.pending = d["updates"], d.get("pending", {})
        self.before = {k: v.to(self.masks[k].dtype) for k, v in d.get("before", {}).items()}
        self.rng.setstate(d["rng"])
        self.enforce()

    def sparsity(self) -> float:
        """Share of the masked weights' entries held at zero (0 when nothing is masked)."""
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - sum(float(m.sum()) for m in self.masks.values()) / total if total else 0.0
