"""`minutes train punctuation`: train, score and package the punctuation + casing tagger.

Text only, about 10 minutes on one core. Training windows are random spans of the written
sources' documents (training/punctuation_data.py), most of them ending at a sentence end, as
finals do. Scoring cuts each held-out document into "finals" of one or two sentences and tags
each with the previous one's last words as context — exactly what the server does — and
reports F1 per mark and case accuracy, beside a rule baseline (capitalise the first word and
"I", full stop at the end) so the numbers mean something.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from models.punctuation import CASES, MARKS, Punctuator, PunctuatorConfig, PunctuationTagger, WordEncoder
from training.punctuation_data import Document, load_documents, mixed_lexicon

log = logging.getLogger(__name__)

__all__ = ["PunctTrainConfig", "train", "score", "Scores"]

REPO = Path(__file__).resolve().parents[1]


@dataclass
class PunctTrainConfig:
    steps: int = 3000
    batch: int = 64
    min_words: int = 4
    max_words: int = 40
    end_at_sentence: float = 0.7  # share of windows that end where a sentence ends
    lr: float = 2e-3
    threads: int = 1
    seed: int = 0
    source_weights: dict[str, float] = field(default_factory=lambda: {
        "fortunes": 0.35, "bible": 0.15, "devil": 0.1, "meeting": 0.2, "essential": 0.2})
    model: PunctuatorConfig = field(default_factory=PunctuatorConfig)


@dataclass
class Scores:
    """Held-out scores: precision/recall/F1 per mark, case accuracy, and counts."""

    marks: dict[str, dict[str, float]]
    case_accuracy: float
    capitalised_accuracy: float  # of words that are written with a capital: got one
    words: int
    per_source: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _window(doc: Document, rng: random.Random, cfg: PunctTrainConfig) -> list:
    n = len(doc.words)
    starts = [0] + [e + 1 for e in doc.sentence_ends[:-1]]
    start = rng.choice(starts) if rng.random() < 0.5 else rng.randrange(n)
    length = rng.randint(cfg.min_words, cfg.max_words)
    end = min(n, start + length)
    if rng.random() < cfg.end_at_sentence:
        later = [e + 1 for e in doc.sentence_ends if e + 1 > start + 2]
        if later:
            end = min(later, key=lambda e: abs(e - (start + length)))
    return doc.words[start:max(end, start + 1)]


def _vocab(docs: list[Document], size: int) -> list[str]:
    counts = Counter(w.word for d in docs for w in d.words)
    return [w for w, c in counts.most_common(size) if c >= 3]


def train(cfg: PunctTrainConfig, train_docs: list[Document], progress: bool = True) -> Punctuator:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    vocab = _vocab(train_docs, cfg.model.vocab_size)
    cfg.model.vocab_size = len(vocab)
    model = PunctuationTagger(cfg.model)
    encoder = WordEncoder(vocab, cfg.model)
    by_source: dict[str, list[Document]] = {}
    for d in train_docs:
        by_source.setdefault(d.source, []).append(d)
    names = [s for s in cfg.source_weights if by_source.get(s)]
    weights = [cfg.source_weights[s] for s in names]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    # Marks are rare beside "no mark": weigh them up a little so recall is not starved.
    mark_loss = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 1.5, 3.0]), ignore_index=-1)
    case_loss = nn.CrossEntropyLoss(ignore_index=-1)
    model.train()
    bar = tqdm(range(cfg.steps), desc="punctuation", disable=not progress, mininterval=5)
    for step in bar:
        windows = [_window(rng.choice(by_source[rng.choices(names, weights)[0]]), rng, cfg)
                   for _ in range(cfg.batch)]
        batch = encoder.encode([[w.word for w in win] for win in windows])
        T = batch["ids"].shape[1]
        mark_t = torch.full((len(windows), T), -1, dtype=torch.long)
        case_t = torch.full((len(windows), T), -1, dtype=torch.long)
        for b, win in enumerate(windows):
            mark_t[b, :len(win)] = torch.tensor([MARKS.index(w.mark) for w in win])
            case_t[b, :len(win)] = torch.tensor([CASES.index(w.case) for w in win])
        marks, cases = model(**batch)
        loss = mark_loss(marks.flatten(0, 1), mark_t.flatten()) + case_loss(cases.flatten(0, 1), case_t.flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return Punctuator(model, encoder, mixed_lexicon(train_docs))


def _finals(doc: Document) -> list[tuple[int, int]]:
    """A held-out document cut into finals of one or two sentences (alternating)."""
    spans, start = [], 0
    ends = doc.sentence_ends
    i = 0
    while i < len(ends):
        j = min(len(ends) - 1, i + (i % 2))
        spans.append((start, ends[j] + 1))
        start = ends[j] + 1
        i = j + 1
    return spans


def _baseline(words: list[str]) -> list[tuple[str, str]]:
    return [("title" if i == 0 or w == "I" or w.startswith("I'") else "lower", "." if i == len(words) - 1 else "")
            for i, w in enumerate(words)]


def score(tagger, docs: list[Document]) -> Scores:
    """Score `tagger` (a `Punctuator`, or a function words -> [(case, mark)]) on `docs`."""
    tag = tagger.tag if isinstance(tagger, Punctuator) else (lambda words, context: tagger(words))
    tp, fp, fn = Counter(), Counter(), Counter()
    correct = total = cap_hit = cap_total = 0
    src_counts: dict[str, Counter] = {}
    for d in docs:
        sc = src_counts.setdefault(d.source, Counter())
        prev: list[str] = []
        for a, b in _finals(d):
            truth = d.words[a:b]
            words = [w.word for w in truth]
            for w, (case, mark) in zip(truth, tag(words, prev)):
                for m in MARKS[1:]:
                    tp[m] += mark == m and w.mark == m
                    fp[m] += mark == m and w.mark != m
                    fn[m] += mark != m and w.mark == m
                ok = case == w.case
                correct += ok
                total += 1
                sc["words"] += 1
                sc["case_ok"] += ok
                sc["mark_ok"] += mark == w.mark
                if w.case != "lower":
                    cap_total += 1
                    cap_hit += case != "lower"
            prev = words
    marks = {}
    for m in MARKS[1:]:
        p = tp[m] / max(1, tp[m] + fp[m])
        r = tp[m] / max(1, tp[m] + fn[m])
        marks[m] = {"precision": round(p, 4), "recall": round(r, 4),
                    "f1": round(2 * p * r / max(1e-9, p + r), 4), "support": tp[m] + fn[m]}
    per_source = {s: {"words": c["words"], "case_accuracy": round(c["case_ok"] / max(1, c["words"]), 4),
                      "mark_accuracy": round(c["mark_ok"] / max(1, c["words"]), 4)} for s, c in src_counts.items()}
    return Scores(marks, round(correct / max(1, total), 4), round(cap_hit / max(1, cap_total), 4), total, per_source)


def package(p: Punctuator, cfg: PunctTrainConfig, scores: dict, store_root: Path, version: str | None) -> str:
    from compression.store import ModelStore

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # float16 halves the stored bytes; the tagger's argmax does not notice.
        torch.save({k: v.half() for k, v in p.model.state_dict().items()}, tmp / "model.pt")
        (tmp / "config.json").write_text(json.dumps(cfg.model.to_dict(), indent=2))
        (tmp / "vocab.json").write_text(json.dumps({"words": p.encoder.vocab, "mixed": p.mixed}))
        (tmp / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))
        m = ModelStore(store_root).publish(
            tmp, "punctuator", architecture="bilstm-punctuation-tagger", version=version,
            parameters=sum(t.numel() for t in p.model.parameters()), metrics=scores,
            description="Punctuation (, . ?) and true casing of normalised words; BiLSTM over word "
                        "and character n-gram embeddings, trained on minutes' written text sources.")
    return f"{m.name}/{m.version}"


def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("punctuation", help="punctuation + casing tagger (text only)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--steps", type=int, default=PunctTrainConfig.steps)
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--store", type=Path, default=REPO / "store")
    a.add_argument("--version", default=None, help="store version (default: the next integer)")
    a.add_argument("--results", type=Path, default=REPO / "bench" / "results" / "punctuation.json")
    a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.getLogger().setLevel(logging.INFO)
    cfg = PunctTrainConfig(steps=args.steps, threads=args.threads)
    t0 = time.time()
    train_docs, test_docs = load_documents()
    log.info("documents: %d train, %d held out (%.0f s)", len(train_docs), len(test_docs), time.time() - t0)
    p = train(cfg, train_docs)
    model_scores = score(p, test_docs)
    base_scores = score(_baseline, test_docs)
    results = {"model": model_scores.to_dict(), "baseline": base_scores.to_dict(),
               "train_words": sum(len(d.words) for d in train_docs), "train_minutes": round((time.time() - t0) / 60, 1)}
    ref = package(p, cfg, {"case_accuracy": model_scores.case_accuracy,
                           **{f"f1{m}": v["f1"] for m, v in model_scores.marks.items()}}, args.store, args.version)
    results["model_ref"] = ref
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2))
    print(json.dumps({"model": ref, "marks": model_scores.marks, "case_accuracy": model_scores.case_accuracy,
                      "baseline_marks": base_scores.marks, "baseline_case": base_scores.case_accuracy}, indent=2))
    return 0
