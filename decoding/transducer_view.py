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

from models.transducer import BLANK, Transducer

__all__ = ["TransducerSearchView"]


class TransducerSearchView:
    """`pred_out` here is the joiner-projected predictor output (N, J); the state is one tensor
    (N, 2P) = [h | c], so that selecting or scattering hypotheses is one indexing op.

    A predictor step reads the LSTM's input-to-hidden weights through a per-token table
    (embedding · W_ih + biases, (V, 4P), built once per weight version): one row gather instead of
    a (4P × E) matmul. On this CPU a step over a few hypotheses is bound by reading weights, so
    this halves its cost; the result equals `torch.lstm_cell` up to float rounding.
    """

    blank = BLANK

    def __init__(self, model: Transducer) -> None:
        self.model = model
        self.vocab_size = model.cfg.vocab_size
        self.pred_dim = model.cfg.pred_dim
        self._table: Tensor | None = None
        self._table_key: tuple[int, ...] = ()

    def _gates_table(self) -> Tensor:
        p = self.model.predictor
        l = p.lstm
        key = tuple(int(w._version) for w in (p.embed.weight, l.weight_ih_l0, l.bias_ih_l0, l.bias_hh_l0)) + (
            id(l.weight_ih_l0),)
        if self._table is None or key != self._table_key:  # weights changed (e.g. MWER updates)
            with torch.no_grad():
                self._table = torch.addmm(l.bias_ih_l0 + l.bias_hh_l0, p.embed.weight, l.weight_ih_l0.t())
            self._table_key = key
        return self._table

    def prepare_encoder(self, enc: Tensor) -> Tensor:
        """(…, D) encoder frames → (…, J) joiner-projected frames (once per chunk)."""
        return self.model.joiner.enc_proj(enc)

    def predictor_init(self, n: int) -> tuple[Tensor, Tensor]:
        st = self.model.initial_predictor_state(n)
        return self.model.joiner.pred_proj(st.out), torch.cat([st.h, st.c], 1)

    def predictor_step(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        P = self.pred_dim
        h, c = state[:, :P], state[:, P:]
        table = self._gates_table().index_select(0, tokens)
        hh = getattr(self.model.predictor, "hh_int8", None)  # compression/int8_search.py
        gates = table + hh(h) if hh is not None else torch.addmm(table, h, self.model.predictor.lstm.weight_hh_l0.t())
        sig = gates.sigmoid()  # PyTorch's gate order: input, forget, cell, output
        c = torch.addcmul(sig[:, P:2 * P] * c, sig[:, :P], gates[:, 2 * P:3 * P].tanh())
        h = sig[:, 3 * P:] * c.tanh()
        return self.model.joiner.pred_proj(h), torch.cat([h, c], 1)

    def select_state(self, state: Tensor, idx: Tensor) -> Tensor:
        return state.index_select(0, idx)

    def scatter_state(self, state: Tensor, idx: Tensor, new: Tensor) -> Tensor:
        return state.index_copy(0, idx, new)

    def cat_states(self, states: Sequence[Tensor]) -> Tensor:
        return torch.cat(list(states))

    def joiner(self, enc: Tensor, pred: Tensor) -> Tensor:
        """Projected enc (N, J) + projected pred (N, J) → logits (N, V)."""
        return self.model.joiner.joint(enc, pred)

    def ilm_logits(self, pred: Tensor) -> Tensor:
        """Joiner with the encoder's share zeroed (enc_proj has no bias, so zero input = zero)."""
        return self.model.joiner.joint(None, pred)
