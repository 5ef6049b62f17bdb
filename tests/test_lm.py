"""Token LM and n-gram: training lowers the loss, the search view matches the training view."""

from __future__ import annotations

import math

import torch

from decoding.ngram import NgramLM
from models.lm import LMConfig, TokenLM, load_lm, save_lm
from training.lm import pad_batch

CORPUS = [[1, 2, 3, 4], [1, 2, 5], [6, 7, 8, 9, 3], [1, 2, 3, 4, 5], [6, 7, 2]]


def test_lm_loss_falls_in_a_few_steps():
    torch.manual_seed(0)
    lm = TokenLM(LMConfig(vocab_size=10, embed_dim=16, hidden_dim=32, dropout=0.0))
    opt = torch.optim.Adam(lm.parameters(), lr=1e-2)
    x, lens = pad_batch(CORPUS)
    losses = []
    for _ in range(30):
        loss = lm.loss(x, lens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.6 * losses[0]


def test_step_view_matches_full_sequence(tmp_path):
    torch.manual_seed(1)
    lm = TokenLM(LMConfig(vocab_size=10, embed_dim=8, hidden_dim=16, num_layers=2)).eval()
    save_lm(lm, tmp_path / "lm.pt")
    lm = load_lm(tmp_path / "lm.pt")
    seq = [3, 1, 4, 1, 5]
    logp, state = lm.init_state(1)
    total = 0.0
    for t in seq:
        total += float(logp[0, t])
        logp, state = lm.step(torch.tensor([t]), state)
    total += float(logp[0, lm.config.bos_eos])
    x, lens = pad_batch([seq])
    assert math.isclose(total, float(lm.sentence_logprob(x, lens)[0]), abs_tol=1e-4)


def test_ngram_is_normalised_and_prefers_seen_continuations():
    lm = NgramLM(10, order=3).fit(CORPUS)
    row = torch.from_numpy(lm.logprobs([lm.bos_eos, 1, 2])).exp()
    assert abs(float(row.sum()) - 1.0) < 1e-6
    assert row[3] > row[9]  # "1 2 3" was seen, "1 2 9" was not
    logp, state = lm.init_state(2)
    logp2, state = lm.step(torch.tensor([1, 6]), state)
    assert logp2[0, 2] > logp2[1, 2]
    assert lm.sentence_logprob([1, 2, 3, 4]) > lm.sentence_logprob([4, 3, 2, 1])


SENTENCES = ["THE MEETING STARTS AT NINE", "PLEASE SHARE YOUR SCREEN", "THE BUDGET IS ON THE AGENDA",
             "CAN EVERYONE HEAR ME", "LET US START THE MEETING", "THE SCREEN IS SHARED NOW"]


def test_minutes_train_lm_print_config(capsys, monkeypatch):
    """Defaults < recipe < environment < flags, printed without training."""
    import json

    from training.cli import main

    monkeypatch.setenv("MINUTES_LM_HIDDEN_DIM", "64")
    assert main(["lm", "--print-config", "--max-steps", "7", "--sources", "bible,meeting"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["max_steps"] == 7 and cfg["sources"] == ["bible", "meeting"] and cfg["hidden_dim"] == 64
    assert cfg["out"] == "/work/data/exp/lm/bible/lm.pt"  # from the default recipe, lm_bible.toml


def test_minutes_train_lm_cli_loss_falls_and_resumes(tmp_path):
    """`minutes train lm` (through training.cli.main, as the entry point runs it): the recorded
    training loss falls, and --resume continues the same run to a larger step budget."""
    import json

    from decoding.tokenizer import Tokenizer
    from training.cli import main

    Tokenizer.train(SENTENCES * 20, 40, tmp_path / "tok")
    text = tmp_path / "text.txt"
    text.write_text("\n".join(SENTENCES * 8) + "\n")
    out = tmp_path / "lm" / "lm.pt"
    args = ["lm", "--sources", f"text:{text}", "--tokenizer", str(tmp_path / "tok" / "spm.model"), "--out", str(out),
            "--embed-dim", "16", "--hidden-dim", "32", "--batch-size", "8", "--dev-sentences", "6", "--lr", "0.01",
            "--eval-every", "10", "--max-minutes", "2", "--no-progress", "--dropout", "0"]
    assert main([*args, "--max-steps", "30"]) == 0
    hist = json.loads(out.with_suffix(".json").read_text())["history"]
    assert hist[-1]["step"] == 30 and hist[-1]["train_loss"] < 0.7 * hist[0]["train_loss"]
    assert hist[-1]["dev_ppl"] < hist[0]["dev_ppl"]
    assert main([*args, "--max-steps", "40", "--resume"]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["steps"] == 40 and [h["step"] for h in res["history"]][:4] == [1, 10, 20, 30]
    lm = load_lm(out)
    assert lm.config.hidden_dim == 32
