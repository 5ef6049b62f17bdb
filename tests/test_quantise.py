"""Dynamic int8 encoder (compression/quantise.py): close to float on real speech, applied by the
loader when a store manifest asks for it, and refused for a module the model does not have."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compression.quantise import apply_compression, is_quantised, quantise_int8
from tests.test_server_stream import SO, clip, model_store  # noqa: F401

pytestmark = pytest.mark.skipif(not SO.is_dir(), reason="speechocean762 is not at ../shared/data")


def test_int8_encoder_stays_close_to_float_and_loads_from_the_manifest(model_store, tmp_path):  # noqa: F811
    from compression.store import ModelStore
    from decoding.recogniser import Recogniser
    from training.package import package

    torch.set_num_threads(1)
    folder = ModelStore(model_store[0]).resolve("default")[0]
    rec = Recogniser.load(folder)
    x = clip("SPEAKER0005/000050003").astype(np.float32)
    feats = torch.randn(1, 200, rec.model.cfg.features.num_mel_bins)
    lens = torch.tensor([200])
    with torch.no_grad():
        ref, _ = rec.model.encode(feats, lens)
    words_float = [w.text for w in rec.transcribe(x)]
    assert not is_quantised(rec.model.encoder)
    quantise_int8(rec.model, ["encoder"])
    assert is_quantised(rec.model.encoder)
    with torch.no_grad():
        out, _ = rec.model.encode(feats, lens)
    cos = torch.nn.functional.cosine_similarity(ref.flatten(), out.flatten(), dim=0)
    assert cos > 0.98, float(cos)  # int8 weights move the states a little, not the picture
    if model_store[1]:  # the trained model: the words hardly change
        words_int8 = [w.text for w in rec.transcribe(x)]
        same = sum(a == b for a, b in zip(words_float, words_int8))
        assert same >= 0.7 * max(len(words_float), 1), (words_float, words_int8)
    with pytest.raises(ValueError, match="no module 'decoder'"):
        apply_compression(rec.model, {"int8_dynamic": ["decoder"]})
    # packaged with the flag, the loader quantises; the stored weights stay float
    ckpt = folder / "model.pt"
    out_dir = package(ckpt, "default", "1", {}, store_root=tmp_path / "store", compression={"int8_dynamic": ["encoder"]})
    loaded = Recogniser.from_store(tmp_path / "store", "default/1")
    assert is_quantised(loaded.model.encoder) and loaded.manifest.compression == {"int8_dynamic": ["encoder"]}
    assert not is_quantised(Recogniser.load(ckpt).model.encoder) and out_dir.name == "1"


def test_the_shipped_fast_model_loads_int8_and_greedy_from_default_weights():
    """store/fast: default/9's very weights (the same blob), quantised by the loader, greedy."""
    from compression.store import ModelStore
    from decoding.recogniser import Recogniser
    from tests.conftest import REPO

    store = ModelStore(REPO / "store")
    if not store.versions("fast"):
        pytest.skip("no fast model in the store")
    rec = Recogniser.from_store(store, "fast")
    assert is_quantised(rec.model.encoder) and rec.options.search == "greedy" and rec.beam.search.lm is None
    assert rec.manifest.files["model.pt"] == store.resolve(*rec.manifest.base.split("/"))[1].files["model.pt"]
