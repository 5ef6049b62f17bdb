"""MWER loss: gradient sign on a toy N-best, and through the real (tiny) transducer."""

from __future__ import annotations

import math

import torch

from decoding.beam_search import BeamSearch
from decoding.options import DecodingOptions
from decoding.transducer_view import TransducerSearchView
from models.encoder import EncoderConfig
from models.transducer import Transducer, TransducerConfig
from training.mwer import mwer_loss, sequence_scores, word_errors


def test_gradient_lowers_bad_hypotheses_and_raises_good_ones():
    scores = torch.tensor([[-1.0, -1.2, -0.8], [-2.0, -2.0, 0.0]], requires_grad=True)
    errors = torch.tensor([[0, 2, 4], [1, 3, 0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])  # 2nd N-best has 2 hyps
    loss = mwer_loss(scores, errors, mask)
    loss.backward()
    g = scores.grad
    # Descent moves S against the gradient: the fewest-error hypothesis must go up, the most down.
    assert g[0, 0] < 0 and g[0, 2] > 0
    assert g[1, 0] < 0 and g[1, 1] > 0 and g[1, 2] == 0
    # Equal errors everywhere: nothing to learn.
    flat = torch.zeros(1, 3, requires_grad=True)
    mwer_loss(flat, torch.tensor([[2, 2, 2]])).backward()
    assert torch.allclose(flat.grad, torch.zeros(1, 3))


def test_word_errors():
    assert word_errors("THE CAT SAT", ["THE CAT SAT", "THE HAT SAT", "CAT", ""]) == [0, 1, 2, 3]


def _tiny():
    torch.manual_seed(0)
    enc = EncoderConfig(n_mels=80, d_model=32, n_layers=1, n_heads=2, ff_mult=2, conv_kernel=3,
                        subsample_channels=8, chunk_frames=4, left_chunks=2)
    return Transducer(TransducerConfig(vocab_size=12, encoder=enc, embed_dim=16, pred_dim=16, joint_dim=16))


def test_ilm_term_matches_the_beam_search_and_mwer_steps_favour_the_good_hypothesis():
    m = _tiny().eval()
    feats, lens = torch.randn(1, 120, 80), torch.tensor([120])
    with torch.no_grad():
        enc, enc_lens = m.encode(feats, lens)
    search = BeamSearch(TransducerSearchView(m))
    s = search.new_stream(DecodingOptions(search="beam", beam_size=3, nbest=3, ilm_weight=1.0))
    search.search([s], enc, enc_lens)
    hyp = search.nbest(s, 1)[0]
    owner, zero = torch.tensor([0]), torch.zeros(1)
    with torch.no_grad():
        plain = sequence_scores(m, enc, enc_lens, [hyp.tokens], owner, zero, 0.0, 0.0)
        ilme = sequence_scores(m, enc, enc_lens, [hyp.tokens], owner, zero, 0.0, 1.0)
    assert abs(float(plain - ilme) - hyp.ilm_score) < 1e-3

    seqs = [(3, 4, 5), (6, 7)]  # pretend the first has 0 word errors and the second 2
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    owner = torch.tensor([0, 0])

    def posterior():
        with torch.no_grad():
            e, el = m.encode(feats, lens)
            return sequence_scores(m, e, el, seqs, owner, torch.zeros(2), 0.0, 0.5).softmax(0)[0]

    before = posterior()
    for _ in range(3):
        e, el = m.encode(feats, lens)
        sc = sequence_scores(m, e, el, seqs, owner, torch.zeros(2), 0.0, 0.5)
        loss = mwer_loss(sc.unsqueeze(0), torch.tensor([[0, 2]]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert posterior() > before


def test_minutes_train_mwer_print_config(capsys):
    """--variant picks the recipe (its λ's), flags override it; nothing is trained."""
    import json

    from training.cli import main

    assert main(["mwer", "--variant", "mwer_ilme", "--print-config", "--lr", "1e-4"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["lm_weight"] > 0 and cfg["ilm_weight"] > 0 and cfg["lr"] == 1e-4
    assert main(["mwer", "--variant", "mwer", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["lm_weight"] == 0.0


def test_minutes_train_mwer_cli_loss_falls_and_resumes(tmp_path):
    """`minutes train mwer` (MWER-ILME: LM and ILM in the loop) on two real utterances from a
    tiny base: the interpolated loss falls over a few steps, and --resume continues the run."""
    import json

    import soundfile as sf
    from test_asr_model import real_utterances, tiny_config

    from decoding.tokenizer import Tokenizer
    from models.lm import LMConfig, TokenLM, save_lm
    from models.transducer import save_checkpoint
    from training.cli import main

    utts = real_utterances(2)
    tok = Tokenizer.train([t for _, t in utts] * 20, 40, tmp_path / "tok")
    rows = []
    for i, (wav, text) in enumerate(utts):
        path = tmp_path / f"u{i}.flac"
        sf.write(path, wav.numpy(), 16000)
        rows.append({"id": f"u{i}", "audio": str(path), "sample_rate": 16000, "channels": 1,
                     "duration": wav.numel() / 16000, "text": text, "speaker": "s", "source": "speechocean762",
                     "split": "train"})
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "base.pt", Transducer(tiny_config(tok.vocab_size)), {"tokenizer": tok.proto})
    save_lm(TokenLM(LMConfig(tok.vocab_size - 1, 16, 32)), tmp_path / "lm.pt", tokenizer=tok.proto)
    out = tmp_path / "mwer_ilme.pt"
    args = ["mwer", "--variant", "mwer_ilme", "--base", str(tmp_path / "base.pt"), "--out", str(out),
            "--lm", str(tmp_path / "lm.pt"), "--lm-weight", "0.3", "--ilm-weight", "0.3",
            "--train-manifests", str(manifest), "--max-duration", "30", "--batch-utts", "2", "--lr", "0.003",
            "--rnnt-weight", "1.0", "--save-every", "3", "--max-minutes", "2", "--no-progress"]
    assert main([*args, "--max-steps", "6"]) == 0
    hist = json.loads(out.with_suffix(".json").read_text())["history"]
    assert len(hist) == 6 and all(math.isfinite(h["mwer"]) for h in hist)
    assert hist[-1]["loss"] < 0.8 * hist[0]["loss"]
    assert main([*args, "--max-steps", "8", "--resume"]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["steps"] == 8 and [h["step"] for h in res["history"]] == list(range(1, 9))
