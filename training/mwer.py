"""MWER fine-tuning of the transducer, with LM fusion in the loop (Meng et al., arXiv 2106.02302).

    python -m training.mwer --recipe training/recipes/mwer_ilme.toml

Each step: (1) the fused beam search (no gradient) gives an N-best for every utterance;
(2) each hypothesis's score is recomputed with gradient,

    S_i = log P_RNNT(y_i | x) + λ_T log P_LM(y_i) − λ_I log P_ILM(y_i),

with log P_RNNT the full-sum (−rnnt_loss) and log P_ILM from the predictor + joiner without the
encoder (so for MWER-ILME the internal LM's gradient flows); (3) the loss is the expected word
errors relative to the N-best mean, Σ_i P̂_i (R_i − R̄), with P̂ the softmax of S over the
N-best; (4) it is interpolated with the transducer loss on the reference for stability.
The three variants differ only in the λ's of the recipe: MWER (0, 0), MWER-SF (λ_T, 0),
MWER-ILME (λ_T, λ_I). Training with the λ's used at test time is what lets the model learn to
work with the LM (and makes it less sensitive to λ).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import jiwer
import torch
import torchaudio
from torch import Tensor

from decoding.beam_search import BeamSearch
from decoding.options import DecodingOptions
from decoding.scorers import ExternalLM, load_external_lm
from decoding.tokenizer import Tokenizer
from decoding.transducer_view import TransducerSearchView
from models.transducer import BLANK, Transducer, load_checkpoint, save_checkpoint
from training.cli import recipe_main, run_recipe

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]

__all__ = ["mwer_loss", "sequence_scores", "word_errors", "MWERRecipe", "MWERTrainer"]


def mwer_loss(scores: Tensor, errors: Tensor, mask: Tensor | None = None) -> Tensor:
    """Σ_i P̂_i (R_i − R̄), averaged over utterances.

    scores (B, K) hypothesis scores S_i (with grad); errors (B, K) word errors R_i; mask (B, K)
    True for real hypotheses (an N-best may be shorter than K). P̂ = softmax of S over the
    N-best; R̄ = the plain mean of R over it (a constant baseline: it lowers variance, not bias).
    """
    mask = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask
    post = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    errors = errors.to(scores.dtype)
    mean = (errors * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)
    return (post * (errors - mean) * mask).sum(-1).mean()


def word_errors(ref: str, hyps: Sequence[str]) -> list[int]:
    """Word edit distance (S + D + I) of each hypothesis to the reference."""
    out = []
    for h in hyps:
        if not ref.split():
            out.append(len(h.split()))
            continue
        m = jiwer.process_words(ref, h if h.strip() else "")
        out.append(m.substitutions + m.deletions + m.insertions)
    return out


def sequence_scores(model: Transducer, enc: Tensor, enc_lens: Tensor, seqs: Sequence[Sequence[int]],
                    owner: Tensor, lm_scores: Tensor, lm_weight: float, ilm_weight: float) -> Tensor:
    """(H,) S_i with gradient for H hypotheses; `owner` (H,) gives each one's utterance row in enc.

    log P_RNNT(y|x) is the full sum over alignments (−rnnt_loss); log P_ILM sums the internal
    LM's non-blank log-probs of the tokens; `lm_scores` (H,) are the external LM's (no grad).
    """
    lens = torch.tensor([len(s) for s in seqs])
    y = torch.zeros(len(seqs), max(1, int(lens.max())), dtype=torch.long)
    for i, s in enumerate(seqs):
        y[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
    e, el = enc.index_select(0, owner), enc_lens.index_select(0, owner)
    pred = model.predictor(y)  # (H, U+1, P)
    logits = model.joiner(e.unsqueeze(2), pred.unsqueeze(1))
    am = -torchaudio.functional.rnnt_loss(logits, y.int(), el.int(), lens.int(), blank=BLANK,
                                           reduction="none", clamp=-1)
    scores = am + lm_weight * lm_scores
    if ilm_weight:
        ilm = model.ilm_logits(pred[:, :-1]).log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        tmask = torch.arange(y.size(1))[None] < lens[:, None]
        scores = scores - ilm_weight * torch.where(tmask, ilm, 0.0).sum(-1)  # pads gather blank (−inf)
    return scores


@dataclass
class MWERRecipe:
    """A recipe's `[mwer]` table."""

    base: str = "/work/data/exp/asr/best.pt"  # transducer checkpoint to fine-tune (with tokenizer)
    out: str = "/work/data/exp/mwer/mwer.pt"
    lm: str = ""  # external LM checkpoint (models.lm) or n-gram pickle; "" = none
    lm_weight: float = 0.0  # λ_T used in the N-best search and in S_i
    ilm_weight: float = 0.0  # λ_I used in the N-best search and in S_i
    beam_size: int = 4
    train_manifests: list[str] = field(default_factory=lambda: ["/work/data/corpus/speechocean762/train.jsonl"])
    max_duration: float = 8.0
    batch_utts: int = 4
    rnnt_weight: float = 0.5  # interpolation with the transducer loss on the reference
    mwer_weight: float = 1.0  # 0 = a control run: the same updates with the transducer loss alone
    lr: float = 2e-5
    clip_norm: float = 5.0
    max_steps: int = 100
    max_minutes: float = 10.0
    threads: int = 1
    seed: int = 0
    save_every: int = 20  # steps between resumable checkpoints (<out>.last.pt)
    progress: bool = True  # tqdm bar on stderr

    @classmethod
    def load(cls, path: str | Path) -> "MWERRecipe":
        data = tomllib.loads(Path(path).read_text())
        return cls(**data.get("mwer", data))


