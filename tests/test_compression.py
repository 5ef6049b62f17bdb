"""Compression (issue 17): shrinking, block masks and their packed kernels, plans, the onnxruntime
encoder, MEST's mask keeper, and pruned variants sealed in the store."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from compression.block_sparse import BlockColumnLinear, BlockRowLinear
from compression.masks import block_column_mask, block_row_mask, mask_for, unstructured_mask
from compression.plan import LayerPlan, PrunePlan, apply_plan, plan_sparsity
from compression.shrink import ShrinkSpec, shrink_transducer
from models.transducer import Transducer, TransducerConfig
from models.whisper_encoder import WhisperEncoderConfig
from tests.test_asr_model import stream_in_chunks


def small_whisper(seed: int = 0, vocab: int = 41) -> Transducer:
    torch.manual_seed(seed)
    enc = WhisperEncoderConfig(d_model=64, n_layers=3, n_heads=4, n_positions=40, chunk_frames=3, left_chunks=2,
                               dropout=0.0)
    return Transducer(TransducerConfig(vocab_size=vocab, encoder=enc, embed_dim=32, pred_dim=32, joint_dim=32)).eval()


def feats(model: Transducer, chunks: int = 5, tail: int = 6) -> torch.Tensor:
    e = model.cfg.encoder
    torch.manual_seed(7)
    return torch.randn(1, e.subsampling * e.chunk_frames * chunks + tail, 80)


def test_shrinking_nothing_is_the_same_model_and_a_shrunk_model_still_streams_exactly():
    model = small_whisper()
    x = feats(model)
    t = torch.tensor([x.shape[1]])
    same = shrink_transducer(model, [ShrinkSpec()] * 3)
    small = shrink_transducer(model, [ShrinkSpec(128, 2), ShrinkSpec(64, 3), ShrinkSpec(32, 1)], keep_layers=[0, 1, 2])
    dropped = shrink_transducer(model, [ShrinkSpec(128, 2)] * 2, keep_layers=[0, 2])
    with torch.no_grad():
        ref, _ = model.encode(x, t)
        assert torch.allclose(same.encode(x, t)[0], ref, atol=1e-5)
        for m in (small, dropped):
            full, _ = m.encode(x, t)
            stream, _ = stream_in_chunks(m, x)
            assert torch.allclose(stream, full, atol=1e-4)  # per-layer head counts share one cache
            assert not torch.allclose(full, ref, atol=1e-2)  # and it is a different model
    assert small.encoder.cfg.ff_dims == [128, 64, 32] and small.encoder.cfg.layer_heads == [2, 3, 1]
    assert small.num_params() < model.num_params() and dropped.encoder.cfg.n_layers == 2
    with pytest.raises(ValueError, match="keep 0 of"):
        shrink_transducer(model, [ShrinkSpec(0)] * 3)


def test_shrinking_keeps_the_strongest_neurons():
    """Zero the second linear's column of half the neurons: those, and only those, go."""
    model = small_whisper()
    mlp = model.encoder.blocks[0].mlp
    weak = torch.arange(0, mlp[0].out_features, 2)
    with torch.no_grad():
        mlp[2].weight[:, weak] = 0.0
    x = feats(model)
    t = torch.tensor([x.shape[1]])
    half = mlp[0].out_features // 2
    small = shrink_transducer(model, [ShrinkSpec(half), ShrinkSpec(), ShrinkSpec()])
    with torch.no_grad():  # the removed neurons wrote nothing: the output is unchanged
        assert torch.allclose(small.encode(x, t)[0], model.encode(x, t)[0], atol=1e-5)


