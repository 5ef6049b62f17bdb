"""Batched greedy transducer search, carried chunk to chunk.

Why one function for both uses: the full-utterance evaluation in training and the live
recogniser call the same `greedy_search` on a block of encoder frames with the predictor state
left by the previous block, so what the trainer measures is what the server does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from models.transducer import BLANK, PredictorState, Transducer


@dataclass(frozen=True)
class Emission:
    """One emitted token."""

    token: int  # transducer id (blank = 0 never appears here)
    frame: int  # encoder frame index from the stream start
    prob: float  # posterior of the token when it was emitted


@torch.no_grad()
def greedy_search(
    model: Transducer,
    enc: Tensor,
    lengths: Tensor,
    state: PredictorState,
    frame_offsets: list[int] | None = None,
    max_symbols: int = 3,
    blank_penalty: float | Tensor = 0.0,
) -> tuple[list[list[Emission]], PredictorState]:
    """enc (B, N, D) encoder frames, lengths (B,) valid frames per row, state for B streams.
    Returns the tokens each stream emitted (with absolute frames) and the new state.

    `blank_penalty` is subtracted from the blank logit before the argmax (and the posterior):
    a model whose errors are mostly deletions (a predictor trained on short utterances that
    learnt to fall silent after a few words) emits the words its encoder already heard.
    A float, or a (B,) tensor when batched streams asked for different penalties."""
    b, n, _ = enc.shape
    offsets = frame_offsets or [0] * b
    out: list[list[Emission]] = [[] for _ in range(b)]
    enc_p = model.joiner.enc_proj(enc)  # (B, N, J), projected once
    pred_p = model.joiner.pred_proj(state.out)
    for t in range(n):
        active = lengths > t
        for _ in range(max_symbols):
            if not bool(active.any()):
                break
            logits = model.joiner.out(torch.tanh(enc_p[:, t] + pred_p))
            if isinstance(blank_penalty, Tensor) or blank_penalty:
                logits[:, BLANK] -= blank_penalty  # a float, or one value per stream (B,)
            tok = logits.argmax(-1)
            emit = active & (tok != BLANK)
            if not bool(emit.any()):
                break  # the usual case: blank everywhere, one joiner call per frame
            probs = logits.softmax(-1).gather(1, tok[:, None])[:, 0]
            new = model.predict_step(torch.where(emit, tok, torch.zeros_like(tok)), state)
            state = state.where(emit, new)
            pred_p = model.joiner.pred_proj(state.out)
            for i in torch.nonzero(emit).flatten().tolist():
                out[i].append(Emission(int(tok[i]), offsets[i] + t, float(probs[i])))
            active = emit
    return out, state


@torch.no_grad()
def greedy_decode_batch(model: Transducer, feats: Tensor, feat_lens: Tensor) -> list[list[Emission]]:
    """Whole utterances (raw log-mel, padded) -> emissions per utterance."""
    enc, enc_lens = model.encode(feats, feat_lens)
    state = model.initial_predictor_state(feats.shape[0])
    hyps, _ = greedy_search(model, enc, enc_lens, state)
    return hyps
