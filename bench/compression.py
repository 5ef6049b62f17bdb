"""Compressed variants side by side, one run: CPU time per stream, throughput at 16 batched
streams, and WER on a real-speech and a synthetic dev set (issue 17's table).

    python -m bench.compression --base default/10 \
        --variant dense-torch=store/default/10/model.pt \
        --variant dense-ort=store/default/10/model.pt@onnxruntime \
        --variant ort-int8=store/default/10/model.pt@onnxruntime-int8 \
        --variant ff50h4-int8=/work/data/exp/prune/ff50h4.pt@onnxruntime-int8

Every variant is decoded exactly as the base store version serves (its decoding options, LM
and lexicon; `--search greedy` to compare without the LM), one thread, 0.1 s pieces with
endpoints. Each utterance goes through every variant in turn, so a busy neighbour (training on
the other core) slows all of them alike and the ratios hold; RTF is CPU seconds per audio
second. Throughput: `--batch` streams (16) of the first utterances decoded together by
`decode_streams`, audio seconds per CPU second. `speedup` is against the first variant (the
dense default) in this run; `wer_delta` the absolute change on the first set (real speech).
(The earlier float-against-int8 comparisons, bench/results/quantise_*.md, are two-variant runs of
this: `--variant float=...@torch --variant int8=...@torch-int8 [--search greedy]`.)
Writes bench/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SETS = {
    "speechocean762_dev": "/work/data/corpus/speechocean762/dev.jsonl",  # real non-native speech
    "native": "/work/data/corpus/native/test.jsonl",  # TTS voices
}


@dataclass
class VariantResult:
    name: str
    checkpoint: str
    runtime: str
    parameters: int
    sparsity: float  # fraction of the parent's encoder weights gone or zero
    rtf: float = 0.0  # CPU s per audio s, one stream, first set
    speedup: float = 1.0  # against the first variant, same run
    throughput_16: float = 0.0  # audio s per CPU s with 16 streams batched
    encoder_rtf: float = 0.0  # CPU s per audio s inside the encoder alone
    wer: dict[str, float] = field(default_factory=dict)
    wer_delta: float = 0.0  # absolute, on the first set, against the first variant
    lm: str = ""  # the external LM searched with when not the base's (e.g. a shrunk one)


def parse_variant(spec: str) -> tuple[str, str, str]:
    """`name=checkpoint[@runtime[+int8search]]` -> (name, checkpoint, runtime)."""
    name, _, rest = spec.partition("=")
    path, _, runtime = rest.partition("@")
    if not name or not path:
        raise argparse.ArgumentTypeError(f"--variant wants name=checkpoint[@runtime], not {spec!r}")
    return name, path, runtime or "torch"


def build(base_folder: Path, manifest, checkpoint: str, runtime: str, lexicon, reference=None,
          lm_path: str | None = None):
    """(A Recogniser of `checkpoint` decoding exactly as the base version serves, its parameter
    count, its encoder sparsity against `reference`) — sizes from the checkpoint as loaded,
    before a runtime repacks its layers. `reference` None: the checkpoint is its own.
    `lm_path`: an external LM in place of the base's (e.g. a shrunk one, compression/shrink_lm.py).
    Runtime extras: `+int8search` (every search part in int8), `+int8lm` (the LM only)."""
    from compression.plan import plan_sparsity
    from compression.quantise import apply_compression
    from decoding.recogniser import Recogniser
    from decoding.recogniser_beam import LM_FILE, BeamDecoding
    from decoding.tokenizer import Tokenizer
    from models.transducer import load_checkpoint

    runtime, _, extra = runtime.partition("+")
    model, blob = load_checkpoint(checkpoint)
    params, sparsity = model.num_params(), plan_sparsity(model, reference if reference is not None else model)
    if runtime == "torch-int8":  # torch's dynamic int8 linear layers (compression/quantise.py)
        apply_compression(model, {"int8_dynamic": ["encoder"], "plan": blob.get("prune_plan")})
    else:
        apply_compression(model, {"runtime": runtime, "plan": blob.get("prune_plan")})
    tok = Tokenizer(blob["tokenizer"])
    lm = Path(lm_path) if lm_path else base_folder / LM_FILE
    beam = BeamDecoding(model, tok, lm if lm.exists() else None, lexicon)
    if extra in ("int8search", "int8lm"):  # the search's own layers in int8 (compression/int8_search.py)
        from compression.int8_search import PARTS, quantise_search

        parts = PARTS if extra == "int8search" else ("lm",)
        quantise_search(model, beam.search.lm.lm if beam.search.lm is not None else None, parts)
    return Recogniser(model, tok, manifest, beam), params, sparsity


def throughput(rec, waves, options) -> float:
    """Audio seconds per CPU second with every wave in its own stream, decoded together."""
    streams = [rec.new_stream(options) for _ in waves]
    for s, w in zip(streams, waves):
        s.accept_waveform(w)
        s.input_finished()
    c0 = time.process_time()
    while any(rec.is_ready(s) for s in streams):
        rec.decode_streams(streams)
    cpu = time.process_time() - c0
    return sum(len(w) for w in waves) / 16000 / max(cpu, 1e-9)


class EncoderClock:
    """CPU seconds spent in one model's `stream_encode`."""

    def __init__(self, model) -> None:
        self.seconds = 0.0
        inner = model.stream_encode

        def timed(*a, **k):
            c0 = time.process_time()
            out = inner(*a, **k)
            self.seconds += time.process_time() - c0
            return out

        model.stream_encode = timed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="default/10", help="the store version whose decoding every variant uses")
    p.add_argument("--variant", action="append", type=parse_variant, required=True,
                   help="name=checkpoint[@torch|torch-int8|onnxruntime|onnxruntime-int8[+int8search|+int8lm]]; "
                        "the first is the reference")
    p.add_argument("--variant-lm", action="append", default=[],
                   help="name=LM checkpoint: that variant searches with this LM instead of the base's")
    p.add_argument("--set", action="append", default=[], help="name=manifest (default: speechocean762 dev, native)")
    p.add_argument("--limit", type=int, default=0, help="utterances per set (0 = all)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--search", default="", help='"greedy" to compare without beam and LM')
    p.add_argument("--name", default="compression")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

    import jiwer
    import torch
    from tqdm import tqdm

    from compression.store import ModelStore, split_ref
    from corpus.manifest import read_manifest, resolve_audio
    from decoding.lexicon import LEXICON_FILE, Lexicon
    from decoding.options import DecodingOptions
    from training.data import load_audio

    torch.set_num_threads(1)
    folder, manifest = ModelStore(Path(__file__).resolve().parent.parent / "store").resolve(*split_ref(args.base))
    lexicon = Lexicon.read(folder / LEXICON_FILE) if (folder / LEXICON_FILE).exists() else None
    from models.transducer import load_checkpoint

    recs, results, clocks = {}, {}, {}
    reference = load_checkpoint(args.variant[0][1])[0]  # what every variant's sparsity is counted against
    variant_lm = dict(v.split("=", 1) for v in args.variant_lm)
    for name, ckpt, runtime in tqdm(args.variant, desc="load"):
        recs[name], params, sparsity = build(folder, manifest, ckpt, runtime, lexicon, reference, variant_lm.get(name))
        clocks[name] = EncoderClock(recs[name].model)
        results[name] = VariantResult(name, ckpt, runtime, params, sparsity, lm=variant_lm.get(name, ""))
    first = args.variant[0][0]
    options = {k: DecodingOptions.from_dict({"search": args.search} if args.search else {}, base=r.options)
               for k, r in recs.items()}
    sets = dict(s.split("=", 1) for s in args.set) or SETS
    first_set = next(iter(sets))
    for set_name, path in sets.items():
        records = list(read_manifest(path))[: args.limit or None]
        hyps = {k: [] for k in recs}
        cpu = {k: 0.0 for k in recs}
        enc0 = {k: clocks[k].seconds for k in recs}
        audio = 0.0
        for r in tqdm(records, desc=set_name):
            wave = load_audio(str(resolve_audio(r, path)), 16000).numpy()
            audio += len(wave) / 16000
            for k, rec in recs.items():
                c0 = time.process_time()
                words = rec.transcribe(wave, options[k], chunk_samples=1600)
                cpu[k] += time.process_time() - c0
                hyps[k].append(" ".join(w.text for w in words))
        refs = [r.text for r in records]
        for k in recs:
            results[k].wer[set_name] = round(100 * jiwer.wer(refs, hyps[k]), 2)
            if set_name == first_set:
                results[k].rtf = round(cpu[k] / audio, 4)
                results[k].encoder_rtf = round((clocks[k].seconds - enc0[k]) / audio, 4)
        tqdm.write(f"{set_name}: " + ", ".join(f"{k} {results[k].wer[set_name]:.2f}%" for k in recs))
        if set_name == first_set:
            waves = [load_audio(str(resolve_audio(r, path)), 16000).numpy() for r in records[: args.batch]]
            for k in tqdm(recs, desc=f"{args.batch} streams"):
                results[k].throughput_16 = round(throughput(recs[k], waves, options[k]), 2)
    ref = results[first]
    for r in results.values():
        r.speedup = round(ref.rtf / max(r.rtf, 1e-9), 3)
        r.wer_delta = round(r.wer[first_set] - ref.wer[first_set], 2)
    write(args, list(results.values()), sets, first_set, records_note=args.limit)