@pytest.mark.parametrize("sparsity", [0.5, 0.75, 0.875])
def test_block_masks_pack_into_kernels_that_compute_the_masked_layer(sparsity: float):
    torch.manual_seed(1)
    lin = nn.Linear(96, 128)
    x = torch.randn(5, 7, 96)
    col = block_column_mask(lin.weight, sparsity, 32)
    blocks = col.view(4, 32, 96)
    assert (blocks == blocks[:, :1]).all()  # whole columns inside each block of rows
    assert (blocks[:, 0].sum(1) == round(96 * (1 - sparsity))).all()  # the same count per block
    row = block_row_mask(lin.weight, sparsity, 32)
    assert (row.view(128, 3, 32) == row.view(128, 3, 32)[:, :, :1]).all()
    un = unstructured_mask(lin.weight, sparsity)
    assert abs(float(1 - un.mean()) - sparsity) < 0.01
    for kernel, mask in ((BlockColumnLinear, col), (BlockRowLinear, row)):
        packed = kernel(lin.weight, mask, lin.bias, 32)
        want = nn.functional.linear(x, lin.weight * mask, lin.bias)
        assert torch.allclose(packed(x), want, atol=1e-5)
        assert packed.weight.numel() == int(mask.sum())  # only kept weights are stored
    with pytest.raises(ValueError, match="not block-column structured"):
        BlockColumnLinear(lin.weight, un, lin.bias, 32)
    with pytest.raises(ValueError, match="unknown pruning scheme"):
        mask_for(lin.weight, "diagonal", 0.5)


def test_a_plan_round_trips_through_json_and_toml_and_applies(tmp_path):
    model = small_whisper()
    plan = PrunePlan(base="test/1", mapping="rule", runtime="onnxruntime", shrink=[ShrinkSpec(128, 2)] * 3,
                     layers={"encoder.blocks.1.mlp.0.weight": LayerPlan("block_col", 0.75, 32),
                             "encoder.blocks.2.attn.out.weight": LayerPlan("block_row", 0.5, 16),
                             "predictor.lstm.weight_hh": LayerPlan("unstructured", 0.5)},
                     notes={"why": "test"})
    plan.save(tmp_path / "p.json")
    back = PrunePlan.load(tmp_path / "p.json")
    assert back == plan
    toml = tmp_path / "p.toml"
    toml.write_text('base = "test/1"\nmapping = "rule"\n[[shrink]]\nff_keep = 128\nheads_keep = 2\n'
                    '[[shrink]]\nff_keep = 128\nheads_keep = 2\n[[shrink]]\nff_keep = 128\nheads_keep = 2\n'
                    '[layers."encoder.blocks.1.mlp.0.weight"]\nscheme = "block_col"\nsparsity = 0.75\nblock = 32\n')
    assert PrunePlan.load(toml).layers["encoder.blocks.1.mlp.0.weight"] == plan.layers["encoder.blocks.1.mlp.0.weight"]
    if "predictor.lstm.weight_hh" not in dict(model.named_parameters()):
        name = next(n for n, p in model.named_parameters() if n.startswith("predictor") and p.dim() == 2)
        plan.layers[name] = plan.layers.pop("predictor.lstm.weight_hh")  # LSTM gates by their real name
    pruned, masks = apply_plan(model, plan)
    params = dict(pruned.named_parameters())
    for name, mask in masks.items():
        assert (params[name][mask == 0] == 0).all()
    shrunk_only, _ = apply_plan(model, PrunePlan(shrink=plan.shrink))
    assert 0.3 < plan_sparsity(shrunk_only, model) < plan_sparsity(pruned, model) < 0.6  # half of each block, then masks
    with pytest.raises(ValueError, match="unknown plan keys"):
        PrunePlan.from_dict({"layerz": {}})
    with pytest.raises(KeyError, match="does not have"):
        apply_plan(model, PrunePlan(layers={"encoder.nothing.weight": LayerPlan("unstructured", 0.5)}))


