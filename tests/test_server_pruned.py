"""Pruned variants served from the store (issue 17): a server started with a latency budget
serves the most accurate variant that fits; a stream may pick the dense model beside it; each
stream's words are exactly its variant's own (packed block layers, onnxruntime encoder); and
`GET /v1/models` shows the variants with their sparsity and compression."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from compression.store import ModelStore
from tests.conftest import REPO
from tests.test_server_stream import CLIPS, SO, clip, drain, send_audio, serve, ws

pytestmark = pytest.mark.skipif(not SO.is_dir() or not ModelStore(REPO / "store").versions("default"),
                                reason="needs speechocean762 and the trained default model")


@pytest.fixture(scope="module")
def pruned_store(tmp_path_factory):
    """A store with the shipped dense default (linked) and two variants of it: mildly
    block-pruned under onnxruntime (fits a budget), and the same in torch with a worse WER
    recorded (a budget must prefer accuracy among what fits)."""
    import torch

    from compression.plan import LayerPlan, PrunePlan, apply_plan
    from models.transducer import load_checkpoint, save_checkpoint
    from training.package import package

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("pruned")
    root = tmp / "store"
    real = ModelStore(REPO / "store")
    folder, manifest = real.resolve("default")
    (root / "default").mkdir(parents=True)
    (root / "default" / manifest.version).symlink_to(folder, target_is_directory=True)
    (root / "punctuator").symlink_to(REPO / "store" / "punctuator", target_is_directory=True)  # finals' display text
    model, blob = load_checkpoint(folder / "model.pt")
    plan = PrunePlan(mapping="manual", runtime="onnxruntime",
                     layers={f"encoder.blocks.3.mlp.{i}.weight": LayerPlan("block_col", 0.5, 32) for i in (0, 2)})
    pruned, masks = apply_plan(model, plan)
    ckpt = tmp / "pruned.pt"
    save_checkpoint(ckpt, pruned, {"tokenizer": blob["tokenizer"], "step": blob.get("step", 0),
                                   "prune_plan": plan.to_dict(), "masks": masks})
    dense_rtf = manifest.metrics["rtf_cpu_streaming_alone"]
    for name, runtime, wer in (("pruned", "onnxruntime", 41.6), ("pruned-torch", "torch", 44.0), ("broken", "torch", 99.0)):
        package(ckpt, name, "1", {"rtf_cpu_streaming_alone": round(dense_rtf / 1.3, 4), "wer_speechocean762_dev": wer},
                store_root=root, compression={"runtime": runtime}, base=f"default/{manifest.version}", half=True,
                decoding=manifest.extra.get("decoding"), lm=folder / "lm.pt", lexicon=folder / "lexicon.txt.gz")
    with open(root / "broken" / "1" / "model.pt", "r+b") as fh:  # one flipped byte in its weights
        fh.seek(-100, 2)
        b = fh.read(1)
        fh.seek(-100, 2)
        fh.write(bytes([b[0] ^ 0xFF]))
    return root, manifest.version, dense_rtf


def words_of(addr: str, x: np.ndarray, model: str | None) -> tuple[dict, list[tuple]]:
    options = {"model": model} if model else {}
    with ws(addr) as conn:
        conn.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_f32le", "options": options}))
        ready = json.loads(conn.recv(timeout=120))
        assert ready["type"] == "ready", ready
        send_audio(conn, x, 1600, "<f4")
        conn.send(json.dumps({"type": "stop"}))
        events, code = drain(conn)
    assert code == 1000
    return ready, [(w["token"], w["start"], w["end"]) for e in events if e["type"] == "final" for w in e["words"]]


def test_a_latency_budget_serves_the_best_fitting_variant_and_streams_pick_theirs(pruned_store, tmp_path):
    import torch

    from decoding.recogniser import Recogniser

    root, dense_version, dense_rtf = pruned_store
    budget = round(dense_rtf / 1.2, 4)  # the dense default does not fit; both variants do
    proc, addr = serve(root, tmp_path, "--latency-budget", str(budget), "--decoders", "1")
    try:
        listed = httpx.get(f"http://{addr}/v1/models").json()
        assert listed["default"] == "pruned/1"  # the lower WER of the two that fit
        variants = {m["name"]: m for m in listed["models"]}
        assert variants["pruned"]["compression"]["runtime"] == "onnxruntime"
        assert variants["pruned"]["compression"]["plan"]["layers"] and 0.0 < variants["pruned"]["sparsity"] < 0.2
        torch.set_num_threads(1)
        x = clip(CLIPS[0]).astype(np.float32)
        store = ModelStore(root)
        want_pruned = [(w.text, w.start, w.end) for w in Recogniser.from_store(store, "pruned/1").transcribe(x)]
        want_dense = [(w.text, w.start, w.end) for w in Recogniser.from_store(store, "default").transcribe(x)]
        ready, got = words_of(addr, x, None)
        assert ready["model"] == {"name": "pruned", "version": "1"} and got == want_pruned and got
        ready, got = words_of(addr, x, f"default/{dense_version}")  # a stream picks the dense one
        assert ready["model"]["name"] == "default" and got == want_dense and got
        with ws(addr) as conn:  # a tampered variant is refused with a clear error (close 1013: try later)
            conn.send(json.dumps({"type": "start", "sample_rate": 16000, "options": {"model": "broken/1"}}))
            err = json.loads(conn.recv(timeout=60))
            assert (err["type"], err["code"]) == ("error", "model_unavailable"), err
            assert "broken/1" in err["message"] and "sha256" in err["message"], err
            _, code = drain(conn)
            assert code == 1013
        assert words_of(addr, x, None)[1] == want_pruned  # and the server goes on serving what it had
        assert httpx.get(f"http://{addr}/readyz").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_budget_nothing_fits_is_refused_at_start_up(pruned_store, tmp_path):
    from compression.store import StoreError
    from compression.store.select import choose_by_budget

    root, _, dense_rtf = pruned_store
    with pytest.raises(StoreError, match="fastest is (pruned|broken)"):
        choose_by_budget(ModelStore(root), dense_rtf / 10)
    assert choose_by_budget(ModelStore(root), dense_rtf * 2).ref == f"default/{pruned_store[1]}"  # the dense one wins on WER
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "minutes.cli", "serve", "--model-store", str(root),
                          "--latency-budget", str(dense_rtf / 10), "--port", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "latency_budget" in (out.stderr + out.stdout)
