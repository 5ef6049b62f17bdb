"""Batched greedy transducer search and CTC best path, both carried chunk to chunk.

Why one function for both uses: the full-utterance evaluation in training and the live
recogniser call the same `greedy_search` (and `ctc_best_path`) on a block of encoder frames with
the state left by the previous block, so what the trainer measures is what the server does.
These are the only greedy search and the only CTC best path in the tree; the beam search with
beam 1 equals `greedy_search` with one symbol per frame (tests/test_beam_transducer.py).
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
            logits = model.joiner.joint(enc_p[:, t], pred_p)
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


@torch.no_grad()
def ctc_best_path(logits: Tensor, prev: list[int] | None = None, frame_offsets: list[int] | None = None,
                  lengths: Tensor | None = None) -> tuple[list[list[Emission]], list[int]]:
    """Best path of a CTC head over logits (B, N, V): each frame's most likely unit, repeats
    collapsed, blanks dropped. A unit is emitted on the first frame of its run, with that
    frame's posterior as its confidence. `prev` is each row's unit on the frame before this
    block (blank at a stream's start), so a run split by a chunk boundary stays one unit.
    Returns the emissions (absolute frames) and each row's last unit, the next block's `prev`."""
    b, n, _ = logits.shape
    prev = list(prev) if prev is not None else [BLANK] * b
    offsets = frame_offsets or [0] * b
    best, tok = logits.log_softmax(-1).max(-1)  # (B, N)
    probs = best.exp().tolist()
    valid = lengths.tolist() if lengths is not None else [n] * b
    out: list[list[Emission]] = [[] for _ in range(b)]
    for i, row in enumerate(tok.tolist()):
        for t, k in enumerate(row[: int(valid[i])]):
            if k != BLANK and k != prev[i]:
                out[i].append(Emission(k, offsets[i] + t, float(probs[i][t])))
            prev[i] = k
    return out, prev


@torch.no_grad()
def ctc_decode_batch(model: Transducer, feats: Tensor, feat_lens: Tensor) -> list[list[int]]:
    """Whole utterances (raw log-mel, padded) -> best-path CTC units per utterance (pieces or
    characters, see `model.cfg.ctc_units`)."""
    enc, enc_lens = model.encode(feats, feat_lens)
    hyps, _ = ctc_best_path(model.ctc(enc), lengths=enc_lens)
    return [[e.token for e in h] for h in hyps]
