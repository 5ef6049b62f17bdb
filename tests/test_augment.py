"""Feature-domain augmentation: the VTLN warp on cached log-mel matches Kaldi's warped filterbank."""

from __future__ import annotations

import pytest
import torch

from models.features import fbank
from tests.test_asr_model import real_utterances
from training.data import freq_warp


@pytest.mark.parametrize("factor", [0.88, 1.12])
def test_freq_warp_approximates_kaldi_vtln(factor: float):
    wave, _ = real_utterances(1)[0]
    plain = fbank(wave)
    reference = fbank(wave, vtln_warp=factor)  # Kaldi's warped filterbank

    def error(x: torch.Tensor) -> float:
        return float((x - reference).abs().mean())

    # the warp moves the features most of the way to Kaldi's (re-binning energy is not the same
    # as interpolating log energies, so not all of it), and the opposite warp moves them away
    assert error(freq_warp(plain, factor)) < 0.35 * error(plain)
    assert error(freq_warp(plain, 1 / factor)) > error(plain)


def test_freq_warp_identity_and_shape():
    feats = torch.randn(50, 80)
    assert freq_warp(feats, 1.0) is feats
    assert freq_warp(feats, 1.004) is feats  # rounded to 0.01
    out = freq_warp(feats, 0.9)
    assert out.shape == feats.shape and torch.isfinite(out).all()
