"""`minutes prune`: make pruning plans and pruned checkpoints.

    minutes prune latency-table --model default/10 --out compression/latency_table.json
    minutes prune rule    --model default/10 --target 0.75 --out plans/rule75.json
    minutes prune uniform --model default/10 --ff-keep 0.5 --heads 4 --out plans/ff50h4.json
    minutes prune search  --model default/10 --budget 0.5 --out plans/search.json
    minutes prune apply   --model default/10 --plan plans/rule75.json --out /work/data/exp/prune/rule75.pt
    minutes prune lm      --lm store/default/10/lm.pt --hidden 256 --out /work/data/exp/lm/shrunk256.pt

`apply` writes a checkpoint holding the pruned weights, the plan and the masks; fine-tune it with
`minutes train asr --init-from OUT [--sparse-method mest]` (the masks are held, training/sparse.py),
then seal it with `minutes train package --compression '{"plan": ..., "runtime": ...}'`.
`lm` shrinks the external LM's hidden units (compression/shrink_lm.py); distil it back with
`minutes train lm --config training/recipes/lm_shrunk.toml`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TABLE = REPO / "compression" / "latency_table.json"


def _load(model: str):
    from models.transducer import load_checkpoint
    from training.eval_cli import resolve_model

    path = resolve_model(model)
    return load_checkpoint(path / "model.pt" if path.is_dir() else path)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="pruning plans, latency table and pruned checkpoints", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    t = verbs.add_parser("latency-table", help="time every layer shape x scheme x sparsity x block x batch x runtime")
    t.add_argument("--model", default="default")
    t.add_argument("--out", type=Path, default=TABLE)
    t.set_defaults(func=run_table)

    r = verbs.add_parser("rule", help="rule-based mapping (compression/mapping.py)")
    r.add_argument("--model", default="default")
    r.add_argument("--table", type=Path, default=TABLE)
    r.add_argument("--target", type=float, default=0.75, help="MLP sparsity (attention gets half)")
    r.add_argument("--runtime", default="onnxruntime")
    r.add_argument("--rows", type=int, default=16, help="input vectors per call the plan is for (16 = one stream)")
    r.add_argument("--out", type=Path, required=True)
    r.set_defaults(func=run_rule)

    u = verbs.add_parser("uniform", help="uniform structured shrinking of every block")
    u.add_argument("--model", default="default")
    u.add_argument("--ff-keep", type=float, default=0.5, help="share of MLP neurons kept")
    u.add_argument("--heads", type=int, default=None, help="attention heads kept per block")
    u.add_argument("--runtime", default="onnxruntime")
    u.add_argument("--out", type=Path, required=True)
    u.set_defaults(func=run_uniform)

    s = verbs.add_parser("search", help="search-based mapping under a latency budget (compression/search.py)")
    s.add_argument("--model", default="default")
    s.add_argument("--table", type=Path, default=TABLE)
    s.add_argument("--budget", type=float, default=0.5, help="encoder linear time as a fraction of the dense one's")
    s.add_argument("--runtime", default="onnxruntime")
    s.add_argument("--dev-utts", type=int, default=40, help="per dev set, for the loss proxy and the WER")
    s.add_argument("--finetune-steps", type=int, default=30)
    s.add_argument("--finalists", type=int, default=3)
    s.add_argument("--recipe", default="training/recipes/asr_whisper_cpu.toml", help="the fine-tune's data")
    s.add_argument("--cache", default="", help="JSON file keeping measured sensitivities across runs")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=run_search)

    a = verbs.add_parser("apply", help="a plan applied to a model: pruned checkpoint with its masks")
    a.add_argument("--model", default="default")
    a.add_argument("--plan", type=Path, required=True, help="plan file (.json or .toml)")
    a.add_argument("--out", type=Path, required=True)
    a.set_defaults(func=run_apply)

    m = verbs.add_parser("lm", help="shrink the external LSTM LM's hidden units (compression/shrink_lm.py)")
    m.add_argument("--lm", type=Path, required=True, help="LM checkpoint (e.g. store/default/10/lm.pt)")
    m.add_argument("--hidden", type=int, required=True, help="hidden units to keep")
    m.add_argument("--sentences", type=int, default=2000, help="text sentences the unit importance is measured on")
    m.add_argument("--out", type=Path, required=True)
    m.set_defaults(func=run_lm)


def _write(obj, out: Path, note: str) -> int:
    """Save a plan or table at `out` (its folder made) and print what was written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    obj.save(out)
    print(f"{note} -> {out}")
    return 0


