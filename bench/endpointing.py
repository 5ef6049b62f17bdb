"""Endpointing, before and after the quick rule (issue 16, faster finals), in one run.

Held-out utterances are joined into streams with pauses drawn from 0.25–1.5 s (the gaps of
conversation: short ones inside a speaker's turn, long ones between turns), and each stream is
decoded by the recogniser exactly as the server does, twice: with the trailing-blank rule
alone (`endpoint_quick_blank = 0`, what minutes did) and with the quick rule (a short blank run
over audio `decoding/vad.py` calls silent). Reported per rule:

- endpoint delay: from the end of a segment's last word to the end of the chunk that closed
  it — the part of a final's latency the endpointer adds (the server adds its compute);
- WER on normalised text, so words cut off or lost at the extra segment boundaries show;
- segments per stream.

    python -m bench.endpointing --manifest /work/data/corpus/speechocean762/dev.jsonl \
        --manifest /work/data/corpus/single/test.jsonl --streams 40

Writes bench/results/endpointing.json.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def pause(clip: np.ndarray, samples: int, rng: random.Random) -> np.ndarray:
    """A pause that sounds like the clip's room: white noise at the level of its quietest
    tenth of 40 ms frames. Exact zeros would be easier for the silence test than any room."""
    frames = clip[: len(clip) // 640 * 640].reshape(-1, 640)
    rms = np.sqrt(np.percentile(np.mean(frames * frames, axis=1), 10)) if len(frames) else 1e-4
    noise = np.random.default_rng(rng.randrange(2**32)).standard_normal(samples)
    return (noise * max(rms, 1e-5)).astype(np.float32)


def streams(manifest: Path, count: int, per_stream: int, seed: int) -> list[tuple[np.ndarray, str]]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    rng.shuffle(rows)
    out = []
    for k in range(count):
        chosen = rows[k * per_stream:(k + 1) * per_stream]
        if len(chosen) < per_stream:
            break
        parts, texts = [], []
        for r in chosen:
            x, sr = sf.read(manifest.parent / r["audio"], dtype="float32")
            assert sr == 16000, sr
            x = x if x.ndim == 1 else x.mean(1)
            parts += [x, pause(x, int(rng.uniform(0.25, 1.5) * sr), rng)]
            texts.append(r["text"])
        out.append((np.concatenate(parts), " ".join(texts)))
    return out


def decode(rec, audio: np.ndarray, options) -> tuple[list, list[float]]:
    """All final words and, per endpoint, the delay from the segment's last word to the close."""
    s = rec.new_stream(options)
    step = rec.sample_rate // 10  # 100 ms messages, as live clients send them
    words, delays = [], []

    def drain() -> None:
        while rec.is_ready(s):
            rec.decode_streams([s])
            if not s.flushed and rec.is_endpoint(s):
                seg = s.reset_segment()
                if seg:
                    delays.append(s.frames_done * rec.frame_seconds - seg[-1].end)
                words.extend(seg)

    for i in range(0, len(audio), step):
        s.accept_waveform(audio[i:i + step])
        drain()
    s.input_finished()
    drain()
    return words + s.reset_segment(), delays


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, action="append", required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--streams", type=int, default=40, help="streams per manifest")
    ap.add_argument("--per-stream", type=int, default=5, help="utterances per stream")
    ap.add_argument("--quick", type=float, nargs="+", default=[0.0, 0.32], help="endpoint_quick_blank values")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "endpointing.json")
    args = ap.parse_args(argv)

    import jiwer
    import torch
    from tqdm import tqdm

    from compression.store import ModelStore
    from decoding.recogniser import Recogniser
    from minutes.text import normalise_text

    torch.set_num_threads(1)
    folder, manifest = ModelStore(REPO / "store").resolve(args.model)
    rec = Recogniser.load(folder)
    result = {"model": f"{manifest.name}/{manifest.version}", "per_stream": args.per_stream, "sets": {}}
    for m in args.manifest:
        data = streams(m, args.streams, args.per_stream, args.seed)
        rows = {}
        for q in args.quick:
            opts = replace(rec.options, endpoint_quick_blank=q)
            refs, hyps, delays, segments = [], [], [], []
            for audio, text in tqdm(data, desc=f"{m.parent.name} quick={q}", leave=False):
                words, d = decode(rec, audio, opts)
                refs.append(normalise_text(text))
                hyps.append(normalise_text(" ".join(w.text for w in words)) or "<empty>")
                delays += d
                segments.append(len(d) + 1)
            wer = jiwer.process_words(refs, hyps)
            rows[str(q)] = {"wer": round(wer.wer, 4), "substitutions": wer.substitutions, "deletions": wer.deletions,
                            "insertions": wer.insertions, "segments_per_stream": round(float(np.mean(segments)), 2),
                            "endpoint_delay_p50": round(float(np.percentile(delays, 50)), 3) if delays else None,
                            "endpoint_delay_p95": round(float(np.percentile(delays, 95)), 3) if delays else None,
                            "endpoints": len(delays)}
            print(m.parent.name, q, rows[str(q)], flush=True)
        result["sets"][f"{m.parent.name}/{m.stem}"] = {"streams": len(data), "rules": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
