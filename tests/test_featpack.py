"""Feature packs and checkpoint shards: what leaves this machine for a lent accelerator comes
back the same, and a pack trains exactly like the manifests it was made from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.transducer import Transducer, load_checkpoint, save_checkpoint
from training.featpack import build_packs, quantise, read_pack, dequantise
from training.transfer import join_checkpoint, split_checkpoint
from tests.test_asr_model import tiny_config, write_real_manifest


def test_quantisation_error_is_small_against_feature_spread():
    rng = np.random.default_rng(0)
    feats = rng.normal(5.0, 3.0, size=(300, 80)).astype(np.float32)
    codes, lo, hi = quantise(feats, bits=6)
    back = dequantise(codes, lo, hi, bits=6).numpy()
    err = np.abs(back - feats)
    step = (hi - lo) / 63
    assert err.max() <= step / 2 + 1e-5
    assert err.mean() < 0.05 * feats.std()


def test_packs_split_by_budget_and_read_back_real_features(tmp_path: Path):
    from training.data import FeatureCache, read_items

    manifest = write_real_manifest(tmp_path, 12)
    items = read_items([str(manifest)])
    total_mb = sum(FeatureCache().get(it).shape[0] * 80 for it in items) * 0.52 / 1e6
    reports = build_packs([str(manifest)], [tmp_path / "a", tmp_path / "b"], [total_mb / 2, total_mb], "train",
                          shuffle_from=9)
    assert len(reports) == 2 and reports[0]["items"] > 0 and reports[1]["items"] > 0
    packed = read_pack(tmp_path / "a" / "train") + read_pack(tmp_path / "b" / "train")
    assert [it.text for it, _ in packed] == [it.text for it in items]  # order kept, nothing lost
    cache = FeatureCache()
    for (it, feats), orig in zip(packed, items):
        ref = cache.get(orig)
        assert feats.shape == ref.shape
        kept = ref > ref.max() - 30  # below the kept range values are clipped on purpose
        assert (feats.float() - ref)[kept].abs().max() < 0.3


def test_whisper_feature_packs_keep_their_kind(tmp_path: Path):
    """A pack of Whisper log-mel reads back within its 6-bit step and is refused where Kaldi
    fbank is expected (and the other way round)."""
    import pytest

    from models.features import FbankConfig
    from training.data import FeatureCache, read_items

    manifest = write_real_manifest(tmp_path, 3)
    build_packs([str(manifest)], [tmp_path / "w"], [50.0], "train", features="whisper")
    packed = read_pack(tmp_path / "w" / "train", features="whisper")
    cache = FeatureCache(FbankConfig(kind="whisper"))
    for (it, feats), orig in zip(packed, read_items([str(manifest)])):
        ref = cache.get(orig)
        assert (feats.float() - ref).abs().max() < 2.0 / 63  # one quantisation step over Whisper's range
    with pytest.raises(ValueError, match="whisper features"):
        read_pack(tmp_path / "w" / "train", features="kaldi")


def test_checkpoint_survives_split_and_join(tmp_path: Path):
    torch.manual_seed(0)
    model = Transducer(tiny_config())
    save_checkpoint(tmp_path / "m.pt", model, {"step": 7, "optimizer": {"big": torch.zeros(10)}})
    paths = split_checkpoint(tmp_path / "m.pt", tmp_path / "shards", max_mb=0.1)
    assert len(paths) > 2
    back, blob = load_checkpoint(join_checkpoint(tmp_path / "shards", tmp_path / "joined.pt"))
    assert blob["step"] == 7 and "optimizer" not in blob
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
