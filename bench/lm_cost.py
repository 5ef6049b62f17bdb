"""Beam-search cost on the shipped model: streamed greedy vs streamed beam 4 + ILME + LSTM LM.

    python -m bench.lm_cost --utts 24            # writes "cost" into bench/results/lm_fusion.json
    python -m bench.lm_cost --utts 6 --profile   # cProfile of the beam path, top functions

Why this way: the issue's bound (beam 4 with ILME ≤ 2× greedy) is about what a server pays, so
both decoders run the real streaming path (`Recogniser.transcribe`: fbank, chunked encoder,
search, endpoints, words) on the same audio, in the same process, 1 thread, interleaved
utterance by utterance (alternating which goes first) so that load from other processes on this
shared machine hits both alike. RTF is reported from process CPU time (what this process
computed; robust to other jobs stealing the core) and from wall time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from corpus.manifest import read_manifest, resolve_audio
from decoding.options import DecodingOptions
from decoding.recogniser import Recogniser
from decoding.recogniser_beam import LM_FILE, BeamDecoding
from training.eval_cli import resolve_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SETS = ("/work/data/corpus/speechocean762/dev.jsonl", "/work/data/corpus/single/test.jsonl")
DEFAULT_LM = "/work/data/exp/lm/default/lm.pt"  # `minutes train lm` on the store's tokenizer


@dataclass
class Cost:
    audio_s: float
    cpu: dict[str, float]
    wall: dict[str, float]

    def summary(self) -> dict:
        g, b = self.cpu["greedy"], self.cpu["beam4_ilme"]
        return {"greedy_rtf": round(g / self.audio_s, 4), "beam4_ilme_rtf": round(b / self.audio_s, 4),
                "ratio": round(b / g, 2),
                "wall": {"greedy_rtf": round(self.wall["greedy"] / self.audio_s, 4),
                         "beam4_ilme_rtf": round(self.wall["beam4_ilme"] / self.audio_s, 4),
                         "ratio": round(self.wall["beam4_ilme"] / self.wall["greedy"], 2)},
                "audio_seconds": round(self.audio_s, 1)}


def load_audio(n: int) -> list[np.ndarray]:
    """n utterances, half from each test set (first ones: fixed, reproducible)."""
    out = []
    for path in SETS:
        recs = list(read_manifest(path))[: (n + 1) // 2]
        for r in recs:
            x, _ = sf.read(resolve_audio(r, path), dtype="float32", always_2d=True)
            out.append(x[:, 0].copy())
    return out[:n]


def _model_file(model: str) -> Path:
    """model.pt of a store reference, store name folder, version folder or checkpoint."""
    p = resolve_model(model)
    return p / "model.pt" if p.is_dir() else p


def load_recogniser(model: str, lm: str) -> tuple[Recogniser, str]:
    folder = resolve_model(model)
    folder = folder if folder.is_dir() else folder.parent
    rec = Recogniser.load(folder)
    lm_path = str(folder / LM_FILE) if (folder / LM_FILE).exists() else lm
    if rec.beam.search.lm is None and lm_path and Path(lm_path).exists():
        rec.beam = BeamDecoding(rec.model, rec.tok, lm_path)
    return rec, lm_path if rec.beam.search.lm is not None else ""


def measure(rec: Recogniser, audio: list[np.ndarray], opts: dict[str, DecodingOptions], rounds: int = 1) -> Cost:
    cpu = {k: 0.0 for k in opts}
    wall = {k: 0.0 for k in opts}
    names = list(opts)
    for r in range(rounds):
        for i, x in enumerate(audio):
            order = names if (i + r) % 2 == 0 else names[::-1]
            for k in order:
                c0, w0 = time.process_time(), time.perf_counter()
                rec.transcribe(x, opts[k])
                cpu[k] += time.process_time() - c0
                wall[k] += time.perf_counter() - w0
    return Cost(rounds * sum(len(x) for x in audio) / rec.sample_rate, cpu, wall)


def transcribe_together(rec: Recogniser, audio: list[np.ndarray], opts: DecodingOptions) -> None:
    """Stream several signals at once as the server does: each decode_streams call runs one
    batched encoder chunk and one batched search over every ready stream."""
    step = int(rec.chunk_seconds * rec.sample_rate)
    streams = [rec.new_stream(opts) for _ in audio]
    for i in range(0, max(len(x) for x in audio) + step, step):
        for s, x in zip(streams, audio):
            if i < len(x):
                s.accept_waveform(x[i:i + step])
            elif not s.finished:
                s.input_finished()
        while True:
            ready = [s for s in streams if rec.is_ready(s)]
            if not ready:
                break
            rec.decode_streams(ready)
            for s in ready:
                if not s.flushed and rec.is_endpoint(s):
                    s.reset_segment()


def measure_batched(rec: Recogniser, audio: list[np.ndarray], opts: dict[str, DecodingOptions], n: int) -> Cost:
    """CPU time of `n` concurrent streams per group, greedy and beam interleaved group by group."""
    cpu = {k: 0.0 for k in opts}
    wall = {k: 0.0 for k in opts}
    for g, i in enumerate(range(0, len(audio), n)):
        group = audio[i:i + n]
        for k in (list(opts) if g % 2 == 0 else list(opts)[::-1]):
            c0, w0 = time.process_time(), time.perf_counter()
            transcribe_together(rec, group, opts[k])
            cpu[k] += time.process_time() - c0
            wall[k] += time.perf_counter() - w0
    return Cost(sum(len(x) for x in audio) / rec.sample_rate, cpu, wall)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "store" / "default"), help="store folder (newest version) or model.pt")
    p.add_argument("--lm", default=DEFAULT_LM, help="LSTM LM when the store version has no lm.pt")
    p.add_argument("--utts", type=int, default=24)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--lm-weight", type=float, default=0.3)
    p.add_argument("--ilm-weight", type=float, default=0.3)
    p.add_argument("--streams", type=int, default=8, help="also time this many concurrent streams (0: skip)")
    p.add_argument("--profile", action="store_true", help="profile the beam path only; write nothing")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rec, lm_path = load_recogniser(args.model, args.lm)
    beam = DecodingOptions(search="beam", beam_size=4, lm_weight=args.lm_weight if lm_path else 0.0,
                           ilm_weight=args.ilm_weight)
    opts = {"greedy": DecodingOptions(search="greedy"), "beam4_ilme": beam}
    audio = load_audio(args.utts)
    rec.transcribe(audio[0], beam), rec.transcribe(audio[0], opts["greedy"])  # warm-up
    if args.profile:
        pr = cProfile.Profile()
        pr.enable()
        measure(rec, audio, {"beam4_ilme": beam})
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(25)
        print(s.getvalue())
        return {}
    cost = measure(rec, audio, opts, args.rounds)
    model_file = _model_file(args.model)
    batched = {}
    if args.streams > 1:
        b = measure_batched(rec, audio, opts, args.streams).summary()
        batched = {f"streams_{args.streams}": {k: b[k] for k in ("greedy_rtf", "beam4_ilme_rtf", "ratio")}}
    out = cost.summary() | batched | {
        "model": str(model_file.relative_to(REPO)) if model_file.is_relative_to(REPO) else str(model_file),
        "lm": lm_path, "options": beam.to_dict(), "utterances": len(audio), "rounds": args.rounds, "threads": 1,
        "how": "streamed Recogniser.transcribe (0.32 s chunks, endpoints), same audio, same process, "
               "interleaved; RTF from process CPU time (wall-time figures beside it)"}
    print(json.dumps(out, indent=1))
    if not args.no_write:
        path = RESULTS / "lm_fusion.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        data["cost"] = out
        path.write_text(json.dumps(data, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
