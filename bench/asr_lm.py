"""LM fusion on real speech through the served path: greedy vs beam vs shallow fusion vs ILME.

    python -m bench.asr_lm --model default/8 --lm /work/data/exp/lm/general/lm.pt \
        --tune speechocean762_dev --tune-limit 100

Every configuration streams each utterance through `Recogniser.transcribe` in 0.1 s pieces,
with endpoints and segment resets exactly as the server runs them (`minutes eval`'s
`decode_manifest`), on one thread. Why not the cached-encoder grid of `bench/lm_fusion.py`:
the native set's utterances are several sentences long, and what the LM changes there depends
on the segment resets the full-utterance forward does not have.

λ's are picked on the tuning slice only (the first `--tune-limit` utterances of `--tune`),
then every set is decoded in full with the picked λ's; the untuned rest of the tuning set is
reported on its own so a reader can see whether the pick generalised. Writes
`bench/results/asr_lm.json` and `asr_lm.md`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
DEFAULT_SETS = {
    "speechocean762_dev": "/work/data/corpus/speechocean762/dev.jsonl",
    "native": "/work/data/corpus/native/test.jsonl",
    "single_test": "/work/data/corpus/single/test.jsonl",
}
# (name, decoding options over the model's defaults). The first run of this grid (λ's alone)
# showed the LM trading substitutions for deletions: at λ_T 0.35, S 227 -> 200 but D 33 -> 108
# of 567 words (the LM's cost per piece, λ_T · ln(perplexity 10.3) ≈ 0.8, is paid by every
# emitted token, none by blank). So each weight comes with a per-token reward ρ of about that
# cost, the usual remedy (length bonus / "insertion reward").
TUNE_GRID: list[tuple[str, dict]] = (
    [("greedy", {"search": "greedy"}), ("beam", {"search": "beam"})]
    + [(f"sf λT={lt} ρ={r}", {"search": "beam", "lm_weight": lt, "length_reward": r})
       for lt, r in ((0.2, 0.0), (0.3, 0.7), (0.3, 1.0), (0.45, 1.0), (0.45, 1.5))]
    + [(f"ilme λT={lt} λI={li} ρ={r}", {"search": "beam", "lm_weight": lt, "ilm_weight": li, "length_reward": r})
       for lt, li, r in ((0.3, 0.1, 0.5), (0.45, 0.15, 0.7), (0.45, 0.15, 1.0), (0.6, 0.2, 1.4))]
)


@dataclass
class Row:
    config: str
    options: dict
    set: str
    utterances: int
    wer: float
    substitutions: int
    insertions: int
    deletions: int
    words: int
    rtf_cpu: float


def score_rows(name: str, opts: dict, set_name: str, rows: list[dict]) -> Row:
    """WER and CPU RTF of decoded rows (`decode_manifest`'s per-utterance rows)."""
    from training.eval_cli import score_rows as score

    r = score(rows)
    return Row(name, opts, set_name, r.utterances, r.wer, r.substitutions, r.insertions, r.deletions, r.words,
               r.rtf_cpu)


def run_config(rec, name: str, opts: dict, manifest: str, limit: int) -> list[dict]:
    """Per-utterance rows of one configuration on one manifest (first `limit`; 0 = all)."""
    from decoding.options import DecodingOptions
    from training.eval_cli import decode_manifest

    return decode_manifest(rec, manifest, limit, DecodingOptions.from_dict(opts, base=rec.options))[1]


def markdown(tune_rows: list[Row], final_rows: list[Row], picked: dict, args: argparse.Namespace) -> str:
    out = ["# LM fusion on real speech, served path (`bench/asr_lm.py`)", "",
           f"Model `{args.model}`, LM `{args.lm}`; streamed in 0.1 s pieces with endpoints, one thread. "
           f"λ's tuned on the first {args.tune_limit} utterances of {args.tune}; WER % (CPU RTF).", "",
           "## Tuning slice", "", "| config | WER | S | I | D | RTF |", "|---|---|---|---|---|---|"]
    for r in tune_rows:
        out.append(f"| {r.config} | {r.wer:.1f} | {r.substitutions} | {r.insertions} | {r.deletions} | {r.rtf_cpu:.3f} |")
    sets = list(dict.fromkeys(r.set for r in final_rows))
    configs = list(dict.fromkeys(r.config for r in final_rows))
    out += ["", "## Every set with the picked configurations", "", "| config | " + " | ".join(sets) + " |",
            "|---|" + "---|" * len(sets)]
    for c in configs:
        cells = []
        for s in sets:
            r = next((x for x in final_rows if x.config == c and x.set == s), None)
            cells.append(f"{r.wer:.1f} % ({r.rtf_cpu:.3f})" if r else "–")
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    out += ["", "Picked: " + ", ".join(f"{k}: `{json.dumps(v)}`" for k, v in picked.items()), ""]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--lm", required=True)
    p.add_argument("--set", action="append", default=[], help="NAME=MANIFEST (default: the three ASR sets)")
    p.add_argument("--tune", default="speechocean762_dev")
    p.add_argument("--tune-limit", type=int, default=100)
    p.add_argument("--limit", type=int, default=0, help="utterances per set in the final pass (0 = all)")
    p.add_argument("--skip-final", action="store_true", help="tune only")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

    import torch
    from tqdm import tqdm

    from training.eval_cli import attach_lm, load_recogniser

    torch.set_num_threads(args.threads)
    sets = dict(s.split("=", 1) for s in args.set) or DEFAULT_SETS
    rec = load_recogniser(args.model)
    attach_lm(rec, args.lm)
    base = {k: v for k, v in rec.options.to_dict().items() if k in ("blank_penalty",)}
    print(f"model defaults kept under every config: {base}")

    tune_rows = []
    for name, opts in tqdm(TUNE_GRID, desc="tune"):
        row = score_rows(name, opts, args.tune, run_config(rec, name, opts, sets[args.tune], args.tune_limit))
        tune_rows.append(row)
        tqdm.write(f"{name:28s} {row.wer:6.2f} % (S {row.substitutions} I {row.insertions} D {row.deletions}) RTF {row.rtf_cpu:.3f}")
    best = lambda prefix: min((r for r in tune_rows if r.config.startswith(prefix)), key=lambda r: r.wer)  # noqa: E731
    picked = {"greedy": {"search": "greedy"}, "beam": {"search": "beam"},
              "sf": best("sf").options, "ilme": best("ilme").options}
    final_rows: list[Row] = []
    if not args.skip_final:
        for cname, opts in tqdm(list(picked.items()), desc="final"):
            for sname, man in sets.items():
                rows = run_config(rec, cname, opts, man, args.limit)
                final_rows.append(score_rows(cname, opts, sname, rows))
                if sname == args.tune and len(rows) > args.tune_limit:
                    final_rows.append(score_rows(cname, opts, f"{sname} (untuned rest)", rows[args.tune_limit:]))
                tqdm.write(f"{cname:8s} {sname:24s} {final_rows[-1].wer:6.2f} %")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "asr_lm.json").write_text(json.dumps(
        {"model": args.model, "lm": args.lm, "tune_set": args.tune, "tune_limit": args.tune_limit,
         "picked": picked, "tuning": [asdict(r) for r in tune_rows], "final": [asdict(r) for r in final_rows]},
        indent=2, ensure_ascii=False))
    (args.out / "asr_lm.md").write_text(markdown(tune_rows, final_rows, picked, args))


if __name__ == "__main__":
    main()
