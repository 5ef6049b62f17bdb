"""Dynamic int8 quantisation of a transducer's linear layers, applied when a model loads.

Why dynamic: weights become int8 once (per tensor), activations are quantised per call, so no
calibration set is needed and nothing about training changes; on this machine's x86 CPU the
int8 GEMMs (fbgemm) make the Whisper encoder's 384-wide layers ~1.5x faster per stream
(`bench/results/quantise_greedy.md`, `quantise_beam.md`: float and int8 timed in one run on
the same audio).

Why at load time and not in the stored file: the store keeps one float16 `model.pt`; its
manifest's `compression` says which modules the server quantises (`{"int8_dynamic":
["encoder"]}`), so the float model stays one flag away for comparison and for the tests that
check streaming against the full forward.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["INT8_DYNAMIC", "PLAN", "RUNTIME", "quantise_int8", "apply_compression", "is_quantised"]

INT8_DYNAMIC = "int8_dynamic"  # the manifest's `compression` key: a list of top-level module names


def quantise_int8(model: nn.Module, modules: Sequence[str] = ("encoder",)) -> nn.Module:
    """Replace every `nn.Linear` inside the named submodules of `model` by its dynamically
    quantised int8 twin (in place; returns `model`). Inference only: the result has no
    gradients to train."""
    from torch.ao.quantization import quantize_dynamic  # deprecated upstream for torchao; pinned torch keeps it

    for name in modules:
        sub = getattr(model, name, None)
        if not isinstance(sub, nn.Module):
            raise ValueError(f"{INT8_DYNAMIC}: the model has no module {name!r}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the torch.ao deprecation notice, once per module
            setattr(model, name, quantize_dynamic(sub, {nn.Linear}, dtype=torch.qint8))
    return model


def is_quantised(module: nn.Module) -> bool:
    """Whether any linear layer inside `module` runs in int8."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    return any(isinstance(m, QLinear) for m in module.modules())


PLAN = "plan"  # the manifest's `compression` key: the pruning plan (compression/plan.py) the weights were made by
RUNTIME = "runtime"  # the manifest's `compression` key: "torch", "onnxruntime" or "onnxruntime-int8"


def apply_compression(model: nn.Module, compression: dict[str, Any] | None) -> nn.Module:
    """What a store manifest's `compression` asks to be done at load time: int8 torch layers,
    or the streaming encoder run by onnxruntime (compression/onnx_encoder.py). Other keys are
    recipes recorded for people and need nothing here. A pruned model's shrunk layers are
    already in its checkpoint; its block-pruned layers are packed from its `plan`."""
    compression = compression or {}
    modules = compression.get(INT8_DYNAMIC)
    if modules:
        quantise_int8(model, modules)
    runtime = compression.get(RUNTIME, "torch")
    if compression.get(PLAN):  # block-pruned layers packed so their zeros are never read
        from compression.compile import pack_model
        from compression.plan import PrunePlan

        pack_model(model, PrunePlan.from_dict(compression[PLAN]), runtime)
    if runtime != "torch":
        from compression.onnx_encoder import RUNTIMES, use_onnx_encoder

        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r} in the manifest (known: {', '.join(RUNTIMES)})")
        use_onnx_encoder(model, int8=runtime.endswith("int8"))
    return model
