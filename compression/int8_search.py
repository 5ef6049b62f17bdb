"""Int8 weights for the search's own layers: the external LM's and the predictor's recurrent
matrices, the LM's output layer, and the joiner's predictor projection and output layer.

Why: once the encoder runs in onnxruntime int8, the beam search is most of the CPU time, and
its matrix products are small (8 hypotheses x 512) and bound by reading weights from memory: the
LM's 512 x 2048 recurrent matrix took 3.2 ms per step in float and 0.75 ms in int8 on this
machine (bench/results/compression.md). fbgemm's dynamic int8 linear quarters the bytes read.

Why only these: each takes inputs bounded by the LSTM's or tanh's range (-1, 1), so the
per-tensor activation scale that dynamic quantisation computes over a batch is set by values
near +-1 whatever else is in the batch; hypotheses of different streams batched together hardly
move each other's numbers. The joiner's encoder projection sees unbounded encoder states, so it
stays in float (it runs once per chunk anyway).

Which parts pay off was measured afterwards (bench/results/compression_lm.md): the LM's
512-wide recurrence gains; the predictor's and joiner's 256-wide matrices made greedy and no-LM
search slower in one run and were within noise with the LM in another. So the parts are
selectable: `int8_search: ["lm"]` quantises only the LM; `true` keeps meaning every part (what
store/int8/1 was sealed with).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

__all__ = ["Int8Matmul", "quantise_search", "search_parts", "INT8_SEARCH", "PARTS"]

INT8_SEARCH = "int8_search"  # the manifest's `compression` key: true (every part) or a list of PARTS
PARTS = ("lm", "predictor", "joiner")


def search_parts(value: bool | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The parts a manifest's `int8_search` value names (true = all, false/[] = none)."""
    if value is True:
        return PARTS
    if not value:
        return ()
    unknown = set(value) - set(PARTS)
    if unknown:
        raise ValueError(f"int8_search parts must be among {PARTS}, not {sorted(unknown)}")
    return tuple(value)


def _dynamic_linear(weight: Tensor, bias: Tensor | None) -> nn.Module:
    from torch.ao.quantization import quantize_dynamic  # deprecated upstream for torchao; pinned torch keeps it

    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(nn.Sequential(lin), {nn.Linear}, dtype=torch.qint8)[0]


class Int8Matmul(nn.Module):
    """x @ W.T in int8 (what `torch.addmm(b, x, W.t())` computes, less `b`)."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.linear = _dynamic_linear(weight.detach().float(), None)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


def quantise_search(model: nn.Module, lm: nn.Module | None = None, parts: tuple[str, ...] = PARTS) -> None:
    """In place, for the `parts` named: the predictor's recurrence (read by
    decoding/transducer_view.py), the joiner's `pred_proj` and `out`, and when given the LM's
    recurrence and output layer (models/lm.py). Inference only."""
    if "predictor" in parts:
        p = model.predictor
        p.hh_int8 = Int8Matmul(p.lstm.weight_hh_l0)
    if "joiner" in parts:
        j = model.joiner
        j.pred_proj = _dynamic_linear(j.pred_proj.weight.detach(), j.pred_proj.bias.detach())
        j.out = _dynamic_linear(j.out.weight.detach(), j.out.bias.detach())
    if lm is not None and "lm" in parts:
        if lm.config.num_layers != 1:
            raise ValueError("int8 search quantises a one-layer LM's recurrence only")
        lm.hh_int8 = Int8Matmul(lm.lstm.weight_hh_l0)
        lm.out = _dynamic_linear(lm.out.weight.detach(), lm.out.bias.detach())
