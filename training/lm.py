"""Train the external token LM (LSTM or n-gram) on text only, over the ASR's sentencepiece pieces.

    python -m training.lm --recipe training/recipes/lm_bible.toml

Why text only, and why the ASR's pieces: shallow fusion and ILME add log P_LM to the
transducer's scores token by token, so the LM must predict exactly the transducer's output
units; and the point of an external LM is to bring in text of a domain the acoustic training
never saw. The recipe names the sources (sentence-pool domains from `corpus.sentences`, a
manifest's transcripts, or a text file), the tokenizer (an ASR checkpoint or `spm.model`) and
the model; the run is wall-clock bounded and keeps the checkpoint with the best dev perplexity.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from decoding.ngram import NgramLM
from decoding.tokenizer import Tokenizer
from minutes.text import normalise_text
from models.lm import LMConfig, TokenLM, load_lm, save_lm
from training.cli import recipe_main, run_recipe

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


@dataclass
class LMRecipe:
    """A recipe's `[lm]` table."""

    out: str = "/work/data/exp/lm/lm.pt"  # checkpoint (n-gram: pickle) written here
    tokenizer: str = "/work/data/exp/asr/last.pt"  # ASR checkpoint (its tokenizer) or spm .model
    sources: list[str] = field(default_factory=lambda: ["bible"])  # pool domain | manifest:PATH | text:PATH
    kind: str = "lstm"  # lstm | ngram
    order: int = 4  # n-gram order
    embed_dim: int = 128
    hidden_dim: int = 256
    num_layers: int = 1
    dropout: float = 0.1
    batch_size: int = 64
    lr: float = 2e-3
    dev_sentences: int = 500
    max_sentences: int = 0  # 0 = all
    max_minutes: float = 8.0
    max_steps: int = 0  # 0 = unbounded
    eval_every: int = 200
    # compression (issue 17): start from a shrunk LM (`minutes prune lm`) and distil the full one
    init_from: str = ""  # an LM checkpoint whose weights (and sizes) start training
    teacher: str = ""  # an LM checkpoint whose next-token distributions are distilled
    distill_weight: float = 0.5  # share of the KL-to-teacher term (with a teacher)
    progress: bool = True  # tqdm bar on stderr
    threads: int = 1
    seed: int = 0

    @classmethod
    def load(cls, path: str | Path) -> "LMRecipe":
        data = tomllib.loads(Path(path).read_text())
        return cls(**data.get("lm", data))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """From an ASR checkpoint (its stored tokenizer bytes) or a sentencepiece `.model` file."""
    path = Path(path)
    if path.suffix == ".model":
        return Tokenizer.load(path)
    blob = torch.load(path, map_location="cpu", weights_only=False)
    return Tokenizer(blob["tokenizer"])


def read_sentences(sources: list[str]) -> list[str]:
    """Normalised training sentences from each source (test-only pool sentences never included)."""
    out: list[str] = []
    for src in sources:
        if src.startswith("manifest:"):
            from corpus.manifest import read_manifest

            out += [r.text for r in read_manifest(src.split(":", 1)[1]) if r.text]
        elif src.startswith("text:"):
            lines = Path(src.split(":", 1)[1]).read_text(encoding="utf-8").splitlines()
            out += [t for t in (normalise_text(x) for x in lines) if t]
        else:
            from corpus.sentences import load_pool

            pool = load_pool()
            if src not in pool.train:
                raise ValueError(f"unknown text source {src!r}; pool has {sorted(pool.train)}")
            out += pool.train[src]
    return out


def pieces(tok: Tokenizer, sentences: list[str]) -> list[list[int]]:
    """Sentencepiece ids (not the transducer's shifted ids): the LM's own vocabulary."""
    return [[t - 1 for t in tok.encode(s)] for s in sentences]


