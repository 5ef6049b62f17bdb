"""The "compiler": a pruned model into what actually runs faster on this CPU.

- Shrunk layers need nothing: the checkpoint already holds the smaller dense layers.
- Block-pruned linear layers are packed (compression/block_sparse.py): their kept weights
  gathered into small dense blocks, so their zeros are never read. The masks are recomputed
  from the stored weights with the plan's own rule (per block, the strongest columns): pruned
  units are exactly zero, so the same units are chosen again and nothing else has to be stored.
- Unstructured masks stay in the dense weights: no kernel here runs them faster (they are kept
  for accuracy studies and for MEST, and the latency table says so).

The runtime (torch or onnxruntime, compression/onnx_encoder.py) is applied after packing;
block-row layers have no ONNX export (their scatter-add), so under onnxruntime they run as the
dense layer with zeros, which is also what the latency table recorded for them.
"""

from __future__ import annotations

from torch import nn

from compression.block_sparse import pack_linear
from compression.masks import mask_for
from compression.plan import PrunePlan

__all__ = ["pack_model"]


def pack_model(model: nn.Module, plan: PrunePlan, runtime: str = "torch") -> list[str]:
    """Replace every block-pruned nn.Linear of `model` by its packed twin (in place); returns
    the parameter names packed. Layers the runtime cannot run packed are left dense."""
    packed = []
    for name, lp in plan.layers.items():
        if lp.scheme not in ("block_col", "block_row") or lp.sparsity == 0.0:
            continue
        if lp.scheme == "block_row" and runtime != "torch":
            continue
        parent_path, _, leaf = name.removesuffix(".weight").rpartition(".")
        parent = model.get_submodule(parent_path)
        linear = parent.get_submodule(leaf)
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"{name}: block packing is for linear layers, not {type(linear).__name__}")
        module = pack_linear(linear, mask_for(linear.weight, lp.scheme, lp.sparsity, lp.block), lp.scheme, lp.block)
        setattr(parent, leaf, module)  # a Sequential's children are named "0", "1", ... too
        packed.append(name)
    return packed
