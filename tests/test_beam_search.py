"""Beam search, fusion and hotwords on a tiny random transducer (real modules, random weights).

Beam 1 against the served greedy search is tests/test_beam_transducer.py (one greedy search:
decoding/greedy.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from decoding.beam_search import BeamSearch
from decoding.hotwords import HotwordTrie
from decoding.ngram import NgramLM
from decoding.options import DecodingOptions
from decoding.scorers import ExternalLM, token_map
from models.lm import LMConfig, TokenLM

V, DE, DP, H = 12, 8, 8, 16  # outputs (blank = 0), encoder dim, predictor dim, joiner dim


class TinyTransducer(nn.Module):
    """LSTMCell predictor + additive joiner: the smallest real transducer view."""

    blank = 0
    vocab_size = V

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, DP)
        self.cell = nn.LSTMCell(DP, DP)
        self.enc_proj, self.pred_proj = nn.Linear(DE, H), nn.Linear(DP, H)
        self.out = nn.Linear(H, V)

    def predictor_init(self, n):
        z = torch.zeros(n, DP)
        return self.predictor_step(torch.zeros(n, dtype=torch.long), (z, z))

    def predictor_step(self, tokens, state):
        h, c = self.cell(self.embed(tokens), state)
        return h, (h, c)

    def select_state(self, state, idx):
        return tuple(x.index_select(0, idx) for x in state)

    def scatter_state(self, state, idx, new):
        return tuple(x.index_copy(0, idx, y) for x, y in zip(state, new))

    def cat_states(self, states):
        return tuple(torch.cat(xs) for xs in zip(*states))

    def joiner(self, enc, pred):
        return self.out(torch.tanh(self.enc_proj(enc) + self.pred_proj(pred)))

    def ilm_logits(self, pred):
        return self.out(torch.tanh(self.pred_proj(pred)))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = TinyTransducer().eval()
    with torch.no_grad():  # a strong blank bias would make every search trivially empty
        m.out.bias.zero_()
    return m


def _enc(b=3, t=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, DE, generator=g) * 2


def _decode(search, enc, lengths, opts, chunk=None, tries=None):
    streams = [search.new_stream(opts, tries[i] if tries else None) for i in range(enc.size(0))]
    chunk = chunk or enc.size(1)
    for start in range(0, enc.size(1), chunk):
        part = enc[:, start:start + chunk]
        search.search(streams, part, (lengths - start).clamp(0, part.size(1)))
    return [search.nbest(s, 1)[0] for s in streams]


def test_chunked_equals_whole_and_batched_equals_single(model):
    enc, lengths = _enc(), torch.tensor([20, 13, 17])
    opts = DecodingOptions(search="beam", beam_size=4)
    whole = _decode(BeamSearch(model), enc, lengths, opts)
    chunked = _decode(BeamSearch(model), enc, lengths, opts, chunk=3)
    single = [_decode(BeamSearch(model), enc[i:i + 1], lengths[i:i + 1], opts)[0] for i in range(3)]
    for a, b, c in zip(whole, chunked, single):
        assert a.tokens == b.tokens == c.tokens
        assert a.score == pytest.approx(b.score, abs=1e-4) and a.score == pytest.approx(c.score, abs=1e-4)


def test_beam_finds_at_least_greedy_score(model):
    enc, lengths = _enc(2, 15, seed=3), torch.tensor([15, 15])
    b1 = _decode(BeamSearch(model), enc, lengths, DecodingOptions(search="beam", beam_size=1))
    b8 = _decode(BeamSearch(model), enc, lengths, DecodingOptions(search="beam", beam_size=8))
    for a, b in zip(b1, b8):
        assert b.score >= a.score - 1e-5


@pytest.mark.parametrize("kind", ["neural", "ngram"])
def test_fusion_weight_zero_equals_plain_beam(model, kind):
    torch.manual_seed(2)
    lm = TokenLM(LMConfig(vocab_size=V - 1, embed_dim=8, hidden_dim=16)).eval() if kind == "neural" \
        else NgramLM(V - 1, order=3).fit([[1, 2, 3], [4, 5, 6, 7], [2, 2, 9]])
    ext = ExternalLM(lm, token_map(V, blank=0))
    enc, lengths = _enc(), torch.tensor([20, 13, 17])
    plain = _decode(BeamSearch(model), enc, lengths, DecodingOptions(search="beam", beam_size=4))
    zero = _decode(BeamSearch(model, ext), enc, lengths,
                   DecodingOptions(search="beam", beam_size=4, lm_weight=0.0, ilm_weight=0.0))
    fused = _decode(BeamSearch(model, ext), enc, lengths,
                    DecodingOptions(search="beam", beam_size=4, lm_weight=0.5, ilm_weight=0.3))
    assert [h.tokens for h in plain] == [h.tokens for h in zero]
    assert [h.score for h in plain] == pytest.approx([h.score for h in zero], abs=1e-5)
    # With λ > 0 the reported parts add up to the ranked score.
    for h in fused:
        assert h.score == pytest.approx(h.am_score + 0.5 * h.lm_score - 0.3 * h.ilm_score, abs=1e-3)
        if h.tokens:
            assert h.lm_score < 0 and h.ilm_score < 0


def test_hotword_biasing_raises_boosted_word(model):
    enc, lengths = _enc(1, 20, seed=5), torch.tensor([20])
    opts = DecodingOptions(search="beam", beam_size=4, nbest=4)
    search = BeamSearch(model)
    plain = _decode(search, enc, lengths, opts)[0]
    # Boost a 2-token "word" the model does not output on its own.
    word = next([a, b] for a in range(1, V) for b in range(1, V)
                if not _contains(plain.tokens, [a, b]))
    trie = HotwordTrie([word], boost=6.0)
    biased = _decode(search, enc, lengths, dataclasses.replace(opts, hotword_boost=6.0), tries=[trie])[0]
    assert _contains(biased.tokens, word)
    assert biased.hotword_score > 0


def test_hotword_trie_gives_back_partial_matches():
    trie = HotwordTrie([[3, 4, 5]], boost=1.0)
    b1, n1 = trie.advance(trie.root, 3)
    b2, n2 = trie.advance(n1, 4)
    b3, n3 = trie.advance(n2, 7)  # broken: the two earned points go back
    assert (b1, b2, b3) == (1.0, 1.0, -2.0) and n3 is trie.root
    row = trie.bonus_row(n2, 10)
    assert row[5] == 1.0 and row[3] == -1.0 and row[0] == -2.0
    assert trie.final_bonus(n2) == -2.0


def _contains(seq, sub):
    seq = list(seq)
    return any(seq[i:i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def test_stable_prefix_and_segment_reset_keep_the_clock(model):
    enc, lengths = _enc(1, 20, seed=7), torch.tensor([20])
    search = BeamSearch(model)
    s = search.new_stream(DecodingOptions(search="beam", beam_size=4))
    search.search([s], enc[:, :10], torch.tensor([10]))
    n = search.stable_tokens(s)
    assert all(seq[:n] == s.tokens[0][:n] for seq in s.tokens)
    best = search.reset_segment(s)
    assert s.size == 1 and s.tokens == [()] and s.t == 10
    assert len(best.probs) == len(best.tokens) and all(0 < p <= 1 for p in best.probs)
    search.search([s], enc[:, 10:], torch.tensor([10]))
    after = search.nbest(s, 1)[0]
    assert all(f >= 10 for f in after.frames)
