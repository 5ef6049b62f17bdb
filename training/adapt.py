"""`minutes adapt`: text-only domain adaptation of a served transducer (issue 18).

    minutes adapt --model default/11 --text /usr/share/common-licenses/GPL-3 --method ilma \
        --name legal --version 1

ILMA (internal LM adaptation, arXiv 2110.05354): the transducer's internal LM, the joiner fed
by the predictor alone (`Transducer.ilm_logits`), is fine-tuned on the new domain's text; only
what that path reads is trained (the predictor and the joiner's predictor projection), the
encoder and the joiner's shared output layer stay, so the acoustic side is untouched and the
run-time cost is nil. The guard against forgetting: a KL term to the unadapted internal LM on
the same text, weight `kl_weight` (the paper's "KL-regularised" ILMA).

The text is split into sentences and normalised as every training text is
(corpus/sentences.py); a held-out test set must come from other documents of the domain
(bench/adaptation.py trains on some licence texts and tests on others). The adapted model is sealed as a new store version with
the base's LM, lexicon and decoding, and the new domain's words added to the lexicon (a legal
text's "sublicense" is no English word in CMUdict).

Splicing and TTS adaptation (the issue's other two methods) are not built yet.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from training.lm import pad_batch

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent
METHODS = ("ilma",)


@dataclass
class IlmaConfig:
    steps: int = 300
    batch: int = 32
    lr: float = 3e-4
    kl_weight: float = 0.5  # share of KL(unadapted ILM || adapted ILM) in the loss
    seed: int = 0


def domain_sentences(paths: list[Path]) -> list[str]:
    """Normalised, deduplicated sentences of text files."""
    from corpus.sentences import _clean_sentences

    return list(dict.fromkeys(s for p in paths for s in _clean_sentences(p.read_text(errors="ignore"))))


def ilm_losses(model, frozen, targets: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy of the internal LM on `targets`, KL(frozen ILM || model ILM)), per token."""
    pred = model.predictor(targets)[:, :-1]
    logits = model.ilm_logits(pred)
    mask = torch.arange(targets.shape[1])[None] < lengths[:, None]
    logp = logits.log_softmax(-1)[mask]
    ce = F.nll_loss(logp, targets[mask])
    with torch.no_grad():
        ref = frozen.ilm_logits(frozen.predictor(targets)[:, :-1]).log_softmax(-1)[mask]
    finite = torch.isfinite(ref)  # the blank column is -inf in both
    p_ref = ref.exp()
    kl = (p_ref * torch.where(finite, ref - logp, torch.zeros_like(ref))).sum(-1).mean()
    return ce, kl


def ilma(model, tok, sentences: list[str], cfg: IlmaConfig) -> list[dict]:
    """Adapt `model` in place; returns the loss history."""
    frozen = copy.deepcopy(model).eval()
    model.train()
    params = list(model.predictor.parameters()) + list(model.joiner.pred_proj.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    rng = random.Random(cfg.seed)
    encoded = [tok.encode(s) for s in sentences]
    encoded = [e for e in encoded if e]
    history = []
    for step in range(1, cfg.steps + 1):
        batch = rng.sample(encoded, min(cfg.batch, len(encoded)))
        targets, lengths = pad_batch(batch)
        ce, kl = ilm_losses(model, frozen, targets, lengths)
        loss = (1 - cfg.kl_weight) * ce + cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 25 == 0 or step == 1:
            history.append({"step": step, "ilm_ce": round(ce.item(), 4), "kl": round(kl.item(), 4)})
            log.info("ilma step %d: ILM cross-entropy %.3f, KL %.4f", step, ce.item(), kl.item())
    for p in model.parameters():
        p.requires_grad_(True)
    return history


def run(args: argparse.Namespace) -> int:
    from compression.store import ModelStore, split_ref
    from decoding.lexicon import LEXICON_FILE, Lexicon
    from models.transducer import load_checkpoint, save_checkpoint
    from training.package import package

    logging.getLogger().setLevel(logging.INFO)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    folder, manifest = ModelStore(args.store).resolve(*split_ref(args.model))
    if not (folder / LEXICON_FILE).is_file():
        raise SystemExit(f"{args.model} has no lexicon ({LEXICON_FILE}); adapt a version that ships one (default/10 on)")
    lm = folder / "lm.pt"
    model, blob = load_checkpoint(folder / "model.pt")
    from decoding.tokenizer import Tokenizer

    tok = Tokenizer(blob["tokenizer"])
    sentences = domain_sentences(args.text)
    if len(sentences) < 20:
        raise SystemExit(f"{args.text}: {len(sentences)} usable sentences; text-only adaptation wants at least 20")
    cfg = IlmaConfig(steps=args.steps, kl_weight=args.kl_weight, lr=args.lr)
    history = ilma(model, tok, sentences, cfg)
    model.eval()
    work = Path(args.work) / f"{args.name}-{args.version}"
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "model.pt"
    save_checkpoint(ckpt, model, {k: blob[k] for k in ("tokenizer", "step", "epoch", "elapsed", "train_config") if k in blob})
    words = sorted({w for s in sentences for w in s.split()})
    lexicon = work / "lexicon.txt.gz"
    Lexicon.read(folder / LEXICON_FILE).with_words(words).write(lexicon)
    extra = manifest.extra
    shift, conf = extra.get("word_time_shift"), extra.get("confidence")
    record = {"method": "ilma", "text": [str(t) for t in args.text], "sentences": len(sentences), "config": asdict(cfg),
              "history": history}
    (work / "adaptation.json").write_text(json.dumps(record, indent=2) + "\n")
    out = package(ckpt, args.name, args.version, {"adaptation": {k: v for k, v in record.items() if k != "history"}},
                  store_root=args.store, half=True, decoding=extra.get("decoding"), lm=lm if lm.is_file() else None,
                  base=f"{manifest.name}/{manifest.version}", lexicon=lexicon,
                  batch_chunk_seconds=extra.get("batch_chunk_seconds"), word_time_shift=shift, confidence=conf,
                  description=args.description or f"{manifest.name}/{manifest.version} adapted by ILMA to the text of "
                                                  f"{', '.join(map(str, args.text))} ({len(sentences)} sentences, text only)")
    print(out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("adapt", help="text-only domain adaptation (ILMA) into a new store version",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="store version to adapt")
    p.add_argument("--text", type=Path, nargs="+", required=True, help="the new domain's text files (any prose)")
    p.add_argument("--method", choices=METHODS, default="ilma")
    p.add_argument("--name", required=True, help="store name of the adapted model")
    p.add_argument("--version", default="1")
    p.add_argument("--steps", type=int, default=IlmaConfig.steps)
    p.add_argument("--kl-weight", type=float, default=IlmaConfig.kl_weight)
    p.add_argument("--lr", type=float, default=IlmaConfig.lr)
    p.add_argument("--store", type=Path, default=REPO / "store")
    p.add_argument("--work", type=Path, default=Path("/work/data/exp/adapt"), help="where the checkpoint is written")
    p.add_argument("--description", default="")
    p.set_defaults(func=run)
