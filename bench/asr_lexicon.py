"""The lexicon's out-of-vocabulary penalty and the beam width, through the served path.

    python -m bench.asr_lexicon --model default/9 --lexicon /work/data/exp/lexicon.txt.gz

Why: on the native set a third of default/9's substituted or inserted words were no English
words ("PERTECT", "CONSONTRATE"); `decoding/lexicon.py` charges such spellings in the beam. The
grid (beam 4 or 8 × penalty) is decoded on the tuning slice only (the first `--tune-limit`
utterances of speechocean762 dev, as bench/asr_lm.py tuned the fusion weights), the best is
picked there, and then the model's defaults, the wider beam alone and the pick are decoded on
every set in full, so the gain of each part is seen apart on speech the pick never saw. Also
counted: how many hypothesis words are outside the lexicon, per set (the thing the penalty
acts on). Everything else is the model's default decoding (its LM fusion weights included).

Writes bench/results/asr_lexicon.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from bench.asr_lm import DEFAULT_SETS, RESULTS, Row, run_config, score_rows

GRID = [(f"beam {k} oov {p:g}", {"beam_size": k, "oov_penalty": p}) for k in (4, 8) for p in (0.0, 1.5, 3.0, 5.0)]


def load_with_lexicon(model: str, lexicon: str | None, threads: int = 1):
    """The model's recogniser on `threads` threads, with the word list at `lexicon` when given."""
    import torch

    from training.eval_cli import attach_lexicon, load_recogniser

    torch.set_num_threads(threads)
    rec = load_recogniser(model)
    if lexicon:
        attach_lexicon(rec, lexicon)
    return rec


def oov_rate(rows: list[dict], lexicon) -> float:
    words = [w for r in rows for w in r["hyp"].split()]
    return 100.0 * sum(w not in lexicon for w in words) / max(1, len(words))


def markdown(tune: list[tuple[Row, float]], final: list[tuple[Row, float]], picked: str, args) -> str:
    out = ["# Lexicon penalty and beam width, served path (`bench/asr_lexicon.py`)", "",
           f"Model `{args.model}` with its own decoding defaults (LM fusion included) and lexicon "
           f"`{args.lexicon}`; streamed in 0.1 s pieces with endpoints, one thread, beside other jobs "
           "(RTFs are CPU time and comparable within this file only). Picked on the first "
           f"{args.tune_limit} utterances of {args.tune}.", "",
           "## Tuning slice", "", "| config | WER | S | I | D | non-words in hyp | CPU RTF |",
           "|---|---|---|---|---|---|---|"]
    for r, oov in tune:
        out.append(f"| {r.config} | {r.wer:.1f} | {r.substitutions} | {r.insertions} | {r.deletions} | {oov:.1f} % | {r.rtf_cpu:.3f} |")
    sets = list(dict.fromkeys(r.set for r, _ in final))
    configs = list(dict.fromkeys(r.config for r, _ in final))
    out += ["", f"## Every set (picked: `{picked}`)", "",
            "WER % (non-words among the hypothesis words; CPU RTF)", "",
            "| config | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for c in configs:
        cells = []
        for s in sets:
            hit = next(((r, o) for r, o in final if r.config == c and r.set == s), None)
            cells.append(f"{hit[0].wer:.1f} % ({hit[1]:.1f} %; {hit[0].rtf_cpu:.3f})" if hit else "–")
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--lexicon", default=None, help="word list; default: the model's own lexicon.txt.gz")
    p.add_argument("--tune", default="speechocean762_dev")
    p.add_argument("--tune-limit", type=int, default=100)
    p.add_argument("--limit", type=int, default=0, help="utterances per set in the final pass (0 = all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

    from tqdm import tqdm

    rec = load_with_lexicon(args.model, args.lexicon, args.threads)
    if rec.beam.lexicon is None:
        raise SystemExit(f"{args.model} has no lexicon.txt.gz: give --lexicon")
    lexicon = rec.beam.lexicon
    tune: list[tuple[Row, float]] = []
    for name, opts in tqdm(GRID, desc="tune"):
        rows = run_config(rec, name, opts, DEFAULT_SETS[args.tune], args.tune_limit)
        tune.append((score_rows(name, opts, args.tune, rows), oov_rate(rows, lexicon)))
        tqdm.write(f"{name:18s} {tune[-1][0].wer:6.2f} %  non-words {tune[-1][1]:.1f} %")
    best = min(tune, key=lambda t: (t[0].wer, t[0].rtf_cpu))[0]
    finals = {"model default": {"oov_penalty": 0.0}, "beam 8": {"beam_size": 8, "oov_penalty": 0.0},
              f"picked: {best.config}": best.options}
    final: list[tuple[Row, float]] = []
    for cname, opts in tqdm(list(finals.items()), desc="final"):
        for sname, man in DEFAULT_SETS.items():
            rows = run_config(rec, cname, opts, man, args.limit)
            final.append((score_rows(cname, opts, sname, rows), oov_rate(rows, lexicon)))
            if sname == args.tune and len(rows) > args.tune_limit:
                rest = rows[args.tune_limit:]
                final.append((score_rows(cname, opts, f"{sname} (untuned rest)", rest), oov_rate(rest, lexicon)))
            tqdm.write(f"{cname:24s} {sname:24s} {final[-1][0].wer:6.2f} %")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "asr_lexicon.json").write_text(json.dumps({
        "model": args.model, "lexicon": args.lexicon, "lexicon_words": len(lexicon), "tune": args.tune,
        "tune_limit": args.tune_limit, "picked": best.options,
        "tuning": [{**asdict(r), "nonword_percent": round(o, 2)} for r, o in tune],
        "final": [{**asdict(r), "nonword_percent": round(o, 2)} for r, o in final]}, indent=1) + "\n")
    (args.out / "asr_lexicon.md").write_text(markdown(tune, final, best.config, args))
    print((args.out / "asr_lexicon.md").read_text())


if __name__ == "__main__":
    main()
