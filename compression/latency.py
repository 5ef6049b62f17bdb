"""The per-layer latency table: how long each weight shape takes on this CPU under each pruning
scheme, sparsity, block size, batch and runtime — what the scheme mapping decides with.

    minutes prune latency-table --model default/10 --out compression/latency_table.json

Why measured and not counted: on this CPU zeros in a dense weight cost as much as any number,
a gather can cost more than the multiply it saves, and onnxruntime and torch rank the same
kernel differently (shared/DESIGN.md). So every candidate is timed as the module that would
actually run (`compression/block_sparse.py`, or a smaller dense layer for shrinking), one
thread, median of repeated runs, both runtimes. `rows` is the number of input vectors per call:
16 is one stream's 0.32 s chunk of 20 ms states, 256 is 16 streams batched.

Entries are keyed "out x in / scheme / sparsity / block / rows / runtime" -> microseconds.
"""

from __future__ import annotations

import io
import json
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from compression.block_sparse import pack_linear
from compression.masks import mask_for

__all__ = ["LatencyTable", "measure_table", "linear_shapes"]

SPARSITIES = (0.5, 0.75, 0.875)
BLOCKS = (16, 32)
ROWS = (16, 256)
SCHEMES = ("dense", "shrink", "block_col", "block_row")
RUNTIMES = ("torch", "onnxruntime")


@dataclass
class LatencyTable:
    cpu: str = ""
    torch_version: str = ""
    entries: dict[str, float] = field(default_factory=dict)  # key(...) -> microseconds

    @staticmethod
    def key(shape: tuple[int, int], scheme: str, sparsity: float, block: int, rows: int, runtime: str) -> str:
        return f"{shape[0]}x{shape[1]}/{scheme}/{sparsity:g}/{block}/{rows}/{runtime}"

    def get(self, shape: tuple[int, int], scheme: str, sparsity: float, block: int, rows: int,
            runtime: str) -> float | None:
        if scheme == "dense" or sparsity == 0.0:
            scheme, sparsity, block = "dense", 0.0, 0
        elif scheme in ("shrink", "unstructured"):  # zeros left in dense weights run at dense speed
            block = 0
            if scheme == "unstructured":
                scheme, sparsity = "dense", 0.0
        return self.entries.get(self.key(shape, scheme, sparsity, block, rows, runtime))

    def speedup(self, shape: tuple[int, int], scheme: str, sparsity: float, block: int, rows: int,
                runtime: str) -> float | None:
        dense = self.get(shape, "dense", 0.0, 0, rows, runtime)
        this = self.get(shape, scheme, sparsity, block, rows, runtime)
        return None if dense is None or this is None else dense / this

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        return cls(**json.loads(Path(path).read_text()))


def linear_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """{parameter name: (out, in)} of every nn.Linear weight in `model`."""
    return {f"{n}.weight": (m.out_features, m.in_features) for n, m in model.named_modules()
            if isinstance(m, nn.Linear)}


def _time(fn, min_seconds: float = 0.05, repeats: int = 5) -> float:
    """Median microseconds per call over `repeats` runs of at least `min_seconds` each."""
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds / 5:
        fn()
        n += 1
    n = max(1, int(n * 5))
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(runs)


def _ort_runner(module: nn.Module, x: torch.Tensor):
    import onnxruntime as ort

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buf, dynamo=False, input_names=["x"], opset_version=17)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = 1, 1, 3
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return lambda: sess.run(None, feed)


def _candidate(shape: tuple[int, int], scheme: str, sparsity: float, block: int) -> nn.Module | None:
    out, inp = shape
    if scheme == "dense":
        return nn.Linear(inp, out)
    if scheme == "shrink":  # the dense layer after removing `sparsity` of its output units
        return nn.Linear(inp, max(1, round(out * (1 - sparsity))))
    if (scheme == "block_col" and out % block) or (scheme == "block_row" and inp % block):
        return None
    lin = nn.Linear(inp, out)
    return pack_linear(lin, mask_for(lin.weight, scheme, sparsity, block), scheme, block)


def measure_table(shapes: list[tuple[int, int]], progress: bool = True) -> LatencyTable:
    """Time every (shape x scheme x sparsity x block x rows x runtime) candidate."""
    import platform

    from tqdm import tqdm

    torch.set_num_threads(1)
    table = LatencyTable(cpu=platform.processor() or platform.machine(), torch_version=torch.__version__)
    jobs = []
    for shape in sorted(set(shapes)):
        for rows in ROWS:
            jobs.append((shape, "dense", 0.0, 0, rows))
            for sp in SPARSITIES:
                jobs.append((shape, "shrink", sp, 0, rows))
                for b in BLOCKS:
                    jobs += [(shape, "block_col", sp, b, rows), (shape, "block_row", sp, b, rows)]
    for shape, scheme, sp, b, rows in tqdm(jobs, desc="latency table", disable=not progress):
        module = _candidate(shape, scheme, sp, b)
        if module is None:
            continue
        module.eval()
        x = torch.randn(rows, shape[1])
        with torch.no_grad():
            table.entries[LatencyTable.key(shape, scheme, sp, b, rows, "torch")] = round(_time(lambda: module(x)), 2)
        if scheme == "block_row":  # its scatter-add has no ONNX export: torch only
            continue
        run = _ort_runner(module, x)
        table.entries[LatencyTable.key(shape, scheme, sp, b, rows, "onnxruntime")] = round(_time(run), 2)
    return table
