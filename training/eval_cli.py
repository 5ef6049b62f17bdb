"""`minutes eval`: WER and real-time factor of a stored model on a manifest, streamed.

Why stream: the number that matters is what the server gives, so every utterance goes through
`Recogniser` in small pieces (default 0.1 s, like a live client), with endpoints closing
segments exactly as in the server, on one thread.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch comes in only when a model is loaded
    from compression.store import Manifest
    from decoding.options import DecodingOptions
    from decoding.recogniser import Recogniser

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class EvalResult:
    manifest: str
    model: str
    utterances: int
    words: int  # reference words
    wer: float  # percent
    substitutions: int
    insertions: int
    deletions: int
    audio_seconds: float
    decode_seconds: float
    rtf: float  # wall-clock decode seconds per audio second
    rtf_cpu: float  # CPU seconds of this process per audio second (fair on a shared machine)
    chunk_seconds: float  # the model's algorithmic chunk


def _resolve(model: str, store: Path) -> tuple[Path, Manifest | None]:
    """(folder or checkpoint, its store manifest when it came from a store)."""
    from compression.store import ModelStore, split_ref

    p = Path(model)
    if p.is_file() or (p / "model.pt").is_file():  # a checkpoint or a version folder, as given
        return p, None
    if p.is_dir():  # a store's name folder (store/default): that store's newest version
        return ModelStore(p.parent).resolve(p.name, verify=True)
    return ModelStore(store).resolve(*split_ref(model), verify=True)


def resolve_model(model: str, store: Path = REPO / "store") -> Path:
    """The folder (or checkpoint file) of `model`: a checkpoint or version folder path as it
    is; a store name folder (`store/default`) or a store reference (`default`, `default/7`)
    through the store: its newest version by number unless one is named, files checked
    against the manifest's sha256 (a `ChecksumError` rather than numbers from changed weights)."""
    return _resolve(model, store)[0]


def load_recogniser(model: str, store: Path = REPO / "store") -> "Recogniser":
    """`Recogniser` of `model` (as `resolve_model` reads it), with its store manifest."""
    from decoding.recogniser import Recogniser

    return Recogniser.load(*_resolve(model, store))


def attach_lm(rec: "Recogniser", lm: str | Path) -> None:
    """Give `rec` the external LM at `lm` (an LSTM `.pt` or n-gram `.pkl` over its pieces), as
    if the file lay beside its model.pt: what a store version with an `lm.pt` serves."""
    from decoding.recogniser_beam import BeamDecoding

    rec.beam = BeamDecoding(rec.model, rec.tok, lm, rec.beam.lexicon)


def attach_lexicon(rec: "Recogniser", lexicon: str | Path) -> None:
    """Give `rec` the word list at `lexicon` (`decoding/lexicon.py`; used by streams whose
    `oov_penalty` > 0), as if it lay beside its model.pt as lexicon.txt.gz."""
    from decoding.lexicon import Lexicon

    rec.beam.set_lexicon(Lexicon.read(lexicon))


def decode_manifest(rec: "Recogniser", manifest: str, limit: int = 0, options: "DecodingOptions | None" = None,
                    piece_seconds: float = 0.1, model_name: str = "") -> tuple[EvalResult, list[dict]]:
    """Stream every utterance of `manifest` (the first `limit`) through the loaded `rec` with
    `options` (None: the model's defaults); the scores and one row per utterance."""
    from corpus.manifest import read_manifest, resolve_audio
    from training.data import load_audio

    records = list(read_manifest(manifest))
    if limit:
        records = records[:limit]
    rows = []
    piece = int(piece_seconds * rec.sample_rate)
    for r in records:
        wave = load_audio(str(resolve_audio(r, manifest)), rec.sample_rate).numpy()
        t0, c0 = time.perf_counter(), time.process_time()
        words = rec.transcribe(wave, options=options, chunk_samples=piece)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        rows.append({"id": r.id, "ref": r.text, "hyp": " ".join(w.text for w in words),
                     "seconds": len(wave) / rec.sample_rate, "decode_seconds": round(dt, 4),
                     "cpu_seconds": round(dc, 4), "words": [w.to_dict() for w in words]})
    chunk = rec.chunk_seconds_for(options.chunk_seconds) if options is not None else rec.chunk_seconds
    return score_rows(rows, str(manifest), model_name, chunk), rows


