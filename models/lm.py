"""Token-level neural language model over the transducer's sentencepiece pieces.

Used as the external LM in shallow fusion / ILME and inside MWER training. It works on the same
piece ids as the ASR tokenizer (the transducer's blank is not one of them), plus one extra id,
`bos_eos = vocab_size`, that starts and ends every sentence. A 1-2 layer LSTM is small enough to
step once per beam expansion on a CPU core; single steps run `torch.lstm_cell` on the LSTM's own weights because `nn.LSTM` pays ~5 ms of oneDNN overhead per batch-1 call here.
The config is saved inside the checkpoint, so a checkpoint rebuilds its own model.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LMConfig", "TokenLM", "save_lm", "load_lm"]


@dataclass(frozen=True)
class LMConfig:
    vocab_size: int  # sentencepiece pieces; the model has vocab_size + 1 outputs (bos/eos last)
    embed_dim: int = 128
    hidden_dim: int = 256
    num_layers: int = 1
    dropout: float = 0.1

    @property
    def bos_eos(self) -> int:
        return self.vocab_size


class TokenLM(nn.Module):
    """LSTM LM. Training: `forward(tokens)`; search: `init_state` + `step`; scoring: `sentence_logprob`.

    State for search is one tensor (N, 2·L, H) — h then c per layer — so hypotheses are
    selected by indexing its first dimension like every other per-hypothesis tensor.
    """

    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size + 1, c.embed_dim)
        self.lstm = nn.LSTM(c.embed_dim, c.hidden_dim, c.num_layers, batch_first=True,
                            dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.drop = nn.Dropout(c.dropout)
        self.out = nn.Linear(c.hidden_dim, c.vocab_size + 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, U) → logits (B, U, V+1): position u predicts token u+1."""
        h, _ = self.lstm(self.drop(self.embed(tokens)))
        return self.out(self.drop(h))

    def loss(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per predicted token. tokens (B, U) without bos/eos, lengths (B,)."""
        inp, tgt = self._wrap(tokens, lengths)
        logits = self(inp)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1), ignore_index=-100)

    def distill_loss(self, tokens: torch.Tensor, lengths: torch.Tensor, teacher: "TokenLM",
                     weight: float) -> torch.Tensor:
        """(1 - weight) x cross-entropy + weight x KL(teacher || self) per predicted token: how a
        shrunk LM (compression/shrink_lm.py) learns the full LM's whole next-token distribution,
        not only the one observed token."""
        inp, tgt = self._wrap(tokens, lengths)
        logp = self(inp).log_softmax(-1)
        with torch.no_grad():
            t_logp = teacher(inp).log_softmax(-1)
        mask = tgt != -100
        ce = F.nll_loss(logp[mask], tgt[mask])
        kl = (t_logp.exp() * (t_logp - logp)).sum(-1)[mask].mean()
        return (1.0 - weight) * ce + weight * kl

    def sentence_logprob(self, tokens: torch.Tensor, lengths: torch.Tensor, eos: bool = True) -> torch.Tensor:
        """(B,) log P(y) of each sentence (with the end-of-sentence term if `eos`)."""
        inp, tgt = self._wrap(tokens, lengths)
        if not eos:
            tgt = tgt.masked_fill(tgt == self.config.bos_eos, -100)
        logp = self(inp).log_softmax(-1)
        mask = tgt != -100
        picked = logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (picked * mask).sum(-1)

    def _wrap(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, u = tokens.shape
        bos = torch.full((b, 1), self.config.bos_eos, dtype=torch.long)
        inp = torch.cat([bos, tokens.long()], 1)
        tgt = torch.cat([tokens.long(), torch.full((b, 1), -100, dtype=torch.long)], 1)
        pos = torch.arange(u + 1).unsqueeze(0)
        tgt = torch.where(pos < lengths.unsqueeze(1), tgt, torch.full_like(tgt, -100))
        tgt[torch.arange(b), lengths.long()] = self.config.bos_eos
        return inp, tgt

    # ---- search view -------------------------------------------------------------------
    def init_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """State after <s> for n hypotheses and the log-probs of their first token (n, V+1)."""
        state = torch.zeros(n, 2 * self.config.num_layers, self.config.hidden_dim)
        return self.step(torch.full((n,), self.config.bos_eos, dtype=torch.long), state)

    def step(self, tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed one token per hypothesis. tokens (N,), state (N, 2L, H) → (log-probs (N, V+1), state).

        Layer 0's input gates come from a per-token table (embedding · W_ih + biases, built once per
        weight version): a row gather instead of a (4H × E) matmul, since a step over a few
        hypotheses is bound by reading weights on a CPU."""
        H = self.config.hidden_dim
        lstm = self.lstm
        gates_in = self._gates_table().index_select(0, tokens.long())
        h, c = state[:, 0], state[:, 1]
        hh = getattr(self, "hh_int8", None)  # compression/int8_search.py
        gates = gates_in + hh(h) if hh is not None else torch.addmm(gates_in, h, lstm.weight_hh_l0.t())
        sig = gates.sigmoid()  # gate order: input, forget, cell, output
        c = torch.addcmul(sig[:, H:2 * H] * c, sig[:, :H], gates[:, 2 * H:3 * H].tanh())
        x = sig[:, 3 * H:] * c.tanh()
        new = [x, c]
        for layer in range(1, self.config.num_layers):
            x, c = torch.lstm_cell(
                x, (state[:, 2 * layer], state[:, 2 * layer + 1]),
                getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}"),
                getattr(lstm, f"bias_ih_l{layer}"), getattr(lstm, f"bias_hh_l{layer}"),
            )
            new += [x, c]
        return self.out(x).log_softmax(-1), torch.stack(new, 1)

    def _gates_table(self) -> torch.Tensor:
        l = self.lstm
        key = tuple(int(w._version) for w in (self.embed.weight, l.weight_ih_l0, l.bias_ih_l0, l.bias_hh_l0)) + (
            id(l.weight_ih_l0),)
        if getattr(self, "_table_key", None) != key:
            with torch.no_grad():
                self._table = torch.addmm(l.bias_ih_l0 + l.bias_hh_l0, self.embed.weight, l.weight_ih_l0.t())
            self._table_key = key
        return self._table


def save_lm(model: TokenLM, path: str | os.PathLike[str], **extra) -> None:
    """Checkpoint with its config (and any extra metadata, e.g. the tokenizer it was built on)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": asdict(model.config), "state_dict": model.state_dict(), **extra}, path)


def load_lm(path: str | os.PathLike[str]) -> TokenLM:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = TokenLM(LMConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
