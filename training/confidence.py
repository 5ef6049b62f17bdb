"""`minutes train confidence`: fit the word-confidence calibrator (decoding/confidence.py) on
held-out decodes, and measure it against the raw mean posterior.

    minutes train confidence --model default/10 --out /work/data/exp/confidence/default10.json

The served decoding of `--model` transcribes utterances the model never trained on; each final
word is labelled correct when a word-level diff against the transcript matches it. A logistic
regression (scikit-learn) is fitted on one half of the speakers of each `--fit` set and scored
on the other halves and on every `--eval` set: AUC (does conf rank right words above wrong ones) and NCE
(normalised cross-entropy: information over always saying the base rate; below 0 = worse than
that). Fitting on two kinds of speech (real non-native, synthetic native) keeps it from learning
one domain's base rate; the far-field set is held out whole. The result JSON is the manifest's `extra.confidence` (with its metrics), and a
reliability plot (accuracy per confidence bin) is drawn beside it.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SO_DEV = "/work/data/corpus/speechocean762/dev.jsonl"  # real non-native speech, never trained on
NATIVE = "/work/data/corpus/native/test.jsonl"  # held-out TTS voices and sentences
SINGLE = "/work/data/corpus/single/test.jsonl"  # TTS through simulated rooms (far field), held out


@dataclass
class Decodes:
    """Every final word of a set: features, correctness, raw mean posterior, speaker."""

    x: np.ndarray  # (N, F)
    y: np.ndarray  # (N,) 1 = correct
    raw: np.ndarray  # (N,) mean token posterior
    speaker: list[str]
    utterance: list[str]


def label_words(ref: list[str], hyp: list[str]) -> list[int]:
    """1 for each hypothesis word inside an 'equal' block of the word-level diff."""
    ok = [0] * len(hyp)
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False).get_opcodes():
        if tag == "equal":
            ok[j1:j2] = [1] * (j2 - j1)
    return ok


def decode_set(rec, manifest: str, limit: int = 0) -> Decodes:
    from tqdm import tqdm

    from corpus.manifest import read_manifest, resolve_audio
    from training.data import load_audio

    xs, ys, raw, spk, utt = [], [], [], [], []
    for r in tqdm(list(read_manifest(manifest))[: limit or None], desc=Path(manifest).parent.name):
        feats: list[list[float]] = []
        audio = load_audio(str(resolve_audio(r, manifest)), 16000).numpy()
        words = rec.transcribe(audio, rec.options, chunk_samples=1600, features=feats)
        keep = [i for i, f in enumerate(feats) if f is not None]  # unaligned words keep their posterior
        labels = label_words(r.text.split(), [w.text for w in words])
        ys += [labels[i] for i in keep]
        xs += [feats[i] for i in keep]
        raw += [math.exp(feats[i][0]) for i in keep]
        spk += [r.speaker or r.id] * len(keep)
        utt += [r.id] * len(keep)
    return Decodes(np.array(xs, dtype=np.float64).reshape(-1, 6), np.array(ys), np.array(raw), spk, utt)


def nce(y: np.ndarray, p: np.ndarray) -> float:
    """Normalised cross-entropy of confidences `p` for labels `y`."""
    p = np.clip(p, 1e-6, 1 - 1e-6)
    base = y.mean()
    h_base = -(y.sum() * math.log(base) + (1 - y).sum() * math.log(1 - base))
    h = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum()
    return float((h_base - h) / h_base)


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    return {"words": int(len(y)), "correct": round(float(y.mean()), 4), "auc": round(float(roc_auc_score(y, p)), 4),
            "nce": round(nce(y, p), 4)}


def half(speaker: str) -> int:
    return int(hashlib.sha1(speaker.encode()).hexdigest()[:4], 16) % 2


def fit(d: Decodes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from decoding.confidence import ConfidenceModel

    sc = StandardScaler().fit(d.x)
    lr = LogisticRegression(C=1.0, max_iter=1000).fit(sc.transform(d.x), d.y)
    return ConfidenceModel(sc.mean_.tolist(), sc.scale_.tolist(), lr.coef_[0].tolist(), float(lr.intercept_[0]))


def reliability_plot(path: Path, sets: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Accuracy per confidence bin, raw mean posterior against calibrated, one panel per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4.5), squeeze=False)
    bins = np.linspace(0, 1, 11)
    for ax, (name, (y, raw, cal)) in zip(axes[0], sets.items()):
        for label, p in (("mean posterior", raw), ("calibrated", cal)):
            idx = np.clip(np.digitize(p, bins) - 1, 0, 9)
            xs = [p[idx == b].mean() for b in range(10) if (idx == b).sum() >= 5]
            ac = [y[idx == b].mean() for b in range(10) if (idx == b).sum() >= 5]
            ax.plot(xs, ac, "o-", label=label)
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set(title=name, xlabel="confidence", ylabel="fraction of words correct", xlim=(0, 1), ylim=(0, 1))
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict:
    import torch

    from compression.store import ModelStore, split_ref
    from decoding.recogniser import Recogniser

    torch.set_num_threads(1)
    folder, manifest = ModelStore(Path(__file__).resolve().parent.parent / "store").resolve(*split_ref(args.model))
    rec = Recogniser.load(folder, manifest)
    rec.confidence = None  # features and raw posteriors, whatever the model ships
    parts, held = [], {}
    for path in args.fit:  # half of each set's speakers fit, the other half is held out
        d = decode_set(rec, path, args.limit)
        a = np.array([half(s) == 0 for s in d.speaker])
        if a.all() or not a.any():  # too few speakers to split (two TTS voices): split utterances
            a = np.array([half(u) == 0 for u in d.utterance])
        if a.all() or not a.any() or len(set(d.y[a])) < 2:
            raise SystemExit(f"{path}: too few speakers or words to fit on one half and hold out the other")
        parts.append(Decodes(d.x[a], d.y[a], d.raw[a], [], []))
        held[f"{Path(path).parent.name} (other half)"] = Decodes(d.x[~a], d.y[~a], d.raw[~a], [], [])
    train = Decodes(np.concatenate([d.x for d in parts]), np.concatenate([d.y for d in parts]),
                    np.concatenate([d.raw for d in parts]), [], [])
    model = fit(train)
    for path in args.eval:
        held[Path(path).parent.name] = decode_set(rec, path, args.limit)
    metrics, plots = {}, {}
    for name, d in held.items():
        if len(set(d.y.tolist())) < 2:
            log.warning("%s: %d words, all of one class: no AUC or NCE to measure", name, len(d.y))
            continue
        cal = np.array([model.predict(list(x)) for x in d.x])
        metrics[name] = {"raw": scores(d.y, d.raw), "calibrated": scores(d.y, cal)}
        plots[name] = (d.y, d.raw, cal)
        log.info("%s: %s", name, metrics[name])
    model = type(model)(model.mean, model.scale, model.coef, model.intercept, metrics=metrics | {
        "fitted_on": f"{len(train.y)} words: half of {', '.join(args.fit)} (by speaker; by utterance where a set has "
                     f"too few speakers)", "model": args.model})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(model.to_dict(), indent=2) + "\n")
    reliability_plot(args.out.with_suffix(".png"), plots)
    return model.to_dict()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("confidence", help="word-confidence calibrator on held-out decodes", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default/10", help="store version whose served decoding is calibrated")
    p.add_argument("--fit", action="append", default=None,
                   help=f"manifests: half of each one's speakers (or utterances, with too few speakers) fit, "
                        f"the other half is held out (default: {SO_DEV} and {NATIVE})")
    p.add_argument("--eval", action="append", default=None, help=f"further held-out manifests (default: {SINGLE})")
    p.add_argument("--limit", type=int, default=0, help="utterances per set (0 = all)")
    p.add_argument("--out", type=Path, default=Path("/work/data/exp/confidence/confidence.json"))
    p.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    logging.getLogger().setLevel(logging.INFO)
    args.fit = args.fit or [SO_DEV, NATIVE]
    if args.eval is None:
        args.eval = [SINGLE]
    print(json.dumps(run(args)["metrics"], indent=2))
    return 0