def test_the_onnxruntime_encoder_streams_the_numbers_torch_streams():
    """A shrunk and block-pruned encoder, packed, exported: the same frames chunk by chunk, in
    float; int8 close. Batched streams and a short last chunk run through the one graph."""
    from compression.compile import pack_model
    from compression.quantise import apply_compression

    model = small_whisper()
    plan = PrunePlan(shrink=[ShrinkSpec(128, 3)] * 3,
                     layers={"encoder.blocks.0.mlp.0.weight": LayerPlan("block_col", 0.75, 16),
                             "encoder.blocks.1.mlp.2.weight": LayerPlan("block_col", 0.5, 16)})
    pruned, _ = apply_plan(model, plan)
    x = feats(pruned, chunks=4, tail=5)
    with torch.no_grad():
        want, _ = stream_in_chunks(pruned, x)
        assert pack_model(pruned, plan) == list(plan.layers)
        packed, _ = stream_in_chunks(pruned, x)
        assert torch.allclose(packed, want, atol=1e-5)
        apply_compression(pruned, {"runtime": "onnxruntime"})
        assert type(pruned.encoder).__name__ == "OnnxStreamingEncoder"
        got, state = stream_in_chunks(pruned, x)
        assert torch.allclose(got, want, atol=1e-4)
        two = torch.cat([x, x.flip(1)])
        s2 = type(state).stack([pruned.initial_encoder_state(1), pruned.initial_encoder_state(1)])
        y2, _ = pruned.stream_encode(two[:, :12], s2)  # one trained chunk, two streams
        assert torch.allclose(y2[0], want[0, : y2.shape[1]], atol=1e-4)
        int8 = small_whisper()
        ref, _ = stream_in_chunks(int8, x)
        apply_compression(int8, {"runtime": "onnxruntime-int8"})
        q, _ = stream_in_chunks(int8, x)
        # int8 activations are scaled per tensor: batched beside a loud stream, a stream's
        # numbers must still be its own
        loud = torch.cat([x[:, :12], 50 * x[:, :12]])
        s2 = type(state).stack([int8.initial_encoder_state(1), int8.initial_encoder_state(1)])
        alone, _ = int8.stream_encode(x[:, :12], int8.initial_encoder_state(1))
        assert torch.equal(int8.stream_encode(loud, s2)[0][:1], alone)
    # per-tensor int8 of a random 64-wide model moves its states more than a trained model's
    # (whose WER it does not change: bench/results/compression.md); still the same picture
    assert torch.nn.functional.cosine_similarity(q.flatten(), ref.flatten(), dim=0) > 0.85
    with pytest.raises(ValueError, match="unknown runtime"):
        apply_compression(small_whisper(), {"runtime": "tensorrt"})


