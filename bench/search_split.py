"""Where a variant's CPU time goes outside the encoder: the same utterances decoded with the
served search, without the LM (no fusion, no ILME), without the lexicon, and greedy
(issue 17: which part of the search is worth compressing).

    python -m bench.search_split dense=torch ort8=onnxruntime-int8 ort8s=onnxruntime-int8+int8search \
        [--lm name=PATH] [--limit 40]

Prints, per variant and search, RTF = CPU s per audio s in all, in the encoder, and the rest.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SEARCHES = {"served": {}, "no LM": {"lm_weight": 0, "ilm_weight": 0}, "no lexicon": {"oov_penalty": 0},
            "greedy": {"search": "greedy"}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="+", help="name=runtime (bench/compression.py's runtimes and extras)")
    p.add_argument("--base", default="default/10")
    p.add_argument("--lm", action="append", default=[], help="name=LM checkpoint for that variant")
    p.add_argument("--set", default="/work/data/corpus/speechocean762/dev_first120.jsonl")
    p.add_argument("--limit", type=int, default=40)
    args = p.parse_args()

    import torch

    from bench.compression import EncoderClock, build
    from compression.store import ModelStore, split_ref
    from corpus.manifest import read_manifest, resolve_audio
    from decoding.lexicon import LEXICON_FILE, Lexicon
    from decoding.options import DecodingOptions
    from training.data import load_audio

    torch.set_num_threads(1)
    folder, manifest = ModelStore(Path(__file__).resolve().parent.parent / "store").resolve(*split_ref(args.base))
    lexicon = Lexicon.read(folder / LEXICON_FILE)
    lms = dict(v.split("=", 1) for v in args.lm)
    records = list(read_manifest(args.set))[: args.limit]
    waves = [load_audio(str(resolve_audio(r, args.set)), 16000).numpy() for r in records]
    audio = sum(len(w) for w in waves) / 16000
    runs = {}
    for spec in args.variants:
        name, runtime = spec.split("=", 1)
        rec = build(folder, manifest, str(folder / "model.pt"), runtime, lexicon, lm_path=lms.get(name))[0]
        clock = EncoderClock(rec.model)
        for search, o in SEARCHES.items():
            runs[(name, search)] = (rec, clock, DecodingOptions.from_dict(o, base=rec.options))
    cpu = dict.fromkeys(runs, 0.0)
    enc = dict.fromkeys(runs, 0.0)
    for w in waves:  # every utterance through every run in turn: a busy neighbour slows all alike
        for k, (rec, clock, o) in runs.items():
            e0, c0 = clock.seconds, time.process_time()
            rec.transcribe(w, o, chunk_samples=1600)
            cpu[k] += time.process_time() - c0
            enc[k] += clock.seconds - e0
    print("| variant | search | RTF | encoder | rest |\n|---|---|---|---|---|")
    for (name, search) in runs:
        k = (name, search)
        print(f"| {name} | {search} | {cpu[k] / audio:.4f} | {enc[k] / audio:.4f} | {(cpu[k] - enc[k]) / audio:.4f} |")


if __name__ == "__main__":
    main()
