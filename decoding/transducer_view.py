"""Adapter: `models.transducer.Transducer` seen as the `TransducerView` the beam search needs.

Why an adapter rather than search calling the model directly: the search stays independent of
how the transducer is built (tests drive it with a tiny stand-alone transducer), and the
adapter is where the joiner's projections are hoisted out of the search loop: the encoder
frames are projected once per chunk (`prepare_encoder`) and each hypothesis's predictor output
is projected once when it changes, so an expansion costs one tanh + one output matmul.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from models.transducer import BLANK, PredictorState, Transducer

__all__ = ["TransducerSearchView"]


class TransducerSearchView:
    """`pred_out` here is the joiner-projected predictor output (N, J); state is `PredictorState`."""

    blank = BLANK

    def __init__(self, model: Transducer) -> None:
        self.model = model
        self.vocab_size = model.cfg.vocab_size

    def prepare_encoder(self, enc: Tensor) -> Tensor:
        """(…, D) encoder frames → (…, J) joiner-projected frames (once per chunk)."""
        return self.model.joiner.enc_proj(enc)

    def predictor_init(self, n: int) -> tuple[Tensor, PredictorState]:
        st = self.model.initial_predictor_state(n)
        return self.model.joiner.pred_proj(st.out), st

    def predictor_step(self, tokens: Tensor, state: PredictorState) -> tuple[Tensor, PredictorState]:
        st = self.model.predict_step(tokens, state)
        return self.model.joiner.pred_proj(st.out), st

    def select_state(self, state: PredictorState, idx: Tensor) -> PredictorState:
        return PredictorState(state.h.index_select(0, idx), state.c.index_select(0, idx), state.out.index_select(0, idx))

    def scatter_state(self, state: PredictorState, idx: Tensor, new: PredictorState) -> PredictorState:
        return PredictorState(*(getattr(state, k).index_copy(0, idx, getattr(new, k)) for k in ("h", "c", "out")))

    def cat_states(self, states: Sequence[PredictorState]) -> PredictorState:
        return PredictorState.stack(list(states))

    def joiner(self, enc: Tensor, pred: Tensor) -> Tensor:
        """Projected enc (N, J) + projected pred (N, J) → logits (N, V)."""
        return self.model.joiner.out(torch.tanh(enc + pred))

    def ilm_logits(self, pred: Tensor) -> Tensor:
        """Joiner with the encoder's share zeroed (enc_proj has no bias, so zero input = zero)."""
        return self.model.joiner.out(torch.tanh(pred))
