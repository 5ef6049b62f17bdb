"""Streaming transducer model: streaming == whole-utterance, losses fall, checkpoints round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from decoding.greedy import greedy_decode_batch
from decoding.tokenizer import Tokenizer
from models.encoder import EncoderConfig
from models.features import FbankConfig, fbank
from models.transducer import Transducer, TransducerConfig, load_checkpoint, save_checkpoint
from training.data import collate, load_audio

SPEECHOCEAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "speechocean762-train"


def tiny_config(vocab: int = 257) -> TransducerConfig:
    enc = EncoderConfig(d_model=64, n_layers=2, n_heads=4, subsample_channels=8, chunk_frames=4,
                        left_chunks=2, conv_kernel=5, dropout=0.0)
    return TransducerConfig(vocab_size=vocab, encoder=enc, embed_dim=64, pred_dim=64, joint_dim=64)


def real_utterances(n: int) -> list[tuple[torch.Tensor, str]]:
    if not SPEECHOCEAN.exists():
        pytest.skip("speechocean762 not available")
    lines = (SPEECHOCEAN / "text").read_text().splitlines()[:n]
    spk = dict(line.split(maxsplit=1) for line in (SPEECHOCEAN / "utt2spk").read_text().splitlines())
    out = []
    for line in lines:
        uid, text = line.split("\t", 1)
        wav = load_audio(str(SPEECHOCEAN / "audio" / f"SPEAKER{spk[uid].strip()}" / f"{uid}.flac"))
        out.append((wav, text))
    return out


def write_real_manifest(folder: Path, n: int) -> Path:
    """The first `n` real utterances as FLAC files plus a corpus manifest over them
    (`folder/train.jsonl`), for tests of what reads manifests."""
    import json

    import soundfile as sf

    rows = []
    for i, (wav, text) in enumerate(real_utterances(n)):
        p = folder / f"u{i}.flac"
        sf.write(p, wav.numpy(), 16000)
        rows.append({"id": f"u{i}", "audio": p.name, "sample_rate": 16000, "channels": 1,
                     "duration": wav.numel() / 16000, "text": text, "speaker": "s", "source": "speechocean762",
                     "split": "train"})
    manifest = folder / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_fbank_chunkwise_equals_whole():
    cfg = FbankConfig()
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)
    whole = fbank(wave, cfg)
    # 0.13 s pieces, carrying the leftover samples exactly as the recogniser does
    buf, parts = torch.zeros(0), []
    for i in range(0, wave.numel(), 2080):
        buf = torch.cat([buf, wave[i : i + 2080]])
        n = cfg.num_frames(buf.numel())
        if n:
            parts.append(fbank(buf[: cfg.window + (n - 1) * cfg.shift], cfg))
            buf = buf[n * cfg.shift :]
    assert torch.allclose(torch.cat(parts), whole, atol=1e-4)


def stream_in_chunks(model: Transducer, x: torch.Tensor):
    """x (1, T, F) through `stream_encode` a chunk at a time, the last call shorter, as the
    recogniser does -> (the frames, the final encoder state)."""
    s, c, t = model.cfg.encoder.subsampling, model.cfg.encoder.chunk_frames, x.shape[1]
    state, outs, i = model.initial_encoder_state(1), [], 0
    while i + s <= t:
        n = min(c, (t - i) // s)
        y, state = model.stream_encode(x[:, i : i + n * s], state)
        outs.append(y)
        i += n * s
    return torch.cat(outs, 1), state


@pytest.mark.parametrize("tail", [0, 5, 13])
def test_streaming_encoder_equals_full_forward(tail: int):
    torch.manual_seed(0)
    model = Transducer(tiny_config()).eval()
    s, c = model.cfg.encoder.subsampling, model.cfg.encoder.chunk_frames
    t = s * c * 9 + tail
    x = torch.randn(1, t, 80)
    with torch.no_grad():
        full, lens = model.encode(x, torch.tensor([t]))
        stream, _ = stream_in_chunks(model, x)
        assert stream.shape == full.shape and int(lens[0]) == full.shape[1]
        assert torch.allclose(stream, full, atol=1e-4)
        # logits too: the joiner on the same frames and the start predictor state
        p = model.initial_predictor_state(1)
        assert torch.allclose(model.join(stream[:, 3], p.out), model.join(full[:, 3], p.out), atol=1e-4)


def test_padding_does_not_change_outputs():
    torch.manual_seed(0)
    model = Transducer(tiny_config()).eval()
    x = torch.randn(2, 200, 80)
    with torch.no_grad():
        batch, lens = model.encode(x, torch.tensor([200, 120]))
        alone, _ = model.encode(x[1:, :120], torch.tensor([120]))
    assert torch.allclose(batch[1, : int(lens[1])], alone[0], atol=1e-4)


def test_tiny_model_learns_real_speech_and_round_trips(tmp_path: Path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    utts = sorted(real_utterances(12), key=lambda u: u[0].numel())[:5]
    tok = Tokenizer.train([t for _, t in utts] * 20, 40, tmp_path)
    model = Transducer(tiny_config(tok.vocab_size))
    feats = [fbank(w) for w, _ in utts]
    allf = torch.cat(feats)
    model.feat_mean.copy_(allf.mean(0))
    model.feat_std.copy_(allf.std(0))
    x, fl, y, tl = collate(feats, [tok.encode(t) for _, t in utts])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = last = None
    for step in range(30):
        losses = model.forward_losses(x, fl, y, tl)
        loss = losses["rnnt"] + 0.5 * losses["ctc"] + 0.1 * losses["ilm"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        first = first if first is not None else {k: float(v.detach()) for k, v in losses.items()}
        last = {k: float(v.detach()) for k, v in losses.items()}
    assert last["rnnt"] < 0.7 * first["rnnt"], (first, last)
    assert last["ctc"] < 0.7 * first["ctc"], (first, last)
    assert last["ilm"] < first["ilm"], (first, last)

    model.eval()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, {"tokenizer": tok.proto})
    again, blob = load_checkpoint(path)
    assert again.cfg == model.cfg
    assert Tokenizer(blob["tokenizer"]).encode("HELLO") == tok.encode("HELLO")
    with torch.no_grad():
        a, _ = model.encode(x, fl)
        b, _ = again.encode(x, fl)
    assert torch.equal(a, b)
    assert greedy_decode_batch(model, x, fl) == greedy_decode_batch(again, x, fl)


def tiny_recogniser(texts: list[str], folder):
    """A recogniser over an untrained tiny model whose blank is discouraged, so that it emits
    tokens (shared by the recogniser and beam-search tests)."""
    from decoding.recogniser import Recogniser
    from decoding.tokenizer import Tokenizer
    from models.transducer import Transducer, save_checkpoint

    torch.manual_seed(0)
    tok = Tokenizer.train(texts * 20, 40, folder)
    model = Transducer(tiny_config(tok.vocab_size)).eval()
    with torch.no_grad():
        model.joiner.out.bias[0] = -3.0
    save_checkpoint(folder / "model.pt", model, {"tokenizer": tok.proto})
    return Recogniser.load(folder)
