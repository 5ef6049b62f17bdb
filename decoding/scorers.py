"""Small pluggable scorers that the beam search adds to the transducer's log-probabilities.

Each term touches non-blank expansions only (a blank changes no text, so no LM may score it):

    score(y_1..u) = log P_AM(y|x) + λ_T log P_LM(y) − λ_I log P_ILM(y) + hotword bonus
                   − oov_penalty·(non-words) + reward·|y|

- `ExternalLM`: the text-only LM (neural `models.lm.TokenLM` or `decoding.ngram.NgramLM`) mapped
  from its piece ids onto the transducer's output ids, with per-hypothesis state.
- `ilm_log_probs`: the internal LM estimate — the joiner fed the prediction network alone (the
  encoder contribution removed), renormalised over non-blank tokens (Meng et al. 2011.01991).
- `fusion_rows`: combines all terms into the (N, V) row the search adds, weighted by the λ's of
  the request's `DecodingOptions`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from decoding.options import DecodingOptions

__all__ = ["ExternalLM", "token_map", "load_external_lm", "ilm_log_probs", "fusion_rows"]


def token_map(vocab_size: int, blank: int, piece_of: dict[int, int] | None = None) -> torch.Tensor:
    """(V,) transducer output id → LM piece id (−1 for blank). Default: the transducer's ids
    are the sentencepiece ids with the blank inserted at `blank` (ids above it shifted by one)."""
    m = torch.full((vocab_size,), -1, dtype=torch.long)
    for k in range(vocab_size):
        if k == blank:
            continue
        m[k] = piece_of[k] if piece_of is not None else (k if k < blank else k - 1)
    return m


class ExternalLM:
    """An LM (TokenLM or NgramLM) seen through the transducer's output ids.

    `init(n)` / `step(state, tokens)` return log-prob rows (N, V) over transducer ids, with 0 in
    the blank column; `select(state, idx)` keeps the states of surviving hypotheses.
    """

    def __init__(self, lm: Any, tmap: torch.Tensor) -> None:
        self.lm = lm
        self.tmap = tmap.long()
        self._cols = tmap.clamp(min=0)
        self._blank_mask = tmap < 0

    def _rows(self, logp: torch.Tensor) -> torch.Tensor:
        rows = logp[:, self._cols]
        return rows.masked_fill(self._blank_mask, 0.0)

    @torch.no_grad()
    def init(self, n: int) -> tuple[torch.Tensor, Any]:
        logp, state = self.lm.init_state(n)
        return self._rows(logp), state

    @torch.no_grad()
    def step(self, state: Any, tokens: torch.Tensor) -> tuple[torch.Tensor, Any]:
        logp, state = self.lm.step(self.tmap[tokens], state)
        return self._rows(logp), state

    def select(self, state: Any, idx: torch.Tensor) -> Any:
        if isinstance(state, torch.Tensor):
            return state.index_select(0, idx)
        return [state[i] for i in idx.tolist()]

    def scatter(self, state: Any, idx: torch.Tensor, new: Any) -> Any:
        """`state` with rows `idx` replaced by `new` (rows of the emitting hypotheses)."""
        if isinstance(state, torch.Tensor):
            return state.index_copy(0, idx, new)
        out = list(state)
        for j, i in enumerate(idx.tolist()):
            out[i] = new[j]
        return out

    @torch.no_grad()
    def sequence_logprob(self, seqs: Sequence[Sequence[int]], eos: bool = True) -> torch.Tensor:
        """(B,) log P_LM of whole transducer-id sequences (for N-best rescoring and MWER)."""
        pieces = [[int(self.tmap[t]) for t in s] for s in seqs]
        if isinstance(self.lm, torch.nn.Module):
            lens = torch.tensor([len(p) for p in pieces])
            pad = torch.zeros(len(pieces), max(1, int(lens.max()) if len(pieces) else 1), dtype=torch.long)
            for i, p in enumerate(pieces):
                pad[i, : len(p)] = torch.tensor(p, dtype=torch.long)
            return self.lm.sentence_logprob(pad, lens, eos=eos)
        return torch.tensor([self.lm.sentence_logprob(p, eos=eos) for p in pieces])


def load_external_lm(path: str, vocab_size: int, blank: int = 0, tokenizer: bytes | None = None) -> ExternalLM | None:
    """An external LM by file type (`.pkl`: n-gram; else a `models.lm` checkpoint), mapped onto
    transducer ids laid out as the tokenizer does (blank at `blank`, piece i → i + 1).

    `tokenizer`: the ASR model's sentencepiece bytes; an LM built on other pieces is refused,
    because its ids would silently mean different text.
    """
    if not path:
        return None
    if str(path).endswith(".pkl"):
        from decoding.ngram import NgramLM

        lm = NgramLM.load(path)
        stored = lm.meta.get("tokenizer")
    else:
        from models.lm import load_lm

        lm = load_lm(path)
        stored = torch.load(path, map_location="cpu", weights_only=False).get("tokenizer")
    if tokenizer is not None and stored is not None and stored != tokenizer:
        raise ValueError(f"LM {path} was built on a different tokenizer than the ASR model")
    return ExternalLM(lm, token_map(vocab_size, blank=blank))


def ilm_log_probs(ilm_logits: torch.Tensor, blank: int) -> torch.Tensor:
    """Internal-LM log-probs (…, V): softmax over non-blank tokens; the blank column is 0."""
    masked = ilm_logits.clone()
    masked[..., blank] = float("-inf")
    out = masked.log_softmax(-1)
    out[..., blank] = 0.0
    return out


def fusion_rows(
    opts: DecodingOptions,
    blank: int,
    shape: tuple[int, int],
    lm_rows: torch.Tensor | None = None,
    ilm_rows: torch.Tensor | None = None,
    hot_rows: torch.Tensor | None = None,
    lex_rows: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """(N, V) additive scores for one expansion of N hypotheses; 0 in the blank column.

    None when nothing is fused (plain beam search), so the plain path costs nothing extra.
    """
    total = None
    if lm_rows is not None and opts.lm_weight:
        total = opts.lm_weight * lm_rows
    if ilm_rows is not None and opts.ilm_weight:
        term = -opts.ilm_weight * ilm_rows
        total = term if total is None else total + term
    if hot_rows is not None:
        total = hot_rows if total is None else total + hot_rows
    if lex_rows is not None:  # already weighted by the lexicon's penalty (decoding/lexicon.py)
        total = lex_rows if total is None else total + lex_rows
    if opts.length_reward:
        total = (0.0 if total is None else total) + torch.full(shape, opts.length_reward)
    if total is not None:
        total = total.clone() if (total is hot_rows or total is lex_rows) else total
        total[:, blank] = 0.0
    return total