def run_table(args: argparse.Namespace) -> int:
    from compression.latency import linear_shapes, measure_table

    model, _ = _load(args.model)
    table = measure_table(list(linear_shapes(model).values()))
    return _write(table, args.out, f"{len(table.entries)} timings")


def run_rule(args: argparse.Namespace) -> int:
    from compression.latency import LatencyTable
    from compression.mapping import rule_plan

    model, _ = _load(args.model)
    plan = rule_plan(model, LatencyTable.load(args.table), args.target, args.runtime, args.rows, base=args.model)
    return _write(plan, args.out, json.dumps(plan.notes, indent=1))


def run_uniform(args: argparse.Namespace) -> int:
    from compression.mapping import uniform_shrink_plan

    model, _ = _load(args.model)
    plan = uniform_shrink_plan(model, args.ff_keep, args.heads, args.runtime, base=args.model)
    return _write(plan, args.out, "plan")


def run_search(args: argparse.Namespace) -> int:
    from compression.latency import LatencyTable
    from compression.search import SearchConfig, search_plan

    model, blob = _load(args.model)
    cfg = SearchConfig(budget=args.budget, runtime=args.runtime, dev_utts=args.dev_utts,
                       finetune_steps=args.finetune_steps, finalists=args.finalists, recipe=args.recipe,
                       cache=args.cache)
    res = search_plan(model, blob, LatencyTable.load(args.table), cfg, base=args.model)
    return _write(res.plan, args.out, json.dumps({"seconds": round(res.seconds, 1),
                                                  "finalists": res.plan.notes["finalists"]}, indent=1))


def run_apply(args: argparse.Namespace) -> int:
    from compression.plan import PrunePlan, apply_plan, plan_sparsity
    from models.transducer import save_checkpoint

    model, blob = _load(args.model)
    plan = PrunePlan.load(args.plan)
    pruned, masks = apply_plan(model, plan)
    keep = {k: v for k, v in blob.items() if k not in ("config", "model", "weights_dtype", "optimizer", "ema")}
    keep |= {"prune_plan": plan.to_dict(), "masks": {k: v.bool() for k, v in masks.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out, pruned, keep)
    print(f"{args.out}: {pruned.num_params():,} parameters (from {model.num_params():,}), "
          f"encoder sparsity {plan_sparsity(pruned, model):.3f}, {len(masks)} masked weights")
    return 0


def run_lm(args: argparse.Namespace) -> int:
    import random

    import torch

    from compression.shrink_lm import shrink_lm, unit_importance
    from decoding.tokenizer import Tokenizer
    from models.lm import load_lm, save_lm
    from training.lm import pieces, read_sentences

    blob = torch.load(args.lm, map_location="cpu", weights_only=False)
    lm = load_lm(args.lm)
    sentences = read_sentences(blob.get("sources", ["bible"]))
    random.Random(0).shuffle(sentences)  # every source, not the first one's opening
    text = pieces(Tokenizer(blob["tokenizer"]), sentences[: args.sentences])
    small = shrink_lm(lm, args.hidden, unit_importance(lm, text))
    meta = {k: v for k, v in blob.items() if k not in ("config", "state_dict", "dev_ppl", "step")}
    save_lm(small, args.out, **meta, shrunk_from=str(args.lm))
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    print(f"{args.out}: hidden {lm.config.hidden_dim} -> {args.hidden}, {params(lm):,} -> {params(small):,} parameters")
    return 0
