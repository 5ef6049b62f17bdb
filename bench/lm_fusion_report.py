"""Combine the speech and simulated-channel LM-fusion runs into bench/results/lm_fusion.{json,md}.

    python -m bench.lm_fusion_report --real DIR   # DIR: where `bench.lm_fusion --out DIR` wrote

`lm_fusion.json` keeps the issue's shape, `{test_set: {method: {"wer": %}}}`; the simulated sets
are named `sim_*`. The table says which numbers come from which model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.lm_fusion import RESULTS, hotwords_table, table

METHODS = ["greedy", "beam", "sf", "ilme", "mwer", "mwer_sf", "mwer_ilme"]


def _rows(results: dict) -> list[str]:
    out = ["| test set | " + " | ".join(METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for name, row in results.items():
        out.append(f"| {name} | " + " | ".join(f"{row[m]['wer']:.1f}" if m in row else "–" for m in METHODS) + " |")
    return out


def sim_section(res: dict, det: dict) -> str:
    t = det["tuned"]
    lines = ["# Simulated channel (transducer trained here on non-bible text; bible LM)", "",
             f"Noise {det['noise']}; λ's tuned on sim_bible_dev: SF λ_T={t['sf']['lm_weight']}, ILME "
             f"λ_T={t['ilme']['lm_weight']} λ_I={t['ilme']['ilm_weight']}. Sizes: {det['sizes']}.", ""]
    lines += _rows(res)
    lr = det.get("sf_length_reward")
    if lr:
        lines += ["", f"SF with a tuned length reward (the usual remedy for SF's deletions; λ_T={lr['lm_weight']}, "
                  f"reward {lr['length_reward']}/token): sim_bible_test {lr['sim_bible_test']:.1f}, "
                  f"sim_source_test {lr['sim_source_test']:.1f} — still far behind ILME on the cross-domain set."]
    if det.get("mwer"):
        lines += ["", "MWER fine-tunes (same base, same steps; decoded with their training λ's):", "",
                  "| variant | λ_T | λ_I | steps | MWER loss first→last |", "|---|---|---|---|---|"]
        for k, v in det["mwer"].items():
            lines.append(f"| {k} | {v['lm_weight']} | {v['ilm_weight']} | {v['steps']} | "
                         f"{v['mwer_loss_first_last'][0]} → {v['mwer_loss_first_last'][1]} |")
    c = det.get("mwer", {}).get("control")
    if c:
        lines += ["", "Control (the same 30 updates with the transducer loss alone), decoded like the base:", "",
                  "| test set | beam | sf | ilme |", "|---|---|---|---|"]
        for name in ("sim_bible_test", "sim_source_test"):
            if name in c:
                lines.append(f"| {name} | {c[name]['beam']:.1f} | {c[name]['sf']:.1f} | {c[name]['ilme']:.1f} |")
    if det.get("lambda_sensitivity"):
        lines += ["", "λ sensitivity (sim_bible_dev WER, λ's ×0.5 / ×1 / ×1.5):", "",
                  "| model | ×0.5 | ×1 | ×1.5 | spread |", "|---|---|---|---|---|"]
        for k, v in det["lambda_sensitivity"].items():
            w = v["wer"]
            lines.append(f"| {k} | {w['x0.5']:.1f} | {w['x1.0']:.1f} | {w['x1.5']:.1f} | {v['spread']:.1f} |")
    hw = det.get("hotwords")
    if hw:
        lines += hotwords_table(hw, f"Hotwords on {hw['set']} ({hw['n_words']} rare words, bonus {hw['score']}/token):")
    r = det.get("rtf")
    if r:
        lines += ["", f"Search cost on this trained model (1 thread, one utterance at a time, encoder + search): "
                  f"greedy RTF {r['greedy']:.4f}, beam 4 + ILME + LSTM LM RTF {r['beam_ilme']:.4f}, "
                  f"ratio {r['ratio']:.2f}× (target ≤ 2×)."]
    return "\n".join(lines) + "\n"


EXTRA_KEYS = ("cost", "lambda_sensitivity", "hotwords")  # written by bench.lm_cost / lm_fusion_sim / lm_hotwords


def cost_section(c: dict) -> str:
    lines = ["## Beam search cost (`python -m bench.lm_cost`)", "",
             f"Model `{c['model']}`, LM `{c['lm'] or 'none'}`, beam {c['options']['beam_size']}, "
             f"λ_T={c['options']['lm_weight']}, λ_I={c['options']['ilm_weight']}; {c['utterances']} utterances "
             f"× {c.get('rounds', 1)} round(s) ({c['audio_seconds']} s of audio per decoder), {c['how']}; the "
             f"concurrent-stream figure is one round in groups of that many streams.", "",
             "| streams | greedy RTF | beam 4 + ILME RTF | ratio (target ≤ 2×) |", "|---|---|---|---|",
             f"| 1 | {c['greedy_rtf']:.4f} | {c['beam4_ilme_rtf']:.4f} | {c['ratio']:.2f}× |"]
    for k, v in c.items():
        if k.startswith("streams_"):
            lines.append(f"| {k.split('_')[1]} together | {v['greedy_rtf']:.4f} | {v['beam4_ilme_rtf']:.4f} | {v['ratio']:.2f}× |")
    for k, v in c.items():
        if k.endswith("_preview"):
            s8 = next((x for n, x in v.items() if n.startswith("streams_")), None)
            lines.append(f"| 1 ({k}) | {v['greedy_rtf']:.4f} | {v['beam4_ilme_rtf']:.4f} | {v['ratio']:.2f}× |")
            if s8:
                lines.append(f"| 8 together ({k}) | {s8['greedy_rtf']:.4f} | {s8['beam4_ilme_rtf']:.4f} | {s8['ratio']:.2f}× |")
            lines += ["", f"`{k}`: {v['note']}.", ""]
    w = c["wall"]
    lines += ["", f"Wall-clock (shared machine, noisier): greedy {w['greedy_rtf']:.4f}, beam {w['beam4_ilme_rtf']:.4f}, "
              f"ratio {w['ratio']:.2f}×."]
    return "\n".join(lines)


def lambda_section(ls: dict, grid: dict | None) -> str:
    lines = ["## λ sensitivity (`python -m bench.lm_fusion_sim --lambda-only --mwer-steps 30`)", "", ls["setup"] + ".", "",
             "WER spread (max − min) and std over the λ_T grid:", "",
             "| model @ fusion | " + " | ".join(f"{k} spread / std" for k in ls[next(k for k in ls if '@' in k)]) + " |",
             "|---|" + "---|" * len(ls[next(k for k in ls if '@' in k)])]
    for key, v in ls.items():
        if "@" in key:
            lines.append(f"| {key} | " + " | ".join(f"{x['spread']:.1f} / {x['std']:.1f}" for x in v.values()) + " |")
    if grid:
        lts = grid["lambda_t"]
        lines += ["", "WER % at each λ_T (bible test / source test):", "",
                  "| model @ fusion | " + " | ".join(str(x) for x in lts) + " |", "|---|" + "---|" * len(lts)]
        for key, g in grid["grid"].items():
            lines.append(f"| {key} | " + " | ".join(
                f"{g['sim_bible_test'][str(x)]:.1f} / {g['sim_source_test'][str(x)]:.1f}" for x in lts) + " |")
        lines += ["", "![λ sensitivity](lm_fusion_lambda.png)"]
    return "\n".join(lines)


def hotword_section(hw: dict) -> str:
    lines = ["## Hotwords (recall of rare words, with and without biasing)", ""]
    for name, h in hw.items():
        where = h.get("set")
        lines += [f"**{name}** — {where}: {h['n_words']} rare words, bonus {h['score']}/token"
                  + (f", model `{h['model']}`" if "model" in h else "") + ":", "",
                  "| decoding | recall % | WER % |", "|---|---|---|"]
        lines += [f"| {k} | {v['recall']:.1f} | {v['wer']:.1f} |" for k, v in h["runs"].items()]
        lines.append("")
    return "\n".join(lines)


def update_sections(md_path: Path = RESULTS / "lm_fusion.md") -> str:
    """Replace (or append) the generated sections of lm_fusion.md from lm_fusion.json."""
    import re

    data = json.loads((RESULTS / "lm_fusion.json").read_text())
    det_path = RESULTS / "lm_fusion_sim_details.json"
    det = json.loads(det_path.read_text()) if det_path.exists() else {}
    grid = det.get("lambda_grid")
    if det.get("hotwords"):  # the simulated-channel hotword run (bench.lm_fusion_sim) into the main file
        sim_hw = det["hotwords"] | {"set": f"simulated channel, {det['hotwords']['set']} (bible LM domain)"}
        data.setdefault("hotwords", {})["sim_channel"] = sim_hw
        (RESULTS / "lm_fusion.json").write_text(json.dumps(data, indent=2) + "\n")
    parts = {"cost": cost_section(data["cost"]) if "cost" in data else "",
             "lambda": lambda_section(data["lambda_sensitivity"], grid) if "lambda_sensitivity" in data else "",
             "hotwords": hotword_section(data["hotwords"]) if "hotwords" in data else ""}
    md = md_path.read_text()
    for name, text in parts.items():
        if not text:
            continue
        block = f"<!-- section:{name} -->\n{text.rstrip()}\n<!-- /section:{name} -->"
        pat = re.compile(rf"<!-- section:{name} -->.*?<!-- /section:{name} -->", re.S)
        md = pat.sub(lambda _: block, md) if pat.search(md) else md.rstrip() + "\n\n" + block + "\n"
    md_path.write_text(md)
    return md


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", type=Path)
    p.add_argument("--sections-only", action="store_true",
                   help="only refresh the cost / λ-sensitivity / hotword sections of lm_fusion.md from lm_fusion.json")
    p.add_argument("--preface", type=Path, help="markdown put above the tables (what the numbers mean)")
    args = p.parse_args(argv)
    if args.sections_only or args.real is None:
        update_sections()
        return
    old = json.loads((RESULTS / "lm_fusion.json").read_text()) if (RESULTS / "lm_fusion.json").exists() else {}
    results: dict = {}
    md = [args.preface.read_text()] if args.preface and args.preface.exists() else []
    real = args.real / "lm_fusion.json"
    if real.exists():
        r = json.loads(real.read_text())
        d = json.loads((args.real / "lm_fusion_details.json").read_text())
        results |= r
        md.append("# Speech (the session's ASR checkpoint)\n\n" + table(r, d).split("\n", 2)[2])
        (RESULTS / "lm_fusion_details.json").write_text(json.dumps(d, indent=2) + "\n")
    sim = RESULTS / "lm_fusion_sim.json"
    if sim.exists():
        s = json.loads(sim.read_text())
        results |= s
        md.append(sim_section(s, json.loads((RESULTS / "lm_fusion_sim_details.json").read_text())))
    results |= {k: old[k] for k in EXTRA_KEYS if k in old}
    (RESULTS / "lm_fusion.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "lm_fusion.md").write_text("\n".join(md))
    print(update_sections())


if __name__ == "__main__":
    main()