class MWERTrainer:
    """Short MWER / MWER-SF / MWER-ILME fine-tune from a base checkpoint."""

    def __init__(self, recipe: MWERRecipe, need_items: bool = True) -> None:
        from training.data import FeatureCache, read_items

        self.r = recipe
        torch.set_num_threads(recipe.threads)
        torch.manual_seed(recipe.seed)
        self.rng = random.Random(recipe.seed)
        self.model, self.blob = load_checkpoint(recipe.base)
        self.tok = Tokenizer(self.blob["tokenizer"])
        self.lm = load_external_lm(recipe.lm, self.model.cfg.vocab_size, tokenizer=self.blob["tokenizer"])
        self.items = read_items(recipe.train_manifests, recipe.max_duration) if need_items else []
        if need_items and not self.items:
            raise SystemExit(f"no training data in {recipe.train_manifests}")
        self.cache = FeatureCache()
        self.opts = DecodingOptions(search="beam", beam_size=recipe.beam_size, nbest=recipe.beam_size,
                                    lm_weight=recipe.lm_weight if self.lm else 0.0, ilm_weight=recipe.ilm_weight)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=recipe.lr, weight_decay=0.0)

    def nbest(self, enc: Tensor, enc_lens: Tensor) -> list[list[tuple[int, ...]]]:
        search = BeamSearch(TransducerSearchView(self.model), self.lm)
        streams = [search.new_stream(self.opts) for _ in range(enc.size(0))]
        search.search(streams, enc, enc_lens)
        return [[h.tokens for h in search.nbest(s, self.r.beam_size)] for s in streams]

    def step(self, batch: list) -> dict[str, float]:
        mean, std = self.model.feat_mean, self.model.feat_std
        feats = [(self.cache.get(it) - mean) / std for it in batch]
        return self.update(feats, [it.text for it in batch])

    def update(self, feats: list[Tensor], texts: list[str]) -> dict[str, float]:
        """One MWER step on normalised features (T_i, F) and their reference texts."""
        from training.data import collate

        m, r = self.model, self.r
        x, fl, y, tl = collate(feats, [self.tok.encode(t) for t in texts])
        m.eval()  # the N-best comes from the model as it decodes: no dropout, no gradient
        with torch.no_grad():
            enc0, lens0 = m.encoder(x, fl)
            nbest = self.nbest(enc0, lens0)
        m.train()
        enc, enc_lens = m.encoder(x, fl)
        seqs, owner, errs = [], [], []
        for b, (text, hyps) in enumerate(zip(texts, nbest)):
            seqs += hyps
            owner += [b] * len(hyps)
            errs += word_errors(text, [self.tok.decode(h) for h in hyps])
        owner_t = torch.tensor(owner)
        lm_scores = self.lm.sequence_logprob(seqs, eos=False) if self.lm and r.lm_weight else torch.zeros(len(seqs))
        scores = sequence_scores(m, enc, enc_lens, seqs, owner_t, lm_scores, self.opts.lm_weight, r.ilm_weight)
        K = r.beam_size
        S = torch.full((len(texts), K), 0.0)
        R = torch.zeros(len(texts), K)
        M = torch.zeros(len(texts), K, dtype=torch.bool)
        pos = [0] * len(texts)
        rows, cols = [], []
        for i, b in enumerate(owner):
            rows.append(b), cols.append(pos[b])
            pos[b] += 1
        rows_t, cols_t = torch.tensor(rows), torch.tensor(cols)
        S = S.index_put((rows_t, cols_t), scores)
        R[rows_t, cols_t] = torch.tensor(errs, dtype=torch.float)
        M[rows_t, cols_t] = True
        l_mwer = mwer_loss(S, R, M)
        pred = m.predictor(y)
        logits = m.joiner(enc.unsqueeze(2), pred.unsqueeze(1))
        l_rnnt = torchaudio.functional.rnnt_loss(logits, y.int(), enc_lens.int(), tl.int(), blank=BLANK,
                                                 reduction="sum") / tl.sum().clamp(min=1)
        loss = r.mwer_weight * l_mwer + r.rnnt_weight * l_rnnt
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(m.parameters(), r.clip_norm))
        if torch.isfinite(torch.tensor(gnorm)):
            self.opt.step()
        return {"loss": loss.item(), "mwer": l_mwer.item(), "rnnt": l_rnnt.item(), "gnorm": gnorm,
                "nbest_errors": float(R[M].mean())}

    @property
    def last_path(self) -> Path:
        """Resumable state (weights, optimiser, step, RNG, history) beside the output."""
        return Path(self.r.out).with_suffix(".last.pt")

    def _save_last(self, step: int, history: list) -> None:
        save_checkpoint(self.last_path, self.model, {
            "tokenizer": self.blob["tokenizer"], "optimizer": self.opt.state_dict(), "step": step,
            "history": history, "rng": self.rng.getstate(), "torch_rng": torch.get_rng_state(),
            "mwer_recipe": asdict(self.r)})

    def _resume(self) -> tuple[int, list]:
        if not self.last_path.exists():
            return 0, []
        model, blob = load_checkpoint(self.last_path)
        self.model.load_state_dict(model.state_dict())
        self.opt.load_state_dict(blob["optimizer"])
        self.rng.setstate(blob["rng"]), torch.set_rng_state(blob["torch_rng"])
        log.info("resumed from %s at step %d", self.last_path, blob["step"])
        return blob["step"], blob["history"]

    def run(self, resume: bool = False) -> dict:
        from tqdm import tqdm

        r, start = self.r, time.monotonic()
        step, history = self._resume() if resume else (0, [])
        order = list(self.items)
        bar = tqdm(total=r.max_steps, initial=step, desc="mwer", unit="step", disable=not r.progress)
        while step < r.max_steps and (time.monotonic() - start) / 60 < r.max_minutes:
            batch = self.rng.sample(order, min(r.batch_utts, len(order)))
            rec = self.step(batch)
            step += 1
            history.append({"step": step, **rec})
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", mwer=f"{rec['mwer']:.3f}", refresh=False)
            if step % 10 == 0:
                log.info("step %d %s", step, {k: round(v, 3) for k, v in rec.items()})
            if step % r.save_every == 0:
                self._save_last(step, history)
        bar.close()
        self._save_last(step, history)
        self.model.eval()
        save_checkpoint(r.out, self.model, {"tokenizer": self.blob["tokenizer"], "mwer_recipe": asdict(r),
                                            "base": r.base, "step": step})
        res = {"steps": step, "minutes": (time.monotonic() - start) / 60, "history": history}
        Path(r.out).with_suffix(".json").write_text(json.dumps(res, indent=1))
        return res


