"""Text-only adaptation (training/adapt.py, issue 18): ILMA lowers the internal LM's
cross-entropy on the new domain's text, trains only what the internal LM reads, and its KL
guard is zero for an unchanged model."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from decoding.tokenizer import Tokenizer
from tests.test_compression import small_whisper
from training.adapt import IlmaConfig, domain_sentences, ilm_losses, ilma
from training.lm import pad_batch

REPO = Path(__file__).resolve().parent.parent
TEXT = [
    "THE LICENSEE MAY REDISTRIBUTE THE SOFTWARE UNDER THE TERMS OF THIS LICENSE",
    "THIS LICENSE GRANTS A WORLDWIDE ROYALTY FREE NON EXCLUSIVE LICENSE TO THE LICENSEE",
    "ANY CONTRIBUTOR MAY DISTRIBUTE THE COVERED SOFTWARE IN SOURCE CODE FORM",
    "THE SOFTWARE IS PROVIDED WITHOUT WARRANTY OF ANY KIND EXPRESS OR IMPLIED",
] * 6


def test_ilma_learns_the_domain_text_and_leaves_the_acoustic_side_alone():
    tok = Tokenizer.load(REPO / "store" / "default" / "11" / "tokenizer.model")
    model = small_whisper(vocab=tok.vocab_size)
    before = copy.deepcopy(model)
    targets, lengths = pad_batch([tok.encode(s) for s in TEXT[:4]])
    ce0, kl0 = ilm_losses(model, before, targets, lengths)
    assert kl0.abs() < 1e-5  # an unchanged model: no divergence from itself
    history = ilma(model, tok, TEXT, IlmaConfig(steps=200, batch=8, lr=5e-3, kl_weight=0.2))
    model.eval()
    ce1, kl1 = ilm_losses(model, before, targets, lengths)
    assert ce1 < 0.8 * ce0 and kl1 > 0, (ce0, ce1, history)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, dict(before.named_parameters())[n])}
    assert changed and all(n.startswith(("predictor.", "joiner.pred_proj.")) for n in changed), changed


def test_domain_sentences_are_normalised_and_deduplicated(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("The Licensee may copy it. The Licensee may copy it. See section 4, below!\n")
    assert domain_sentences([f]) == ["THE LICENSEE MAY COPY IT", "SEE SECTION FOUR BELOW"]