def write(args, rows: list[VariantResult], sets: dict[str, str], first_set: str, records_note: int) -> None:
    search = args.search or "the base's own (beam + LM + lexicon)"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(
        {"base": args.base, "search": search, "sets": sets, "limit": records_note, "batch": args.batch,
         "variants": [asdict(r) for r in rows]}, indent=2) + "\n")
    names = list(sets)
    lines = [f"# Compressed variants, one run (`bench/compression.py`, `--name {args.name}`)", "",
             f"Base `{args.base}`; search: {search}; one thread; every utterance through every variant in turn. "
             f"RTF = CPU seconds per audio second on {first_set}; speed-up against `{rows[0].name}`; "
             f"throughput = audio seconds per CPU second with {args.batch} streams batched; "
             f"WER delta = absolute change on {first_set} (real speech).", "",
             "| variant | runtime | params | sparsity | RTF | encoder RTF | speed-up | throughput x"
             f"{args.batch} | " + " | ".join(f"WER {n}" for n in names) + " | WER delta |",
             "|---" * (8 + len(names) + 1) + "|"]
    for r in rows:
        runtime = r.runtime + (f" + LM {Path(r.lm).stem}" if r.lm else "")
        lines.append(f"| {r.name} | {runtime} | {r.parameters / 1e6:.2f} M | {r.sparsity:.2f} | {r.rtf:.4f} | "
                     f"{r.encoder_rtf:.4f} | {r.speedup:.2f}x | {r.throughput_16:.1f} | "
                     + " | ".join(f"{r.wer[n]:.2f} %" for n in names) + f" | {r.wer_delta:+.2f} |")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
