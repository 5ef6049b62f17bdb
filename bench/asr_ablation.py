"""Ablation of the Whisper-initialised transducer: one row per change, the same number of updates.

Each variant is the recipe `training/recipes/asr_whisper_cpu.toml` with one thing changed, trained
from the same seed and data order for `--steps` updates (one thread each; resumable: a variant
whose log already holds its final evaluation is not rerun), then evaluated by the trainer's greedy
dev WER on the recipe's dev sets (their first `dev_utts` utterances):

    reference      Whisper init, distillation on, 0.32 s chunks, sliding positions
    random-init    the same architecture from random weights
    no-distill     without the term to the full-context teacher's states
    chunk-0.64     0.64 s chunks (left context kept at 2.56 s)
    positions-none no position table at all

    python -m bench.asr_ablation --steps 500            # ~20 min a variant on one core
    python -m bench.asr_ablation --steps 500 --only reference no-distill
    python -m bench.asr_ablation --steps 500 --reference-exp /work/data/exp/asr_whisper
        # the reference row read from the recipe's own run (same seed and data order; its
        # `eval_steps` include 500), instead of training it a second time

Writes bench/results/asr_ablation.{json,md}. What this is not: a measure of the shipped model
(the rows stop long before convergence; see asr.md for that).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
RECIPE = REPO / "training" / "recipes" / "asr_whisper_cpu.toml"


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    flags: tuple[str, ...]


VARIANTS = (
    Variant("reference", "Whisper init, distillation, 0.32 s chunks, sliding positions", ()),
    Variant("random-init", "same architecture (4 x 384, 6 heads), random weights",
            ("--whisper-init", "", "--d-model", "384", "--n-layers", "4", "--n-heads", "6", "--ff-mult", "4")),
    Variant("no-distill", "distillation weight 0", ("--distill-weight", "0")),
    Variant("chunk-0.64", "0.64 s chunks, 4 left chunks (2.56 s)", ("--chunk-frames", "16", "--left-chunks", "4")),
    Variant("positions-none", "no position table", ("--positions", "none")),
)


def final_eval(exp: Path, steps: int) -> dict | None:
    log = exp / "train_log.jsonl"
    if not log.exists():
        return None
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    evals = [r for r in rows if r.get("type") == "eval" and r["step"] == steps]
    if not evals:
        return None
    train = [r for r in rows if r.get("type") == "train" and r["step"] <= steps]
    out = dict(evals[-1])
    if train:
        out["train_loss"] = train[-1]["loss"]
        out["seconds_per_update"] = train[-1]["elapsed"] / max(1, train[-1]["step"])
    return out


def run_variant(v: Variant, steps: int, root: Path, recipe: Path, reference_exp: Path | None = None) -> dict:
    exp = reference_exp if (v.name == "reference" and reference_exp) else root / v.name
    done = final_eval(exp, steps)
    if done is not None:
        return done
    if exp == reference_exp:
        raise RuntimeError(f"{exp} has no evaluation at step {steps} yet (is its run past it?)")
    cmd = [sys.executable, "-m", "training.cli", "asr", "--config", str(recipe), "--exp-dir", str(exp),
           "--max-steps", str(steps), "--max-minutes", "600", "--eval-minutes", "10000", "--threads", "1", *v.flags]
    if (exp / "last.pt").exists():
        cmd.append("--resume")
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)
    res = final_eval(exp, steps)
    if res is None:
        raise RuntimeError(f"{v.name}: no evaluation at step {steps} in {exp}/train_log.jsonl")
    return res


def render(rows: dict[str, dict], steps: int) -> str:
    sets = sorted({k.split("/", 1)[1] for r in rows.values() for k in r if k.startswith("wer/")})
    head = "| variant | what | " + " | ".join(f"WER {s}" for s in sets) + " | " + \
        " | ".join(f"CTC WER {s}" for s in sets) + " | train loss | s / update |"
    lines = [f"# Ablation at {steps} updates (greedy, first 100 utterances of each dev set)", "",
             "`python -m bench.asr_ablation --steps %d` — each variant changes one thing of "
             "`training/recipes/asr_whisper_cpu.toml`; same seed, data order and number of updates." % steps, "",
             "The reference row is read from the recipe's own run when `--reference-exp` names it "
             "(its s / update was measured alone; the others ran two or three at a time on the 2 cores). "
             "The rows stop long before convergence: they rank the choices, not the shipped models.", "",
             head, "|" + "---|" * (head.count("|") - 1)]
    what = {v.name: v.what for v in VARIANTS}
    for name, r in rows.items():
        cells = [f"{r.get('wer/' + s, float('nan')):.1f} %" for s in sets]
        cells += [f"{r.get('ctc_wer/' + s, float('nan')):.1f} %" for s in sets]
        lines.append(f"| {name} | {what.get(name, '')} | " + " | ".join(cells) +
                     f" | {r.get('train_loss', float('nan')):.2f} | {r.get('seconds_per_update', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def save(results: dict[str, dict], steps: int, recipe: Path) -> None:
    """Merge into the file as it is now: variants run as separate processes, one per core."""
    out_json = RESULTS / "asr_ablation.json"
    on_disk = json.loads(out_json.read_text()).get("rows", {}) if out_json.exists() else {}
    results.update({k: v for k, v in on_disk.items() if k not in results})
    (RESULTS / "asr_ablation.json").write_text(json.dumps(
        {"steps": steps, "recipe": str(recipe.resolve().relative_to(REPO)), "rows": results}, indent=1) + "\n")
    (RESULTS / "asr_ablation.md").write_text(render(results, steps))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--only", nargs="*", default=None, help="variant names (default: all)")
    p.add_argument("--root", type=Path, default=Path("/work/data/exp/ablation"))
    p.add_argument("--recipe", type=Path, default=RECIPE)
    p.add_argument("--reference-exp", type=Path, default=None,
                   help="read the reference row from this run of the recipe instead of training it")
    args = p.parse_args(argv)
    out_json = RESULTS / "asr_ablation.json"
    results = json.loads(out_json.read_text()).get("rows", {}) if out_json.exists() else {}
    for v in VARIANTS:
        if args.only and v.name not in args.only:
            continue
        if v.name == "reference" and args.reference_exp:
            continue  # read last, when the recipe's own run is past the step
        results[v.name] = run_variant(v, args.steps, args.root, args.recipe)
        save(results, args.steps, args.recipe)
    if args.reference_exp and (not args.only or "reference" in args.only):
        results = {"reference": run_variant(VARIANTS[0], args.steps, args.root, args.recipe, args.reference_exp),
                   **{k: v for k, v in results.items() if k != "reference"}}
        save(results, args.steps, args.recipe)
    print(render(results, args.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