DEFAULT_RECIPE = REPO / "training" / "recipes" / "mwer.toml"
VARIANTS = ("mwer", "mwer_sf", "mwer_ilme")  # recipes training/recipes/<variant>.toml


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--config/--recipe or --variant, --resume, --print-config, one flag per `MWERRecipe` field."""
    from minutes.config import add_dataclass_arguments

    p.add_argument("--config", "--recipe", dest="config", type=Path, default=None,
                   help=f"TOML recipe ([mwer] table; default {DEFAULT_RECIPE.name})")
    p.add_argument("--variant", choices=VARIANTS, help="use training/recipes/<variant>.toml (λ's of that variant)")
    p.add_argument("--resume", action="store_true", help="continue from <out>.last.pt")
    p.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
    add_dataclass_arguments(p, MWERRecipe)


def register(sub: argparse._SubParsersAction) -> None:
    """`minutes train mwer`: a sub-parser of `minutes train`."""
    p = sub.add_parser("mwer", help="MWER / MWER-SF / MWER-ILME fine-tune of a transducer",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run_cli)


def recipe_from_args(args: argparse.Namespace) -> MWERRecipe:
    """Defaults < TOML [mwer] < MINUTES_MWER_* environment < flags."""
    from minutes.config import load_config, overrides_from_args

    path = args.config or (REPO / "training" / "recipes" / f"{args.variant}.toml" if args.variant else DEFAULT_RECIPE)
    return load_config(MWERRecipe, toml_path=path, section="mwer", env_prefix="MINUTES_MWER_",
                       overrides=overrides_from_args(args, MWERRecipe))


def run_cli(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args)
    return run_recipe(recipe, args.print_config, lambda: MWERTrainer(recipe).run(resume=args.resume))


def main(argv: list[str] | None = None) -> int:
    return recipe_main(__doc__, add_arguments, run_cli, argv)


if __name__ == "__main__":
    raise SystemExit(main())