@pytest.mark.parametrize("soft", [True, False])
def test_mest_mutates_masks_but_keeps_sparsity_and_block_structure(soft: bool):
    from training.sparse import MaskKeeper, SparseConfig

    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64))
    layers = {"0.weight": LayerPlan("block_col", 0.75, 32), "2.weight": LayerPlan("unstructured", 0.5)}
    params = dict(net.named_parameters())
    masks = {k: mask_for(params[k], lp.scheme, lp.sparsity, lp.block) for k, lp in layers.items()}
    start = {k: m.clone() for k, m in masks.items()}
    keeper = MaskKeeper(net, masks, layers, SparseConfig("mest", interval=10, rate=0.25, end=50, soft_bound=soft))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    grew = moved = False
    for step in range(1, 61):
        loss = net(torch.randn(16, 64)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        stats = keeper.after_update()
        grew |= bool(keeper.pending) and keeper.sparsity() < 0.625 - 1e-6  # grown beyond the bound for a while
        moved |= not torch.equal(keeper.masks["0.weight"], start["0.weight"])
        assert 0.0 <= stats.get("mest_turnover", 0.0) <= 1.0
        if not keeper.pending:  # outside a soft bound's grown interval, the bound holds exactly
            m = keeper.masks["0.weight"].view(4, 32, 64)
            assert (m == m[:, :1]).all() and (m[:, 0].sum(1) == 16).all(), step
            assert int(keeper.masks["2.weight"].sum()) == int(start["2.weight"].sum()), step
        for k, m in keeper.masks.items():
            assert (params[k][m == 0] == 0).all()
    assert moved and grew == soft  # the masks moved; only the soft bound lets memory exceed the bound
    assert keeper.rate_now() == 0.0  # elastic mutation has decayed to nothing by `end`
    state = keeper.state_dict()
    again = MaskKeeper(net, start, layers, SparseConfig("mest"))
    again.load_state_dict(state)
    assert all(torch.equal(again.masks[k].bool(), keeper.masks[k].bool()) for k in layers)


def test_a_pruned_variant_is_sealed_loaded_packed_and_refused_when_tampered(tmp_path):
    from compression.store import ChecksumError
    from decoding.recogniser import Recogniser
    from decoding.tokenizer import Tokenizer
    from models.transducer import save_checkpoint
    from training.package import package

    from tests.conftest import REPO

    tok = Tokenizer.load(REPO / "store" / "default" / "10" / "tokenizer.model")
    model = small_whisper(vocab=tok.vocab_size)
    plan = PrunePlan(runtime="torch", layers={"encoder.blocks.0.mlp.0.weight": LayerPlan("block_col", 0.75, 32)})
    pruned, masks = apply_plan(model, plan)
    ckpt = tmp_path / "pruned.pt"
    save_checkpoint(ckpt, pruned, {"tokenizer": tok.proto, "step": 0, "prune_plan": plan.to_dict(),
                                   "masks": {k: v.bool() for k, v in masks.items()}})
    root = tmp_path / "store"
    package(ckpt, "small", "1", {}, store_root=root, compression={"runtime": "torch", "int8_search": True})
    rec = Recogniser.from_store(root, "small/1")
    assert type(rec.model.encoder.blocks[0].mlp[0]).__name__ == "BlockColumnLinear"
    assert rec.model.predictor.hh_int8 is not None  # the manifest's int8_search, applied by the loader
    manifest = json.loads((root / "small" / "1" / "manifest.json").read_text())
    assert manifest["compression"]["plan"]["layers"] and 0.0 < manifest["sparsity"] < 0.2
    with open(root / "small" / "1" / "model.pt", "r+b") as fh:  # one flipped byte in the weights
        fh.seek(-100, 2)
        b = fh.read(1)
        fh.seek(-100, 2)
        fh.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(ChecksumError):
        Recogniser.from_store(root, "small/1")


@pytest.mark.parametrize("signal,threshold", [("rnnt", 1e6), ("ctc_cer", 1.0)])
def test_sparse_fine_tuning_holds_masks_mutates_with_mest_and_drops_unforgettable_utterances(tmp_path, signal, threshold):
    """The trainer on a pruned checkpoint (`minutes prune apply`'s format): masks hold in the raw
    weights, the average and best.pt; MEST's state and the forgetting statistics survive a resume;
    utterances learned at every visit leave later epochs."""
    from dataclasses import replace

    from models.transducer import load_checkpoint, save_checkpoint
    from tests.test_asr_model import write_real_manifest
    from tests.test_weight_averaging import tiny_recipe
    from training.asr import Trainer

    torch.manual_seed(0)
    manifest = write_real_manifest(tmp_path, 4)
    Trainer(tiny_recipe(tmp_path / "dense", manifest, max_steps=2)).run()
    model, blob = load_checkpoint(tmp_path / "dense" / "exp" / "last.pt")
    name = next(n + ".weight" for n, m in model.named_modules()
                if isinstance(m, nn.Linear) and n.startswith("encoder") and m.out_features % 16 == 0)
    plan = PrunePlan(layers={name: LayerPlan("block_col", 0.5, 16), "joiner.out.weight": LayerPlan("unstructured", 0.5)})
    pruned, masks = apply_plan(model, plan)
    init = tmp_path / "pruned.pt"
    save_checkpoint(init, pruned, {"tokenizer": blob["tokenizer"], "step": 0, "prune_plan": plan.to_dict(),
                                   "masks": {k: v.bool() for k, v in masks.items()}})
    cfg = replace(tiny_recipe(tmp_path / "sparse", manifest, max_steps=6), init_from=str(init), sparse_method="mest",
                  mest_interval=2, mest_rate=0.3, mest_end=4, mest_soft_bound=False, drop_unforgettable=True,
                  forget_min_visits=1, forget_signal=signal, forget_threshold=threshold, forget_max_drop=0.5)
    Trainer(cfg).run()
    exp = tmp_path / "sparse" / "exp"
    last = torch.load(exp / "last.pt", map_location="cpu", weights_only=False)
    assert last["prune_plan"] == plan.to_dict() and last["sparse"]["updates"] == 6
    for ckpt in ("last.pt", "best.pt"):
        model, blob = load_checkpoint(exp / ckpt)
        params = dict(model.named_parameters())
        for k, m in blob["masks"].items():
            assert (params[k][~m] == 0).all(), (ckpt, k)
            assert abs(float(m.float().mean()) - 0.5) < 0.02  # MEST moved units, not the sparsity
    assert not torch.equal(last["masks"][name], masks[name].bool())  # mutated
    logs = [json.loads(line) for line in (exp / "train_log.jsonl").read_text().splitlines()]
    drops = [r["dropped"] for r in logs if r["type"] == "forgetting"]
    assert drops[0] == 0 and max(drops) == 2  # every utterance under the threshold: all learned; capped at half of 4
    trainer = Trainer(replace(cfg, max_steps=8), resume=True)
    assert trainer.sparse.updates == 6 and trainer.forgetting.visits == last["forgetting"]["visits"]


def test_a_latency_budget_picks_the_most_accurate_fitting_variant_and_passes_over_tampered_ones(tmp_path):
    from compression.store import ModelStore, StoreError
    from compression.store.select import choose_by_budget

    src = tmp_path / "src"
    src.mkdir()
    (src / "model.pt").write_bytes(b"weights")
    store = ModelStore(tmp_path / "store")
    arch = "chunked-whisper-transducer"
    for name, rtf, wer in (("dense", 0.08, 41.5), ("fast", 0.04, 42.0), ("faster", 0.02, 48.0), ("best", 0.03, 40.0)):
        store.publish(src, name, arch, metrics={"rtf_cpu_streaming_alone": rtf, "wer_speechocean762_dev": wer})
    store.publish(src, "unmeasured", arch)  # no numbers: never a candidate
    store.publish(src, "speaker", "tdnn-speaker-embedding", metrics={"rtf_cpu_streaming_alone": 0.001,
                                                                    "wer_speechocean762_dev": 0.0})
    assert choose_by_budget(store, 0.1).ref == "best/1"
    assert choose_by_budget(store, 0.025).ref == "faster/1"
    (tmp_path / "store" / "best" / "1" / "model.pt").write_bytes(b"changed")
    assert choose_by_budget(store, 0.1).ref == "dense/1"  # the tampered one is passed over
    assert choose_by_budget(store, 0.035, verify=False).ref == "best/1"
    with pytest.raises(StoreError, match="fastest is faster/1"):
        choose_by_budget(store, 0.01)


def test_int8_search_layers_stay_close_to_float_and_the_loader_applies_them():
    """The LM's and predictor's recurrences and the joiner's bounded-input layers in int8
    (compression/int8_search.py): log-probabilities close to float's, and the search view uses
    them (the loader's part: test_a_pruned_variant_is_sealed_...)."""
    from compression.int8_search import Int8Matmul, quantise_search
    from decoding.transducer_view import TransducerSearchView
    from models.lm import LMConfig, TokenLM

    torch.manual_seed(5)
    model = small_whisper()
    lm = TokenLM(LMConfig(vocab_size=40, embed_dim=32, hidden_dim=64)).eval()
    tokens = torch.randint(1, 40, (6,))
    view = TransducerSearchView(model)
    with torch.no_grad():
        lp0, st = lm.init_state(6)
        lp1, _ = lm.step(tokens, st)
        pred0, pst = view.predictor_init(6)
        pred1, _ = view.predictor_step(tokens, pst)
        enc = view.prepare_encoder(torch.randn(6, 64))
        logits = view.joiner(enc, pred1)
        quantise_search(model, lm)
        assert isinstance(lm.hh_int8, Int8Matmul) and isinstance(model.predictor.hh_int8, Int8Matmul)
        q1, _ = lm.step(tokens, st)
        qpred1, _ = view.predictor_step(tokens, pst)
        qlogits = view.joiner(enc, qpred1)
    assert not torch.equal(q1, lp1) and (q1.exp() - lp1.exp()).abs().max() < 0.02
    assert torch.nn.functional.cosine_similarity(qpred1.flatten(), pred1.flatten(), dim=0) > 0.99
    assert (qlogits.argmax(-1) == logits.argmax(-1)).float().mean() >= 0.8


def test_int8_search_parts_quantise_only_what_they_name():
    from compression.int8_search import quantise_search, search_parts
    from models.lm import LMConfig, TokenLM

    assert search_parts(True) == ("lm", "predictor", "joiner") and search_parts(False) == ()
    with pytest.raises(ValueError, match="encoder"):
        search_parts(["lm", "encoder"])
    model = small_whisper()
    lm = TokenLM(LMConfig(vocab_size=40, embed_dim=32, hidden_dim=64)).eval()
    joiner_out = model.joiner.out
    quantise_search(model, lm, search_parts(["lm"]))
    assert hasattr(lm, "hh_int8") and not hasattr(model.predictor, "hh_int8") and model.joiner.out is joiner_out


def _text(n: int, vocab: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (int(torch.randint(3, 12, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]


def test_a_shrunk_lm_drops_dead_units_exactly_and_keeps_the_important_ones():
    """Units whose outputs nothing reads (zero columns in the output layer and the recurrence)
    have no importance; cutting them leaves every next-token distribution unchanged
    (compression/shrink_lm.py)."""
    from compression.shrink_lm import shrink_lm, unit_importance
    from models.lm import LMConfig, TokenLM

    torch.manual_seed(3)
    lm = TokenLM(LMConfig(vocab_size=30, embed_dim=16, hidden_dim=24, dropout=0.0)).eval()
    dead = torch.tensor([1, 4, 5, 9, 13, 17, 20, 23])
    with torch.no_grad():
        lm.out.weight[:, dead] = 0.0
        lm.lstm.weight_hh_l0[:, dead] = 0.0
    text = _text(20, 30)
    imp = unit_importance(lm, text)
    assert imp[dead].max() == 0 and (imp[[i for i in range(24) if i not in dead.tolist()]] > 0).all()
    small = shrink_lm(lm, 16, imp)
    assert small.config.hidden_dim == 16
    x = torch.tensor([t + [0] * (11 - len(t)) for t in text])
    assert torch.allclose(small(x), lm(x), atol=1e-5)
    lp, st = lm.init_state(3)
    slp, sst = small.init_state(3)
    assert torch.allclose(lp, slp, atol=1e-5)
    worse = shrink_lm(lm, 16, -imp)  # the dead units kept instead: the distributions change
    assert not torch.allclose(worse(x), lm(x), atol=1e-3)


def test_distilling_an_lm_pulls_it_towards_its_teacher():
    """`distill_loss` at weight 0 is the cross-entropy; at weight 1 a few updates bring a student's
    next-token distributions closer to the teacher's (training/lm.py's --teacher)."""
    from models.lm import LMConfig, TokenLM
    from training.lm import pad_batch

    torch.manual_seed(4)
    teacher = TokenLM(LMConfig(vocab_size=20, embed_dim=16, hidden_dim=32, dropout=0.0)).eval()
    student = TokenLM(LMConfig(vocab_size=20, embed_dim=16, hidden_dim=8, dropout=0.0))
    x, lens = pad_batch(_text(16, 20, seed=1))
    assert torch.allclose(student.distill_loss(x, lens, teacher, 0.0), student.loss(x, lens))
    before = student.distill_loss(x, lens, teacher, 1.0).item()
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    for _ in range(30):
        loss = student.distill_loss(x, lens, teacher, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert student.distill_loss(x, lens, teacher, 1.0).item() < 0.5 * before