def score_rows(rows: list[dict], manifest: str = "", model_name: str = "", chunk_seconds: float = 0.0) -> EvalResult:
    """WER (jiwer) and RTFs of decoded rows (`decode_manifest`'s), e.g. of a slice of them."""
    import jiwer

    refs, hyps = [r["ref"] for r in rows], [r["hyp"] for r in rows]
    m = jiwer.process_words(refs, hyps)
    audio_s = sum(r["seconds"] for r in rows)
    decode_s = sum(r["decode_seconds"] for r in rows)
    cpu_s = sum(r["cpu_seconds"] for r in rows)
    return EvalResult(
        manifest=manifest, model=model_name, utterances=len(rows), words=sum(len(t.split()) for t in refs),
        wer=round(100 * m.wer, 2), substitutions=m.substitutions, insertions=m.insertions,
        deletions=m.deletions, audio_seconds=round(audio_s, 2), decode_seconds=round(decode_s, 2),
        rtf=round(decode_s / max(audio_s, 1e-9), 4), rtf_cpu=round(cpu_s / max(audio_s, 1e-9), 4),
        chunk_seconds=chunk_seconds,
    )


def evaluate_manifest(model: str, manifest: str, limit: int = 0, out: str | None = None,
                      piece_seconds: float = 0.1, threads: int = 1, decoding: dict | None = None,
                      lm: str | None = None, lexicon: str | None = None) -> EvalResult:
    """`decode_manifest` of a model by reference; `decoding` overrides the model's default
    options (e.g. `{"search": "beam", "lm_weight": 0.3}`), `lm` attaches an external LM."""
    import torch

    from decoding.options import DecodingOptions

    torch.set_num_threads(threads)
    rec = load_recogniser(model)
    if lm:
        attach_lm(rec, lm)
    if lexicon:
        attach_lexicon(rec, lexicon)
    options = DecodingOptions.from_dict(decoding, base=rec.options) if decoding else None
    res, rows = decode_manifest(rec, manifest, limit, options, piece_seconds, str(model))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
    return res


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="WER/RTF of a model on a manifest (streamed)", description=__doc__)
    p.add_argument("--model", default="default",
                   help="store reference (name, its newest version, or name/version; checksums checked) or a model path")
    p.add_argument("--manifest", required=True, action="append", help="JSONL manifest (repeatable)")
    p.add_argument("--limit", type=int, default=0, help="first N utterances only (0 = all)")
    p.add_argument("--out", default=None, help="per-utterance JSONL (one file per manifest: suffixed)")
    p.add_argument("--piece-seconds", type=float, default=0.1, help="audio per accept_waveform call")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--decoding", type=json.loads, default=None,
                   help='JSON over the model\'s default decoding options, e.g. \'{"search": "beam", "lm_weight": 0.3}\'')
    p.add_argument("--lm", default=None, help="external LM (.pt LSTM or .pkl n-gram) over the model's pieces")
    p.add_argument("--lexicon", default=None,
                   help="word list (.txt or .txt.gz, one word per line) for the beam's oov_penalty")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for i, m in enumerate(args.manifest):
        out = None
        if args.out:
            out = args.out if len(args.manifest) == 1 else f"{Path(args.out).with_suffix('')}.{i}.jsonl"
        res = evaluate_manifest(args.model, m, args.limit, out, args.piece_seconds, args.threads, args.decoding, args.lm,
                                 args.lexicon)
        print(f"{m}: WER {res.wer:.2f}% (S {res.substitutions} I {res.insertions} D {res.deletions} "
              f"of {res.words} words, {res.utterances} utts)  RTF {res.rtf:.4f} (CPU {res.rtf_cpu:.4f})  chunk {res.chunk_seconds:.2f}s")
        print(json.dumps(asdict(res)))
    return 0
