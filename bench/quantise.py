"""Float against dynamic-int8 encoder, one run: CPU time and WER on the same audio.

    python -m bench.quantise --model default --limit 100 --name quantise_beam
    python -m bench.quantise --model default --limit 100 --search greedy --name quantise_greedy

Two recognisers of the same store model, one with its encoder's linear layers quantised
(`compression/quantise.py`); every utterance is streamed through both in turn (0.1 s pieces,
endpoints as served, one thread), so a busy neighbour slows both alike and the ratio holds.
Writes `bench/results/<name>.{json,md}` (`--name`, default `quantise`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SETS = {
    "speechocean762 dev": "/work/data/corpus/speechocean762/dev.jsonl",
    "native voices": "/work/data/corpus/native/test.jsonl",
    "TTS rooms": "/work/data/corpus/single/test.jsonl",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--limit", type=int, default=100, help="utterances per set (0 = all)")
    p.add_argument("--search", default="", help='"greedy" to override the model\'s default search')
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="quantise", help="results file stem (e.g. quantise_greedy)")
    args = p.parse_args()

    import jiwer
    import torch
    from tqdm import tqdm

    from compression.quantise import is_quantised, quantise_int8
    from corpus.manifest import read_manifest, resolve_audio
    from decoding.options import DecodingOptions
    from training.data import load_audio
    from training.eval_cli import load_recogniser

    torch.set_num_threads(1)
    recs = {"float": load_recogniser(args.model), "int8": load_recogniser(args.model)}
    if is_quantised(recs["float"].model.encoder):
        raise SystemExit(f"{args.model} loads quantised; compare with its float parent")
    quantise_int8(recs["int8"].model, ["encoder"])
    options = {k: DecodingOptions.from_dict({"search": args.search} if args.search else {}, base=r.options)
               for k, r in recs.items()}
    rows: dict[str, dict] = {}
    for set_name, manifest in SETS.items():
        records = list(read_manifest(manifest))[: args.limit or None]
        hyps = {k: [] for k in recs}
        cpu = {k: 0.0 for k in recs}
        audio = 0.0
        for r in tqdm(records, desc=set_name):
            wave = load_audio(str(resolve_audio(r, manifest)), 16000).numpy()
            audio += len(wave) / 16000
            for k, rec in recs.items():
                c0 = time.process_time()
                words = rec.transcribe(wave, options[k], chunk_samples=1600)
                cpu[k] += time.process_time() - c0
                hyps[k].append(" ".join(w.text for w in words))
        refs = [r.text for r in records]
        rows[set_name] = {k: {"wer": round(100 * jiwer.wer(refs, hyps[k]), 2), "rtf_cpu": round(cpu[k] / audio, 4)}
                          for k in recs}
        rows[set_name]["speedup"] = round(cpu["float"] / max(cpu["int8"], 1e-9), 3)
        rows[set_name]["utterances"] = len(records)
        tqdm.write(f"{set_name}: {json.dumps(rows[set_name])}")
    search = args.search or recs["float"].options.search
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps({"model": args.model, "search": search, "sets": rows}, indent=2))
    lines = ["# Dynamic int8 encoder against float, one run (`bench/quantise.py`)", "",
             f"Model `{args.model}`, search `{search}`, one thread, every utterance through both in turn; "
             "RTF = CPU seconds per audio second.", "",
             "| set | utts | WER float | WER int8 | RTF float | RTF int8 | speed-up |", "|---|---|---|---|---|---|---|"]
    for s, r in rows.items():
        lines.append(f"| {s} | {r['utterances']} | {r['float']['wer']:.1f} % | {r['int8']['wer']:.1f} % | "
                     f"{r['float']['rtf_cpu']:.4f} | {r['int8']['rtf_cpu']:.4f} | {r['speedup']:.2f}x |")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
