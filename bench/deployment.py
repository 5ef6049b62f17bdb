"""Issue 18's report, bench/results/deployment.{json,md}, assembled from the runs that measured
each part (nothing is re-measured here):

- word times: bench/results/word_times.json (`python -m bench.word_times`);
- confidence: the served model's calibrator metrics, held out (`minutes train confidence`, sealed
  in the store manifest's `extra.confidence`);
- fusion: bench/results/fusion_real.json (`python -m bench.fusion_real`: the real default with the
  MWER family), else bench/results/asr_lm.json (default/8, no MWER);
- adaptation: bench/results/adaptation.json (`python -m bench.adaptation`), ILMA only so far.

    python -m bench.deployment [--model default]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
REAL = "speechocean762_dev"


def word_times() -> dict:
    d = json.loads((RESULTS / "word_times.json").read_text())
    real = next(s for s in d["sets"] if s["name"] == REAL)["errors_ms"]
    return {"mean_start_ms": real["aligned"]["mean_start_ms"], "mean_end_ms": real["aligned"]["mean_end_ms"],
            "emission_mean_start_ms": real["emission"]["mean_start_ms"],
            "emission_mean_end_ms": real["emission"]["mean_end_ms"],
            "median_start_ms": real["aligned"]["median_start_ms"], "median_end_ms": real["aligned"]["median_end_ms"],
            "reference": next(s for s in d["sets"] if s["name"] == REAL)["reference"], "model": d["model"],
            "shift_s": d["shift_s"], "sets": {s["name"]: s["errors_ms"] for s in d["sets"]}}


def confidence(model: str) -> dict:
    from compression.store import ModelStore, split_ref

    _, manifest = ModelStore(RESULTS.parent.parent / "store").resolve(*split_ref(model))
    m = manifest.extra["confidence"]["metrics"]
    real = next(k for k in m if k.startswith("speechocean762"))
    return {"auc": m[real]["calibrated"]["auc"], "nce": m[real]["calibrated"]["nce"],
            "raw_auc": m[real]["raw"]["auc"], "raw_nce": m[real]["raw"]["nce"], "set": real,
            "model": f"{manifest.name}/{manifest.version}", "fitted_on": m.get("fitted_on"),
            "sets": {k: v for k, v in m.items() if isinstance(v, dict)}}


def fusion() -> dict:
    real = RESULTS / "fusion_real.json"
    if real.exists():
        d = json.loads(real.read_text())
        out: dict = {"model": d["base"]}
        for method, per_set in d["results"].items():
            for s, v in per_set.items():
                out.setdefault(s, {})[method] = {"wer": v["wer"], "rtf": v["rtf"]}
        return out
    d = json.loads((RESULTS / "asr_lm.json").read_text())
    out = {"model": d["model"]}
    for r in d["final"]:
        out.setdefault(r["set"], {})[r["config"]] = {"wer": r["wer"], "rtf": r["rtf_cpu"]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    args = p.parse_args()
    adaptation = json.loads((RESULTS / "adaptation.json").read_text())
    fu = fusion()
    doc = {"word_times": word_times(), "confidence": confidence(args.model),
           "fusion": {k: {m: v["wer"] for m, v in row.items()} for k, row in fu.items() if k != "model"},
           "fusion_rtf": {k: {m: v["rtf"] for m, v in row.items()} for k, row in fu.items() if k != "model"},
           "fusion_model": fu["model"],
           "adaptation": adaptation["adaptation"],
           "missing": ["adaptation by splicing and by TTS"] + ([] if (RESULTS / "fusion_real.json").exists() else
                                                                ["fusion: MWER, MWER-SF, MWER-ILME of the real default"])}
    (RESULTS / "deployment.json").write_text(json.dumps(doc, indent=2) + "\n")
    wt, cf = doc["word_times"], doc["confidence"]
    lines = ["# The transducer in deployment (issue 18), assembled by `bench/deployment.py`", "",
             "## Word times of final words", "",
             f"Model {wt['model']}; reference: {wt['reference']} (real speech, {REAL}); details in `word_times.md`.", "",
             "| method | mean start ms | mean end ms |", "|---|---|---|",
             f"| emission frames (before) | {wt['emission_mean_start_ms']} | {wt['emission_mean_end_ms']} |",
             f"| forced alignment on the CTC head + shift | {wt['mean_start_ms']} | {wt['mean_end_ms']} |", "",
             "## Word confidence", "",
             f"Model {cf['model']}; calibrator fitted on {cf['fitted_on']}; scored on held-out halves and a held-out set. "
             "Reliability plot: `deployment_confidence.png`.", "",
             "| set | raw mean posterior AUC | raw NCE | calibrated AUC | calibrated NCE |", "|---|---|---|---|---|"]
    for name, m in cf["sets"].items():
        lines.append(f"| {name} | {m['raw']['auc']} | {m['raw']['nce']} | {m['calibrated']['auc']} | {m['calibrated']['nce']} |")
    lines += ["", f"## Text-only adaptation (new domain: software licences, `adaptation.md`)", "",
              "| method | WER new domain | WER source domain |", "|---|---|---|"]
    lines += [f"| {m} | {v['target_wer']} % | {v['source_wer']} % |" for m, v in doc["adaptation"].items()]
    source = "fusion_real.md" if (RESULTS / "fusion_real.json").exists() else "asr_lm.md"
    lines += ["", f"## LM fusion and MWER on real speech (model {fu['model']}, `{source}`)", "",
              "| set | " + " | ".join(next(v for k, v in fu.items() if k != "model")) + " |",
              "|---" * (1 + len(next(v for k, v in fu.items() if k != "model"))) + "|"]
    for name, row in fu.items():
        if name != "model":
            lines.append(f"| {name} | " + " | ".join(f"{v['wer']} % ({v['rtf']})" for v in row.values()) + " |")
    lines += ["", "Not measured yet: " + "; ".join(doc["missing"]) + "."]
    (RESULTS / "deployment.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
