"""Chunk width at inference: accuracy, CPU and latency of 1x..8x the trained chunk, served path.

    python -m bench.asr_chunks --model default/9 --lexicon /work/data/exp/lexicon.txt.gz

A Whisper-encoder model is trained at one chunk (0.32 s), but its encoder steps any whole
number of chunks (`options.chunk_seconds`; the key/value cache keeps its trained size). A wider
chunk shows each step more of the future. This measures what that buys without any training,
for the model's own decoding and for `--decoding` (e.g. a wider beam with the lexicon), on the
tuning slice (first `--tune-limit` speechocean762 dev utterances; what `batch_chunk_seconds`
is picked on) and on a slice of the native set (not used to pick). Algorithmic latency is
the chunk plus the analysis window's overhang. Writes bench/results/asr_chunks.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from bench.asr_lm import DEFAULT_SETS, RESULTS, run_config, score_rows

MULTIPLES = (1, 2, 4, 8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--lexicon", default=None, help="word list, when the model has none and --decoding uses one")
    p.add_argument("--decoding", type=json.loads, default={"beam_size": 8, "oov_penalty": 3.0},
                   help="a second decoding to measure beside the model's own")
    p.add_argument("--tune-limit", type=int, default=100)
    p.add_argument("--native-limit", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

    from tqdm import tqdm

    from bench.asr_lexicon import load_with_lexicon

    rec = load_with_lexicon(args.model, args.lexicon, args.threads)
    fb = rec.fbank_cfg
    overhang = (fb.window - fb.shift) / fb.sample_rate
    decodings = {"model default": {}, f"{json.dumps(args.decoding)}": args.decoding}
    slices = {"speechocean762_dev": args.tune_limit, "native": args.native_limit}
    rows = []
    for k in tqdm(MULTIPLES, desc="chunk"):
        seconds = round(k * rec.chunk_seconds, 6)
        for dname, dec in decodings.items():
            for sname, limit in slices.items():
                opts = {**dec, "chunk_seconds": seconds}
                r = score_rows(dname, opts, sname, run_config(rec, dname, opts, DEFAULT_SETS[sname], limit))
                rows.append({**asdict(r), "chunk_seconds": seconds, "latency_seconds": round(seconds + overhang, 3)})
                tqdm.write(f"{seconds:.2f} s {dname:40s} {sname:20s} {r.wer:6.2f} % RTF {r.rtf_cpu:.3f}")
    tune = [r for r in rows if r["set"] == "speechocean762_dev"]
    best = min(tune, key=lambda r: (r["wer"], r["chunk_seconds"]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "asr_chunks.json").write_text(json.dumps({"model": args.model, "trained_chunk_seconds": rec.chunk_seconds,
                                                         "picked": {"config": best["config"], "chunk_seconds": best["chunk_seconds"]},
                                                         "rows": rows}, indent=1) + "\n")
    out = ["# Chunk width at inference (`bench/asr_chunks.py`)", "",
           f"Model `{args.model}` (trained at {rec.chunk_seconds:g} s chunks); served path, 0.1 s pieces, endpoints, "
           f"one thread beside other jobs (CPU RTFs comparable within this file only). Slices: the first "
           f"{args.tune_limit} speechocean762 dev utterances (what a batch chunk is picked on) and the first "
           f"{args.native_limit} native-set utterances (not used to pick).", "",
           "| chunk | algorithmic latency | decoding | speechocean762 dev slice | native slice |", "|---|---|---|---|---|"]
    for k in MULTIPLES:
        seconds = round(k * rec.chunk_seconds, 6)
        for dname in decodings:
            cells = []
            for sname in slices:
                r = next(x for x in rows if x["chunk_seconds"] == seconds and x["config"] == dname and x["set"] == sname)
                cells.append(f"{r['wer']:.1f} % (RTF {r['rtf_cpu']:.3f})")
            out.append(f"| {seconds:.2f} s | {seconds + overhang:.3f} s | {dname} | " + " | ".join(cells) + " |")
    out += ["", f"Best on the tuning slice: {best['chunk_seconds']:.2f} s with {best['config']}.", ""]
    (args.out / "asr_chunks.md").write_text("\n".join(out))
    print("\n".join(out))


if __name__ == "__main__":
    main()
