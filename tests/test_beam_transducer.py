"""The beam search on the project's real transducer (tiny, random) through its search view."""

from __future__ import annotations

import torch

from decoding.beam_search import BeamSearch
from decoding.greedy import greedy_search as model_greedy
from decoding.options import DecodingOptions
from decoding.transducer_view import TransducerSearchView
from models.encoder import EncoderConfig
from models.transducer import Transducer, TransducerConfig


def _tiny():
    torch.manual_seed(0)
    enc = EncoderConfig(n_mels=80, d_model=32, n_layers=1, n_heads=2, ff_mult=2, conv_kernel=3,
                        subsample_channels=8, chunk_frames=4, left_chunks=2)
    m = Transducer(TransducerConfig(vocab_size=20, encoder=enc, embed_dim=16, pred_dim=16, joint_dim=16)).eval()
    with torch.no_grad():
        m.joiner.out.bias.zero_()
        m.joiner.enc_proj.weight.mul_(4)  # let the random encoder move the argmax around
    return m


def test_beam_one_equals_model_greedy_one_symbol_per_frame():
    m = _tiny()
    feats, lens = torch.randn(2, 160, 80), torch.tensor([160, 120])
    with torch.no_grad():
        enc, enc_lens = m.encode(feats, lens)
    ref, _ = model_greedy(m, enc, enc_lens, m.initial_predictor_state(2), max_symbols=1)
    ref = [[e.token for e in r] for r in ref]
    assert any(ref)
    search = BeamSearch(TransducerSearchView(m))
    opts = DecodingOptions(search="beam", beam_size=1)
    streams = [search.new_stream(opts) for _ in range(2)]
    for s0 in range(0, enc.size(1), 8):  # chunk by chunk, as the recogniser feeds it
        part = enc[:, s0:s0 + 8]
        search.search(streams, part, (enc_lens - s0).clamp(0, part.size(1)))
    assert [list(search.nbest(s, 1)[0].tokens) for s in streams] == ref


def test_ilme_changes_scores_only_on_non_blank():
    m = _tiny()
    with torch.no_grad():
        enc, enc_lens = m.encode(torch.randn(1, 120, 80), torch.tensor([120]))
    search = BeamSearch(TransducerSearchView(m))
    s = search.new_stream(DecodingOptions(search="beam", beam_size=4, ilm_weight=0.4))
    search.search([s], enc, enc_lens)
    for h in search.nbest(s, 4):
        assert abs(h.score - (h.am_score - 0.4 * h.ilm_score)) < 1e-3
        assert (h.ilm_score == 0.0) == (len(h.tokens) == 0)


def test_view_step_equals_the_model_and_follows_weight_updates():
    """The view's table-based predictor step equals `Transducer.predict_step`, also after the
    weights change in place (as an MWER update does) — the per-token table must not go stale."""
    m = _tiny()
    view = TransducerSearchView(m)
    tokens = torch.tensor([3, 7, 0, 19])
    for _ in range(2):
        pred_out, state = view.predictor_init(4)
        ref = m.initial_predictor_state(4)
        out, state = view.predictor_step(tokens, state)
        ref = m.predict_step(tokens, ref)
        assert torch.allclose(out, m.joiner.pred_proj(ref.out), atol=1e-5)
        assert torch.allclose(state, torch.cat([ref.h, ref.c], 1), atol=1e-5)
        with torch.no_grad():
            m.predictor.embed.weight.add_(0.5)
            m.predictor.lstm.weight_ih_l0.mul_(1.5)


def test_blank_penalty_in_beam_matches_greedy_and_adds_tokens():
    """A model's manifest may carry a blank penalty (store/default/8: 0.5); beam search must
    honour it exactly as greedy does, or switching a stream to beam (LM fusion, hotwords)
    would silently bring the deletions back."""
    m = _tiny()
    feats, lens = torch.randn(2, 160, 80), torch.tensor([160, 120])
    with torch.no_grad():
        m.joiner.out.bias[TransducerSearchView(m).blank] = 1.5  # a model that prefers blank, as trained ones do
        enc, enc_lens = m.encode(feats, lens)
    search = BeamSearch(TransducerSearchView(m))

    def beam_one(penalty: float) -> list[list[int]]:
        opts = DecodingOptions(search="beam", beam_size=1, blank_penalty=penalty)
        streams = [search.new_stream(opts) for _ in range(2)]
        search.search(streams, enc, enc_lens)
        return [list(search.nbest(s, 1)[0].tokens) for s in streams]

    ref, _ = model_greedy(m, enc, enc_lens, m.initial_predictor_state(2), max_symbols=1, blank_penalty=2.0)
    assert beam_one(2.0) == [[e.token for e in r] for r in ref]
    assert sum(map(len, beam_one(2.0))) > sum(map(len, beam_one(0.0)))
