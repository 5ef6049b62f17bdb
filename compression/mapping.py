"""Which pruning scheme each layer gets: a rule-based mapping (by layer type and shape) and the
measured speed that both it and the search (compression/search.py) decide with.

The rule (2111.11581's observation, checked against this CPU's latency table):
- the MLP's two linears hold two thirds of a block's weights and time, and tolerate pruning
  best: they get the target sparsity;
- attention projections (q/k/v, output) get half of it: every head's keys feed every frame;
- the conv front end, the stacking projection, the predictor, joiner and heads stay dense:
  a small share of the time, and what every output depends on;
- for each pruned layer, the block scheme and size that the latency table measured fastest at
  that sparsity for the plan's runtime and batch; a layer whose best pruned kernel is not
  faster than its dense one stays dense (zeros that buy nothing only cost accuracy).
"""

from __future__ import annotations

import re

from torch import nn

from compression.latency import BLOCKS, SPARSITIES, LatencyTable, linear_shapes
from compression.plan import LayerPlan, PrunePlan

__all__ = ["layer_role", "best_block_scheme", "rule_plan", "uniform_shrink_plan"]

ROLES = {
    r"encoder\.blocks\.\d+\.mlp\.\d+\.weight": "mlp",
    r"encoder\.blocks\.\d+\.attn\.(qkv|out)\.weight": "attention",
}


def layer_role(name: str) -> str:
    """"mlp", "attention" or "other" for a parameter name."""
    for pattern, role in ROLES.items():
        if re.fullmatch(pattern, name):
            return role
    return "other"


def _nearest(sparsity: float) -> float:
    return min(SPARSITIES, key=lambda s: abs(s - sparsity))


def best_block_scheme(table: LatencyTable, shape: tuple[int, int], sparsity: float, rows: int,
                      runtime: str) -> tuple[LayerPlan, float]:
    """The fastest measured block scheme for `shape` at `sparsity` (snapped to the table's grid),
    with its speed-up over dense; dense (speed-up 1) when nothing pruned is faster."""
    rt = "torch" if runtime == "torch" else "onnxruntime"  # int8 is applied after: rank in float
    sp = _nearest(sparsity)
    best, best_speed = LayerPlan(), 1.0
    for scheme in ("block_col", "block_row"):
        for block in BLOCKS:
            speed = table.speedup(shape, scheme, sp, block, rows, rt)
            if speed is not None and speed > best_speed:
                best, best_speed = LayerPlan(scheme, sp, block), speed
    return best, best_speed


def rule_plan(model: nn.Module, table: LatencyTable, target: float = 0.75, runtime: str = "onnxruntime",
              rows: int = 16, base: str = "") -> PrunePlan:
    """The rule-based mapping at `target` sparsity of the MLPs (attention at half of it)."""
    plan = PrunePlan(base=base, mapping="rule", runtime=runtime,
                     notes={"target": target, "rows": rows, "speedups": {}})
    for name, shape in linear_shapes(model).items():
        role = layer_role(name)
        if role == "other":
            continue
        lp, speed = best_block_scheme(table, shape, target if role == "mlp" else target / 2, rows, runtime)
        if lp.scheme != "dense":
            plan.layers[name] = lp
            plan.notes["speedups"][name] = round(speed, 2)
    return plan


def uniform_shrink_plan(model: nn.Module, ff_keep: float = 0.5, heads_keep: int | None = None,
                        runtime: str = "onnxruntime", base: str = "") -> PrunePlan:
    """Uniform structured pruning: every block keeps the same share of MLP neurons and heads."""
    from compression.shrink import ShrinkSpec

    enc = model.cfg.encoder
    specs = [ShrinkSpec(int(round(enc.ff_dim(i) * ff_keep)), heads_keep) for i in range(enc.n_layers)]
    return PrunePlan(base=base, mapping="uniform", runtime=runtime, shrink=specs,
                     notes={"ff_keep": ff_keep, "heads_keep": heads_keep})