def pad_batch(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, U) zero-padded ids and (B,) lengths of token sequences."""
    lens = torch.tensor([len(s) for s in seqs])
    x = torch.zeros(len(seqs), max(1, int(lens.max())), dtype=torch.long)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return x, lens


@torch.no_grad()
def perplexity(model: TokenLM, seqs: list[list[int]], batch: int = 128) -> float:
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(seqs), batch):
        x, lens = pad_batch(seqs[i : i + batch])
        total -= float(model.sentence_logprob(x, lens).sum())
        n += int(lens.sum()) + len(lens)
    model.train()
    return math.exp(total / max(1, n))


def _last_path(recipe: LMRecipe) -> Path:
    """The resumable state (weights, optimiser, step, RNG, best) beside the best checkpoint."""
    return Path(recipe.out).with_suffix(".last.pt")


def train_lstm(recipe: LMRecipe, train: list[list[int]], dev: list[list[int]], vocab: int, meta: dict,
               resume: bool = False) -> dict:
    rng = random.Random(recipe.seed)
    torch.manual_seed(recipe.seed)
    if recipe.init_from:  # its own sizes win over the recipe's
        model = load_lm(recipe.init_from).train()
        if model.config.vocab_size != vocab:
            raise ValueError(f"{recipe.init_from} has {model.config.vocab_size} pieces, the tokenizer {vocab}")
    else:
        model = TokenLM(LMConfig(vocab, recipe.embed_dim, recipe.hidden_dim, recipe.num_layers, recipe.dropout))
    teacher = load_lm(recipe.teacher) if recipe.teacher else None
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=1e-4)
    best, step, start, history = float("inf"), 0, time.monotonic(), []
    last = _last_path(recipe)
    if resume and last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"]), opt.load_state_dict(ck["optimizer"])
        best, step, history = ck["best"], ck["step"], ck["history"]
        rng.setstate(ck["rng"]), torch.set_rng_state(ck["torch_rng"])
        log.info("resumed from %s at step %d (best dev ppl %.2f)", last, step, best)
    first = step
    order = sorted(range(len(train)), key=lambda i: len(train[i]))
    batches = [order[i : i + recipe.batch_size] for i in range(0, len(order), recipe.batch_size)]
    bar = tqdm(total=recipe.max_steps or None, initial=step, desc="lm", unit="step", disable=not recipe.progress)
    while True:
        rng.shuffle(batches)
        for b in batches:
            x, lens = pad_batch([train[i] for i in b])
            loss = model.loss(x, lens) if teacher is None else model.distill_loss(x, lens, teacher, recipe.distill_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            done = (time.monotonic() - start) / 60 > recipe.max_minutes or bool(recipe.max_steps and step >= recipe.max_steps)
            if step % recipe.eval_every == 0 or done or step == first + 1:
                ppl = perplexity(model, dev)
                history.append({"step": step, "train_loss": loss.item(), "dev_ppl": ppl})
                log.info("step %d loss %.3f dev ppl %.2f", step, loss.item(), ppl)
                if ppl < best:
                    best = ppl
                    save_lm(model, recipe.out, **meta, dev_ppl=ppl, step=step)
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "best": best, "step": step,
                            "history": history, "rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, last)
            if done:
                bar.close()
                return {"dev_ppl": best, "steps": step, "history": history}


def run(recipe: LMRecipe, resume: bool = False) -> dict:
    torch.set_num_threads(recipe.threads)
    tok = load_tokenizer(recipe.tokenizer)
    sents = read_sentences(recipe.sources)
    random.Random(recipe.seed).shuffle(sents)
    if recipe.max_sentences:
        sents = sents[: recipe.max_sentences]
    dev, train = pieces(tok, sents[: recipe.dev_sentences]), pieces(tok, sents[recipe.dev_sentences :])
    vocab = tok.vocab_size - 1
    meta = {"tokenizer": tok.proto, "sources": recipe.sources, "kind": recipe.kind}
    Path(recipe.out).parent.mkdir(parents=True, exist_ok=True)
    log.info("%d train / %d dev sentences, %d pieces", len(train), len(dev), vocab)
    if recipe.kind == "ngram":
        lm = NgramLM(vocab, recipe.order).fit(train)
        lm.save(recipe.out, **meta)
        n = sum(len(s) + 1 for s in dev)
        ppl = math.exp(-sum(lm.sentence_logprob(s) for s in dev) / max(1, n))
        result = {"dev_ppl": ppl}
    elif recipe.kind == "lstm":
        result = train_lstm(recipe, train, dev, vocab, meta, resume)
    else:
        raise ValueError(f"kind must be lstm or ngram, got {recipe.kind!r}")
    result |= {"recipe": asdict(recipe), "train_sentences": len(train)}
    Path(recipe.out).with_suffix(".json").write_text(json.dumps(result, indent=2))
    return result


DEFAULT_RECIPE = REPO / "training" / "recipes" / "lm_bible.toml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--config/--recipe, --resume, --print-config, and one flag per `LMRecipe` field."""
    from minutes.config import add_dataclass_arguments

    p.add_argument("--config", "--recipe", dest="config", type=Path, default=DEFAULT_RECIPE,
                   help="TOML recipe ([lm] table)")
    p.add_argument("--resume", action="store_true", help="continue from <out>.last.pt")
    p.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
    add_dataclass_arguments(p, LMRecipe)


def register(sub: argparse._SubParsersAction) -> None:
    """`minutes train lm`: a sub-parser of `minutes train`."""
    p = sub.add_parser("lm", help="external token LM (text only)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run_cli)


def recipe_from_args(args: argparse.Namespace) -> LMRecipe:
    """Defaults < TOML [lm] < MINUTES_LM_* environment < flags."""
    from minutes.config import load_config, overrides_from_args

    return load_config(LMRecipe, toml_path=args.config, section="lm", env_prefix="MINUTES_LM_",
                       overrides=overrides_from_args(args, LMRecipe))


def run_cli(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args)
    return run_recipe(recipe, args.print_config, lambda: run(recipe, resume=args.resume), indent=2)


def main(argv: list[str] | None = None) -> int:
    return recipe_main(__doc__, add_arguments, run_cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
