"""LM fusion and the MWER family on the real default model (issue 18): greedy, beam, SF, ILME
on the served weights, and MWER, MWER-SF, MWER-ILME fine-tunes each decoded the way it was
trained, plus a control fine-tune (the same updates with the transducer loss alone).

    /work/data/exp/mwer_real/run.sh          # the four fine-tunes (training/mwer.py), same base/data/steps
    python -m bench.fusion_real --limit 200

WER on speechocean762 dev (real, non-native) and the native test set (held-out TTS voices and
text: the cross-domain set), CPU RTF against greedy. Every utterance goes through every row in
turn, one thread, 0.1 s pieces with endpoints, the base's LM and lexicon. Writes
bench/results/fusion_real.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
EXP = Path("/work/data/exp/mwer_real")
SETS = {"speechocean762_dev": "/work/data/corpus/speechocean762/dev.jsonl", "native": "/work/data/corpus/native/test.jsonl"}
# decoding of each family member: greedy; beam alone; SF (asr_lm.md's pick); ILME (the served default's)
GREEDY = {"search": "greedy"}
BEAM = {"search": "beam", "lm_weight": 0.0, "ilm_weight": 0.0, "length_reward": 0.0}
SF = {"search": "beam", "lm_weight": 0.3, "ilm_weight": 0.0, "length_reward": 0.7}
ILME = {}  # the store version's own defaults: λ_T 0.45, λ_I 0.15, ρ 0.7
ROWS = [("greedy", None, GREEDY), ("beam", None, BEAM), ("sf", None, SF), ("ilme", None, ILME),
        ("mwer", "mwer.pt", BEAM), ("mwer_sf", "mwer_sf.pt", SF), ("mwer_ilme", "mwer_ilme.pt", ILME),
        ("control_ilme", "control.pt", ILME)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="default/11")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--name", default="fusion_real")
    args = p.parse_args()

    import jiwer
    import torch
    from tqdm import tqdm

    from bench.compression import build
    from compression.store import ModelStore, split_ref
    from corpus.manifest import read_manifest, resolve_audio
    from decoding.lexicon import LEXICON_FILE, Lexicon
    from decoding.options import DecodingOptions
    from training.data import load_audio

    torch.set_num_threads(1)
    folder, manifest = ModelStore(RESULTS.parent.parent / "store").resolve(*split_ref(args.base))
    lexicon = Lexicon.read(folder / LEXICON_FILE)
    recs = {}
    rows = [(n, c, o) for n, c, o in ROWS if c is None or (EXP / c).exists()]
    for name, ckpt, opts in rows:
        path = str(EXP / ckpt) if ckpt else str(folder / "model.pt")
        rec = recs.get(path) or build(folder, manifest, path, "torch", lexicon)[0]
        recs[path] = rec
    results: dict[str, dict] = {n: {} for n, _, _ in rows}
    for set_name, path in SETS.items():
        records = list(read_manifest(path))[: args.limit]
        hyps = {n: [] for n, _, _ in rows}
        cpu = dict.fromkeys(hyps, 0.0)
        audio = 0.0
        for r in tqdm(records, desc=set_name):
            wave = load_audio(str(resolve_audio(r, path)), 16000).numpy()
            audio += len(wave) / 16000
            for name, ckpt, opts in rows:
                rec = recs[str(EXP / ckpt) if ckpt else str(folder / "model.pt")]
                c0 = time.process_time()
                words = rec.transcribe(wave, DecodingOptions.from_dict(opts, base=rec.options), chunk_samples=1600)
                cpu[name] += time.process_time() - c0
                hyps[name].append(" ".join(w.text for w in words))
        refs = [r.text for r in records]
        for name in hyps:
            results[name][set_name] = {"wer": round(100 * jiwer.wer(refs, hyps[name]), 2), "rtf": round(cpu[name] / audio, 4)}
        tqdm.write(json.dumps({n: v[set_name] for n, v in results.items()}))
    doc = {"base": args.base, "limit": args.limit, "sets": SETS,
           "decoding": {"greedy": GREEDY, "beam": BEAM, "sf": SF, "ilme": "the base's served defaults"},
           "fine_tunes": {n: str(EXP / c) for n, c, _ in rows if c}, "results": results,
           "fusion": {s: {n: results[n][s]["wer"] for n in results} for s in SETS}}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    g = {s: results["greedy"][s]["rtf"] for s in SETS}
    lines = [f"# LM fusion and the MWER family on `{args.base}` (`bench/fusion_real.py`)", "",
             f"First {args.limit} utterances of each set; WER % (CPU RTF, and x greedy's).", "",
             "| method | " + " | ".join(SETS) + " |", "|---" * (1 + len(SETS)) + "|"]
    for name in results:
        lines.append(f"| {name} | " + " | ".join(
            f"{results[name][s]['wer']:.2f} ({results[name][s]['rtf']:.3f}, {results[name][s]['rtf'] / g[s]:.2f}x)"
            for s in SETS) + " |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
