"""Hotword recall on real audio through the server's path, with and without biasing.

    python -m bench.lm_hotwords --utts 100     # writes "hotwords" into bench/results/lm_fusion.json

The shipped model (store/default, newest version) transcribes a test set with
`Recogniser.transcribe` (streamed chunks, endpoints) three ways: greedy, beam 4, and beam 4 with
the set's rare words sent as the session's hotwords (`DecodingOptions.hotwords`, the `start`
message's field). Rare words = words of the references seen at most once in the model's
training transcripts (longer than 3 letters). Recall = occurrences of list words in the
references that the hypothesis contains (bag of words per utterance). A fourth run biases with
*distractors* (rare words of another text domain that the references never contain), which
measures what biasing costs when the list is wrong. Each run at every bonus of a small grid
(the operating point trades recall against false alarms).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import soundfile as sf
import torch

from bench.lm_fusion import hotword_recall, wer
from corpus.manifest import read_manifest, resolve_audio
from decoding.options import DecodingOptions
from decoding.recogniser import Recogniser
from training.eval_cli import resolve_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEFAULT_SET = "/work/data/corpus/speechocean762/dev.jsonl"  # real speech, the model's own domain
SCORES = (1.0, 2.0, 4.0)  # log-score bonus per matched token


def training_texts(model_path: Path) -> list[str]:
    cfg = json.loads((model_path.parent / "config.json").read_text()) if (model_path.parent / "config.json").exists() else {}
    out = []
    for m in cfg.get("train", {}).get("train_manifests", []):
        if Path(m).exists():
            out += [r.text for r in read_manifest(m)]
    return out


def rare(refs: list[str], seen: Counter, limit: int = 200) -> list[str]:
    return sorted({w for r in refs for w in r.split() if seen[w] <= 1 and len(w) > 3})[:limit]


def distractors(refs: list[str], seen: Counter, n: int) -> list[str]:
    """Rare words of the bible pool (another domain) that no reference contains."""
    from corpus.sentences import load_pool

    in_refs = {w for r in refs for w in r.split()}
    words = sorted({w for t in load_pool().test["bible"] for w in t.split()
                    if w not in in_refs and seen[w] <= 1 and len(w) > 3})
    return words[:: max(1, len(words) // max(1, n))][:n]


def run(rec: Recogniser, audio: list, refs: list[str], opts: DecodingOptions) -> list[str]:
    return [" ".join(w.text for w in rec.transcribe(x, opts)) for x in audio]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "store" / "default"))
    p.add_argument("--manifest", default=DEFAULT_SET)
    p.add_argument("--utts", type=int, default=200)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    folder = resolve_model(args.model)  # through the store (numeric versions, checksums) unless a path
    model_path = folder / "model.pt" if folder.is_dir() else folder
    rec = Recogniser.load(model_path.parent)
    recs = list(read_manifest(args.manifest))[: args.utts]
    audio = [sf.read(resolve_audio(r, args.manifest), dtype="float32", always_2d=True)[0][:, 0].copy() for r in recs]
    refs = [r.text for r in recs]
    seen = Counter(w for t in training_texts(model_path) for w in t.split())
    beam = DecodingOptions(search="beam", beam_size=4)
    words = rare(refs, seen)
    wrong = distractors(refs, seen, len(words))
    runs = {}
    plan = [("greedy", DecodingOptions()), ("beam", beam)]
    for sc in SCORES:
        plan += [(f"beam + hotwords ×{sc:g}", replace(beam, hotwords=tuple(words), hotword_boost=sc)),
                 (f"beam + distractor hotwords ×{sc:g}", replace(beam, hotwords=tuple(wrong), hotword_boost=sc))]
    for label, o in plan:
        hyps = run(rec, audio, refs, o)
        runs[label] = hotword_recall(refs, hyps, set(words)) | {"wer": wer(refs, hyps)}
        print(" ", label, runs[label], flush=True)
    out = {"model": str(model_path.relative_to(REPO)) if model_path.is_relative_to(REPO) else str(model_path),
           "set": Path(args.manifest).parent.name + "/" + Path(args.manifest).stem + " (real audio, streamed)",
           "utterances": len(refs), "n_words": len(words), "n_distractors": len(wrong),
           "score": "×".join(f"{x:g}" for x in SCORES), "runs": runs}
    print(json.dumps(out, indent=1))
    if not args.no_write:
        path = RESULTS / "lm_fusion.json"
        data = json.loads(path.read_text())
        data.setdefault("hotwords", {})["real_audio"] = out
        path.write_text(json.dumps(data, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
