"""The streaming encoder's chunk step run by onnxruntime: the same `infer(feats, state)` contract
as the torch module, so `Recogniser.decode_streams` and every search stay unchanged.

Why: one chunk of one stream is a handful of small matrix products, so torch's per-operator
overhead dominates; onnxruntime with one intra-op thread runs the same graph ~1.6-1.7x faster
(`bench/results/compression.md`), and its dynamic int8 quantisation (`quantize_dynamic`, MatMul
weights to int8, activations per call) adds more. The torch checkpoint in the store stays the
source of truth: the graph is exported from it when the model loads (~2 s), so there is no second
artefact to drift from it, and the store's checksum covers what runs.

The graph is exported with the batch and the chunk length dynamic, so batched streams, wider
chunks (`options.chunk_seconds`) and a stream's short last chunk all run through one session.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from models.whisper_encoder import StreamingWhisperEncoder, WhisperEncoderState

__all__ = ["RUNTIMES", "export_encoder_step", "OnnxStreamingEncoder", "use_onnx_encoder"]

RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8")
INPUTS = ("feats", "feat", "key", "value", "valid", "pos")
OUTPUTS = ("frames", "feat_next", "key_next", "value_next", "valid_next", "pos_next")


class _Step(nn.Module):
    """`infer` over plain tensors: what the exporter traces."""

    def __init__(self, encoder: StreamingWhisperEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, feats: Tensor, feat: Tensor, key: Tensor, value: Tensor, valid: Tensor,
                pos: Tensor) -> tuple[Tensor, ...]:
        y, s = self.encoder.infer(feats, WhisperEncoderState(feat, key, value, valid, pos))
        return y, s.feat, s.key, s.value, s.valid, s.pos


def export_encoder_step(encoder: StreamingWhisperEncoder, int8: bool = False) -> bytes:
    """The ONNX graph of one streaming chunk step (feature normalisation excluded: the transducer
    applies it before `infer`), optionally with int8 dynamic quantisation of its MatMuls."""
    encoder = encoder.eval()
    state = encoder.initial_state(1)
    feats = torch.zeros(1, encoder.cfg.subsampling * encoder.cfg.chunk_frames, encoder.cfg.n_mels)
    dynamic = {"feats": {0: "batch", 1: "frames"}, "feat": {0: "batch"}, "key": {0: "batch"},
               "value": {0: "batch"}, "valid": {0: "batch"}, "pos": {0: "batch"}, "frames": {0: "batch", 1: "out"}}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes about shape arithmetic on Python ints
        torch.onnx.export(_Step(encoder), (feats, state.feat, state.key, state.value, state.valid, state.pos),
                          buf, dynamo=False, input_names=list(INPUTS), output_names=list(OUTPUTS),
                          dynamic_axes=dynamic, opset_version=17)
    graph = buf.getvalue()
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        root = logging.getLogger()
        level = root.level
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(graph)
            root.setLevel(logging.ERROR)  # its advice to pre-process (shape inference) is for CNNs
            try:
                quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
            finally:
                root.setLevel(level)
            graph = dst.read_bytes()
    return graph


class OnnxStreamingEncoder(nn.Module):
    """Drop-in for `StreamingWhisperEncoder` in streaming: `cfg`, `initial_state` and `infer`.
    Whole-utterance `forward` (training, tests) stays with the torch module it was made from."""

    def __init__(self, encoder: StreamingWhisperEncoder, int8: bool = False, threads: int = 1) -> None:
        super().__init__()
        import onnxruntime as ort

        self.torch_encoder = encoder
        self.cfg = encoder.cfg
        self.runtime = "onnxruntime-int8" if int8 else "onnxruntime"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # one thread per decoder worker: batching, not threads, scales
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(export_encoder_step(encoder, int8), opts,
                                            providers=["CPUExecutionProvider"])

    def forward(self, *args, **kwargs):  # whole utterances: the torch module's numbers
        return self.torch_encoder(*args, **kwargs)

    def forward_tapped(self, *args, **kwargs):
        return self.torch_encoder.forward_tapped(*args, **kwargs)

    def initial_state(self, batch: int = 1, device: torch.device | str = "cpu") -> WhisperEncoderState:
        return self.torch_encoder.initial_state(batch, device)

    def infer(self, feats: Tensor, state: WhisperEncoderState) -> tuple[Tensor, WhisperEncoderState]:
        """Under int8 each stream runs alone: dynamic quantisation scales activations per tensor,
        so a batch would let one stream's loudness change another's numbers (and words). Per
        stream, int8 costs no more than batched (bench/results/compression.md, throughput)."""
        if self.runtime.endswith("int8") and feats.shape[0] > 1:
            outs = [self._run(feats[b : b + 1], s) for b, s in enumerate(state.unstack())]
            return torch.cat([o[0] for o in outs]), WhisperEncoderState.stack([o[1] for o in outs])
        return self._run(feats, state)

    def _run(self, feats: Tensor, state: WhisperEncoderState) -> tuple[Tensor, WhisperEncoderState]:
        feed = {"feats": feats, "feat": state.feat, "key": state.key, "value": state.value,
                "valid": state.valid, "pos": state.pos}
        out = self.session.run(None, {k: np.ascontiguousarray(v.detach().cpu().numpy()) for k, v in feed.items()})
        y, feat, key, value, valid, pos = (torch.from_numpy(o) for o in out)
        return y, WhisperEncoderState(feat, key, value, valid, pos)


def use_onnx_encoder(model: nn.Module, int8: bool = False, threads: int = 1) -> nn.Module:
    """Swap a transducer's Whisper encoder for its onnxruntime twin (in place; returns `model`)."""
    if not isinstance(model.encoder, StreamingWhisperEncoder):
        raise TypeError("the onnxruntime encoder is built for the Whisper encoder "
                        f"(this model has {type(model.encoder).__name__})")
    model.encoder = OnnxStreamingEncoder(model.encoder, int8=int8, threads=threads)
    return model
