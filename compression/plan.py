"""A pruning plan: per layer, which scheme and how much — the file `minutes prune --plan` applies.

Why a file: the mapping (rule-based, or searched under a latency budget; compression/mapping.py)
is expensive to find and cheap to apply, and the store seals the plan beside the weights it made,
so a variant says exactly how it was pruned. JSON is written; JSON or TOML is read.

Two kinds of entry, applied in this order:
- `shrink` / `keep_layers`: structured shrinking of the Whisper encoder (compression/shrink.py):
  whole blocks, heads and MLP neurons removed, so the dense layers get physically smaller;
- `layers`: masks on single weights by parameter name (any layer type: linear, conv, LSTM
  gates, joiner), scheme "unstructured", "block_col" or "block_row" (compression/masks.py),
  kept during fine-tuning (training/sparse.py) and packed for speed at load
  (compression/compile.py) where the scheme has a kernel.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from compression.masks import SCHEMES, mask_for
from compression.shrink import ShrinkSpec, shrink_transducer

__all__ = ["LayerPlan", "PrunePlan", "apply_plan", "plan_sparsity"]


@dataclass(frozen=True)
class LayerPlan:
    scheme: str = "dense"
    sparsity: float = 0.0
    block: int = 32

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {self.scheme!r} (known: {', '.join(SCHEMES)})")
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), not {self.sparsity}")
        if self.block < 1:
            raise ValueError(f"block must be positive, not {self.block}")


@dataclass
class PrunePlan:
    base: str = ""  # the store version or checkpoint it was made for
    mapping: str = "manual"  # "uniform", "rule", "search" or "manual": how it was chosen
    runtime: str = "torch"  # what the variant should run under (compression/onnx_encoder.py)
    keep_layers: list[int] | None = None  # encoder blocks kept (None = all)
    shrink: list[ShrinkSpec] = field(default_factory=list)  # one per kept block ([] = none)
    layers: dict[str, LayerPlan] = field(default_factory=dict)  # parameter name -> masks
    notes: dict[str, Any] = field(default_factory=dict)  # what the mapping measured, for people

    # -- files ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shrink"] = [{k: v for k, v in s.items() if v is not None} for s in d["shrink"]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PrunePlan":
        d = dict(d)
        unknown = set(d) - {"base", "mapping", "runtime", "keep_layers", "shrink", "layers", "notes"}
        if unknown:
            raise ValueError(f"unknown plan keys {sorted(unknown)}")
        d["shrink"] = [ShrinkSpec(**s) for s in d.get("shrink", [])]
        d["layers"] = {k: LayerPlan(**v) for k, v in d.get("layers", {}).items()}
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "PrunePlan":
        path = Path(path)
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        return cls.from_dict(data)


def apply_plan(model: nn.Module, plan: PrunePlan) -> tuple[nn.Module, dict[str, Tensor]]:
    """(pruned copy of `model`, {parameter name: mask}). Shrinking first, then every masked
    weight zeroed where its mask is 0 (masks by magnitude on the shrunk weights). Fine-tune with
    the masks held (training/sparse.py), then pack (compression/compile.py)."""
    if plan.shrink or plan.keep_layers is not None:
        n = len(plan.keep_layers) if plan.keep_layers is not None else model.cfg.encoder.n_layers
        specs = plan.shrink or [ShrinkSpec()] * n
        model = shrink_transducer(model, specs, plan.keep_layers)
    else:
        import copy

        model = copy.deepcopy(model)
    params = dict(model.named_parameters())
    masks: dict[str, Tensor] = {}
    with torch.no_grad():
        for name, lp in plan.layers.items():
            if name not in params:
                raise KeyError(f"the plan prunes {name!r}, which the model does not have")
            if lp.scheme == "dense" or lp.sparsity == 0.0:
                continue
            mask = mask_for(params[name], lp.scheme, lp.sparsity, lp.block)
            params[name].mul_(mask)
            masks[name] = mask
    return model, masks


def plan_sparsity(model: nn.Module, parent: nn.Module, part: str = "encoder") -> float:
    """Share of `parent`'s weight-matrix entries in `part` that `model` no longer has or holds
    at zero (what the store's `sparsity` records)."""
    def weights(m: nn.Module) -> list[Tensor]:
        sub = getattr(m, part)
        sub = getattr(sub, "torch_encoder", sub)
        return [p for p in sub.parameters() if p.dim() > 1]

    total = sum(p.numel() for p in weights(parent))
    nonzero = sum(int((p != 0).sum()) for p in weights(model))
    return round(1.0 - nonzero / total, 4)
