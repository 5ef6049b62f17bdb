"""Train the streaming transducer: one entry point, recipes are TOML (`training/recipes/`).

Why these choices (see shared/DESIGN.md, measured probes): many small updates (~30 s of audio a
batch) rather than few big ones; a CTC head weighted strongly while the transducer loss ramps
in (the encoder learns to align through CTC first); gradient clipping (norm spikes recur);
curriculum short -> long; tempo perturbation and SpecAugment (after a warm-up) against
memorising repeated prompts; an internal-LM loss (ILMT) so that later LM fusion with ILM
estimation has a well-defined internal LM. The run is wall-clock bounded, checkpoints every few
minutes and resumes exactly (`--resume`), because a useful model spans several sessions.
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from decoding.greedy import ctc_decode_batch, greedy_decode_batch
from decoding.tokenizer import CharTokenizer, Tokenizer
from models.encoder import EncoderConfig
from models.features import FbankConfig
from models.whisper_encoder import WhisperEncoderConfig, load_whisper_weights, whisper_config_from_ct2
from models.transducer import Transducer, TransducerConfig, load_checkpoint, save_checkpoint
from training.data import (FeatureCache, Item, collate, feature_stats, freq_warp, make_batches, read_items, spec_augment,
                           tempo)
from training.featpack import read_pack

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """A recipe's `[asr]` table. Every field is also a `--flag` and a MINUTES_TRAIN_ variable."""

    exp_dir: str = "/work/data/exp/asr"
    init_from: str = ""  # a model.pt (e.g. store/default/1/model.pt) to continue from when exp_dir has no last.pt
    train_manifests: list[str] = field(default_factory=lambda: ["/work/data/corpus/speechocean762/train.jsonl"])
    dev_manifests: list[str] = field(default_factory=lambda: ["/work/data/corpus/speechocean762/dev.jsonl"])
    dev_utts: int = 150  # per dev manifest, for the periodic WER
    feature_packs: list[str] = field(default_factory=list)  # training data as feature packs (training/featpack.py)
    dev_packs: list[str] = field(default_factory=list)  # dev sets as packs: one dev set per source manifest in them
    # data
    max_batch_seconds: float = 30.0  # padded seconds of audio per update
    max_batch_utts: int = 48
    max_duration: float = 20.0  # utterances longer than this are skipped
    curriculum: list[float] = field(default_factory=lambda: [0, 6.0, 600, 10.0, 1500, 20.0])  # step, max s, ...
    tempo_factors: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    freq_warp: float = 0.0  # VTLN factor drawn per utterance from 1 ± this (training/data.py freq_warp); 0 = off
    specaug_start: int = 1500  # step from which SpecAugment is on
    # tokenizer / model
    encoder: str = "conformer"  # "conformer" (models/encoder.py) or "whisper" (models/whisper_encoder.py)
    whisper_init: str = ""  # a pin of training/pretrained.py or a model.bin path; "" = random init
    positions: str = "sliding"  # whisper encoder: "sliding" or "none"
    pretrained_lr_scale: float = 1.0  # learning rate of the pretrained encoder relative to `lr`
    freeze_layers: int = 0  # whisper encoder: front end + this many blocks frozen ...
    freeze_steps: int = 0  # ... until this update
    vocab_pieces: int = 256
    tokenizer_from: str = ""  # a sentencepiece model to reuse (keeps LMs trained on its pieces valid)
    d_model: int = 192
    n_layers: int = 6
    n_heads: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15
    subsample_channels: int = 32
    stack: int = 1  # 1: 40 ms encoder frames (80 ms is too tight for CTC on fast TTS speech)
    chunk_frames: int = 8  # encoder frames per streaming chunk (8 x 40 ms = 320 ms)
    left_chunks: int = 6
    dropout: float = 0.0
    pred_dim: int = 256
    joint_dim: int = 256
    ctc_units: str = "chars"  # "chars" or "bpe": what the auxiliary CTC head predicts
    # loss
    rnnt_weight: float = 1.0
    ctc_only_steps: int = 2000  # steps of CTC alone first (about half the cost of a joint step)
    rnnt_ramp_steps: int = 800  # then the transducer weight ramps from 0.2 to rnnt_weight
    ctc_weight: float = 0.5
    ilm_weight: float = 0.1
    # distillation from a teacher's encoder states (training/teacher.py); 0 = off
    distill_weight: float = 0.0
    distill_layer: int = 4  # 1-based encoder layer whose projection is matched to the teacher
    teacher_dir: str = "/work/data/teacher/whisper-tiny.en"
    # optimiser
    lr: float = 1.0e-3
    warmup_steps: int = 500
    weight_decay: float = 1e-3
    clip_norm: float = 5.0
    # exponential moving average of the weights, evaluated and saved as best.pt; 0 = off. On ~3k
    # utterances of real speech the raw weights wander from eval to eval (±2–3 WER points on 100
    # utterances); the average is what a checkpoint choice would otherwise guess at.
    ema_decay: float = 0.0
    # warm-up: the n-th update uses decay min(ema_decay, (1 + n) / (10 + n)), so an average started
    # on young weights (a fine-tune from a fresh joiner) forgets them within a few hundred updates
    # instead of carrying them (0.999 keeps 13 % of the first 500 updates' weights at update 2,500)
    ema_warmup: bool = False
    # run
    threads: int = 2
    device: str = "cpu"  # "cuda" where an accelerator is lent; the recipe is the same
    seed: int = 1
    max_minutes: float = 90.0  # wall-clock budget of this invocation
    max_steps: int = 0  # 0 = unbounded
    max_epochs: int = 0  # full passes over the training set in this invocation; 0 = unbounded
    ckpt_minutes: float = 4.0
    eval_minutes: float = 10.0
    eval_steps: list[int] = field(default_factory=list)  # also evaluate at these updates (ablations compare at equal steps)
    log_every: int = 25
    # sparse fine-tuning of a pruned checkpoint (`minutes prune` stores its masks and plan in it;
    # training/sparse.py): "static" holds the masks, "mest" mutates them (prune-and-grow)
    sparse_method: str = "static"
    mest_interval: int = 100
    mest_rate: float = 0.1
    mest_end: int = 1000  # updates of this run after which the masks stay fixed
    mest_soft_bound: bool = True
    mest_grad_weight: float = 1.0  # the gradient's share of a unit's importance (training/sparse.py)
    # MEST's data efficiency: forgetting statistics from the CTC head's greedy output on each
    # batch (training/forgetting.py); utterances learned at every visit are dropped from later
    # epochs (at most forget_max_drop of them)
    drop_unforgettable: bool = False
    # what "learned" is measured by: "rnnt", the utterance's transducer loss per target token
    # (nats), or "ctc_cer", the CTC head's greedy character error rate (a weak CTC head, as
    # default/10's at 77 % WER, learns nothing by it)
    forget_signal: str = "rnnt"
    forget_threshold: float = 0.1  # at or below which an utterance counts as learned
    forget_min_visits: int = 2
    forget_max_drop: float = 0.5

    @property
    def features(self) -> FbankConfig:
        return FbankConfig(kind="whisper" if self.encoder == "whisper" else "kaldi")

    def model_config(self, vocab_size: int) -> TransducerConfig:
        if self.encoder == "whisper":
            common = dict(chunk_frames=self.chunk_frames, left_chunks=self.left_chunks, dropout=self.dropout,
                          positions=self.positions, stack=2)
            if self.whisper_init:
                from training.pretrained import resolve

                enc = whisper_config_from_ct2(resolve(self.whisper_init)[0], **common)
            else:
                enc = WhisperEncoderConfig(d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                                           ff_mult=self.ff_mult, **common)
            ctc_vocab = CharTokenizer().vocab_size if self.ctc_units == "chars" else 0
            return TransducerConfig(vocab_size=vocab_size, encoder=enc, pred_dim=self.pred_dim,
                                    joint_dim=self.joint_dim, ctc_vocab=ctc_vocab, ctc_units=self.ctc_units)
        if self.encoder != "conformer":
            raise ValueError(f"encoder must be 'conformer' or 'whisper', not {self.encoder!r}")
        enc = EncoderConfig(
            d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads, ff_mult=self.ff_mult,
            conv_kernel=self.conv_kernel, chunk_frames=self.chunk_frames, left_chunks=self.left_chunks,
            dropout=self.dropout, subsample_channels=self.subsample_channels, stack=self.stack,
        )
        ctc_vocab = CharTokenizer().vocab_size if self.ctc_units == "chars" else 0
        return TransducerConfig(vocab_size=vocab_size, encoder=enc, pred_dim=self.pred_dim, joint_dim=self.joint_dim,
                                ctc_vocab=ctc_vocab, ctc_units=self.ctc_units)

    def max_len_at(self, step: int) -> float:
        limit = self.curriculum[1] if self.curriculum else self.max_duration
        for s, d in zip(self.curriculum[0::2], self.curriculum[1::2]):
            if step >= s:
                limit = d
        return min(limit, self.max_duration)

    def lr_at(self, step: int) -> float:
        s = max(step, 1)
        return self.lr * min(s / self.warmup_steps, math.sqrt(self.warmup_steps / s))


@dataclass
class DevSet:
    name: str
    items: list[Item]


def evaluate(model: Transducer, tok: Tokenizer, cache: FeatureCache, items: list[Item], batch: int = 16) -> dict[str, Any]:
    """Greedy WER (full-utterance forward with the streaming mask = what streaming computes)."""
    model.eval()
    dev = model.feat_mean.device
    ctc_tok = CharTokenizer() if model.cfg.ctc_units == "chars" else tok
    refs, hyps, ctc_hyps = [], [], []
    order = sorted(items, key=lambda it: it.duration)
    for i in range(0, len(order), batch):
        part = order[i : i + batch]
        x, fl, _, _ = collate([cache.get(it) for it in part], [[1]] * len(part))
        x, fl = x.to(dev), fl.to(dev)
        for it, em, ct in zip(part, greedy_decode_batch(model, x, fl), ctc_decode_batch(model, x, fl)):
            refs.append(it.text)
            hyps.append(tok.decode([e.token for e in em]))
            ctc_hyps.append(ctc_tok.decode(ct))
    ex = list(zip(refs[:3], hyps[:3], ctc_hyps[:3]))
    return {"wer": word_error_rate(refs, hyps), "ctc_wer": word_error_rate(refs, ctc_hyps), "n": len(refs),
            "examples": ex}


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER in %: jiwer where installed; torchaudio's edit distance on a machine that has
    only the training stack (the same number: word-level Levenshtein over total reference words)."""
    try:
        import jiwer
    except ImportError:
        import torchaudio

        errors = sum(torchaudio.functional.edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps))
        return 100.0 * errors / max(1, sum(len(r.split()) for r in refs))
    return 100.0 * jiwer.wer(refs, hyps)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False) -> None:
        self.cfg = cfg
        self.exp = Path(cfg.exp_dir)
        self.exp.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(cfg.threads)
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.cache = FeatureCache(cfg.features)
        self.pack_items = self._load_packs(cfg.feature_packs)
        self.chars = CharTokenizer()
        self.rng = random.Random(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.step = 0
        self.epoch = 0
        self.elapsed = 0.0  # training seconds over all invocations
        self.best = float("inf")
        last = self.exp / "last.pt"
        resumed: dict[str, Any] | None = None  # the last.pt blob when resuming (it carries the EMA)
        if resume and last.exists():
            self.model, blob = load_checkpoint(last)
            resumed = blob
            self.model.to(self.device)
            self.tok = Tokenizer(blob["tokenizer"])
            self.step, self.epoch = blob["step"], blob["epoch"]
            self.elapsed, self.best = blob.get("elapsed", 0.0), blob.get("best", float("inf"))
            self.opt = self._optimiser()
            self.opt.load_state_dict(blob["optimizer"])
            for g in self.opt.param_groups[1:]:  # the pretrained group: the recipe's scale now (a branch may change it)
                g["lr_scale"] = cfg.pretrained_lr_scale
            self.rng.setstate(blob["py_rng"])
            was = blob.get("train_config", {}).get("seed", cfg.seed)
            if was != cfg.seed:  # a branch: same weights and optimiser, another data order and noise
                self.rng.seed(cfg.seed)
                torch.manual_seed(cfg.seed)
                log.info("branched with seed %d (was %d)", cfg.seed, was)
            log.info("resumed %s at step %d (epoch %d)", last, self.step, self.epoch)
        elif cfg.init_from:
            # a shipped model (weights, tokenizer, step; no optimiser state): the schedule and
            # curriculum carry on from its step, Adam's moments start afresh
            self.model, blob = load_checkpoint(cfg.init_from)
            self.model.to(self.device)
            self.tok = Tokenizer(blob["tokenizer"])
            self.step, self.epoch = blob.get("step", 0), blob.get("epoch", 0)
            self.elapsed = blob.get("elapsed", 0.0)
            self.opt = self._optimiser()
            log.info("initialised from %s at step %d", cfg.init_from, self.step)
        else:
            items = self.train_items()
            if not items:
                raise SystemExit(f"no training data in {cfg.train_manifests} {cfg.feature_packs}")
            if cfg.tokenizer_from:
                self.tok = Tokenizer.load(cfg.tokenizer_from)
            else:
                self.tok = Tokenizer.train((it.text for it in items), cfg.vocab_pieces, self.exp)
            self.model = Transducer(cfg.model_config(self.tok.vocab_size))
            if cfg.encoder == "whisper":
                # Whisper's features are normalised by its own fixed map: statistics stay 0 / 1
                if cfg.whisper_init:
                    from training.pretrained import resolve

                    path, provenance = resolve(cfg.whisper_init)
                    load_whisper_weights(self.model.encoder, path)
                    log.info("encoder initialised from %s (%s)", path, (provenance or {}).get("origin", "?"))
            else:
                mean, std = feature_stats(self.cache, items)
                self.model.feat_mean.copy_(mean)
                self.model.feat_std.copy_(std)
            self.model.to(self.device)
            self.opt = self._optimiser()
            log.info("new model: %d parameters, vocab %d", self.model.num_params(), self.tok.vocab_size)
        self.teacher = None
        if cfg.distill_weight > 0:
            from training.teacher import TeacherTargets

            self.teacher = TeacherTargets(cfg.teacher_dir, list(dict.fromkeys(cfg.train_manifests)))
            if not self.teacher.tables:
                raise SystemExit(f"distill_weight > 0 but no teacher targets in {cfg.teacher_dir} "
                                 "(make them with `minutes train teacher --manifest ...`)")
            if self.model.distill is None:  # a model trained without it: a fresh head, a fresh optimiser
                self.model.set_distill_head(self.teacher.dim, cfg.distill_layer)
                self.opt = self._optimiser()
        self.forgetting = None
        if cfg.drop_unforgettable:
            from training.forgetting import ForgettingStats

            self.forgetting = ForgettingStats(cfg.forget_threshold, cfg.forget_min_visits, cfg.forget_max_drop)
            if resumed is not None and "forgetting" in resumed:
                self.forgetting.load_state_dict(resumed["forgetting"])
        self.sparse = self._sparse(resumed if resumed is not None else blob if cfg.init_from else None)
        self.ema = self._ema(resumed)
        self.dev = [
            DevSet(Path(m).parent.name + "/" + Path(m).stem, read_items([m], 60.0)[: cfg.dev_utts])
            for m in cfg.dev_manifests
            if Path(m).exists()
        ] + self._pack_dev_sets(cfg.dev_packs)
        # batches are built on the CPU: normalise there with a CPU copy of the model's statistics
        self.feat_norm = (self.model.feat_mean.cpu(), self.model.feat_std.cpu())
        self.log_fh = open(self.exp / "train_log.jsonl", "a", encoding="utf-8")
        self._stop = False

    def _load_packs(self, packs: list[str]) -> list[Item]:
        """Fill the feature cache from packs; returns their items."""
        items: list[Item] = []
        for p in packs:
            for item, feats in read_pack(p, self.cfg.features.kind):
                self.cache.store[item.id] = feats
                items.append(item)
            log.info("feature pack %s: %d utterances so far", p, len(items))
        return items

    def _pack_dev_sets(self, packs: list[str]) -> list[DevSet]:
        """One dev set per source manifest inside the dev packs (ids are pack:corpus/stem/utt)."""
        groups: dict[str, list[Item]] = {}
        for it in self._load_packs(packs):
            name = "/".join(it.id.split(":", 1)[1].split("/")[:2])
            groups.setdefault(name, []).append(it)
        return [DevSet(k, v[: self.cfg.dev_utts]) for k, v in groups.items()]

    def train_items(self) -> list[Item]:
        """Manifests (re-read: a corpus may still be growing) plus the feature packs."""
        packed = [it for it in self.pack_items if it.duration <= self.cfg.max_duration]
        return read_items(self.cfg.train_manifests, self.cfg.max_duration) + packed

    def _sparse(self, blob: dict[str, Any] | None):
        """The mask keeper of a pruned checkpoint (None for a dense one): masks and plan from
        `minutes prune`'s output, or the keeper's own state when resuming."""
        if blob is None or "prune_plan" not in blob:
            return None
        from compression.plan import PrunePlan
        from training.sparse import MaskKeeper, SparseConfig

        plan = PrunePlan.from_dict(blob["prune_plan"])
        cfg = self.cfg
        sc = SparseConfig(cfg.sparse_method, cfg.mest_interval, cfg.mest_rate, cfg.mest_end, cfg.mest_soft_bound,
                          cfg.mest_grad_weight)
        state = blob.get("sparse")
        masks = state["masks"] if state else blob["masks"]
        keeper = MaskKeeper(self.model, {k: v.float() for k, v in masks.items()}, plan.layers, sc, cfg.seed, plan)
        if state:
            keeper.load_state_dict(state)
        log.info("sparse fine-tuning (%s): %d masked weights, sparsity %.3f", sc.method, len(masks), keeper.sparsity())
        return keeper

    def _ema(self, blob: dict[str, Any] | None) -> torch.optim.swa_utils.AveragedModel | None:
        """torch's AveragedModel with an EMA rule; restored from last.pt, else started at the
        current weights (a resume of a run that had none, or a fine-tune from init_from)."""
        if self.cfg.ema_decay <= 0:
            return None
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        if self.cfg.ema_warmup:
            decay = self.cfg.ema_decay

            def warm(avg: torch.Tensor, new: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
                d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
                return d * avg + (1.0 - d) * new

            ema = AveragedModel(self.model, avg_fn=warm, use_buffers=True)
        else:
            ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.ema_decay), use_buffers=True)
        if blob is not None and "ema" in blob:
            ema.load_state_dict(blob["ema"])
            log.info("EMA (decay %g) restored: %d updates averaged", self.cfg.ema_decay, int(ema.n_averaged))
        else:
            log.info("EMA (decay %g) starts at the current weights", self.cfg.ema_decay)
        return ema

    @property
    def eval_model(self) -> Transducer:
        """The weights that are evaluated and kept as best.pt: the average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def _optimiser(self) -> torch.optim.Optimizer:
        """AdamW; for a Whisper encoder its pretrained weights are one group at
        `pretrained_lr_scale` of the learning rate (a low rate keeps what they learnt) and the new parts
        (stacking projection, heads, predictor, joiner) another at the full rate."""
        pretrained, new = [], []
        for name, p in self.model.named_parameters():
            fresh = not name.startswith("encoder.") or name.startswith("encoder.stack_proj")
            (new if fresh or self.cfg.encoder != "whisper" else pretrained).append(p)
        groups = [{"params": new, "lr_scale": 1.0}]
        if pretrained:
            groups.append({"params": pretrained, "lr_scale": self.cfg.pretrained_lr_scale})
        return torch.optim.AdamW(groups, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def _apply_freeze(self) -> None:
        """Front end and the first `freeze_layers` blocks of a Whisper encoder get no gradient
        until `freeze_steps` (the new heads learn to read the pretrained states first)."""
        n, until = self.cfg.freeze_layers, self.cfg.freeze_steps
        if self.cfg.encoder != "whisper" or n <= 0:
            return
        frozen = self.step < until
        enc = self.model.encoder
        for m in [enc.conv1, enc.conv2, *enc.blocks[:n]]:
            for p in m.parameters():
                p.requires_grad_(not frozen)

    def _log(self, rec: dict[str, Any]) -> None:
        self.log_fh.write(json.dumps(rec) + "\n")
        self.log_fh.flush()

    def save(self, name: str = "last.pt") -> None:
        """last.pt: the raw weights, optimiser and average (to resume); best.pt: the evaluated weights."""
        extra = {"tokenizer": self.tok.proto, "step": self.step, "epoch": self.epoch, "elapsed": self.elapsed,
                 "best": self.best, "optimizer": self.opt.state_dict(), "py_rng": self.rng.getstate(),
                 "train_config": asdict(self.cfg)}
        if self.forgetting is not None:
            extra["forgetting"] = self.forgetting.state_dict()
        if self.sparse is not None:  # the pruned model stays re-trainable and packable
            state = self.sparse.state_dict()
            extra |= {"prune_plan": self.sparse.plan.to_dict(), "sparse": state, "masks": state["masks"]}
        if name == "best.pt":
            if self.sparse is not None:  # the average of masked weights: zero where the masks now are
                self.sparse.enforce_on(self.eval_model)
            save_checkpoint(self.exp / name, self.eval_model, extra)
            return
        if self.ema is not None:
            extra["ema"] = self.ema.state_dict()
        save_checkpoint(self.exp / name, self.model, extra)

    def run_eval(self) -> float:
        res = {}
        for d in self.dev:
            if d.items:
                res[d.name] = evaluate(self.eval_model, self.tok, self.cache, d.items)
        self.model.train()
        if not res:
            return float("inf")
        # a young model's CTC head may beat its transducer: "best" is the better decoder's WER
        mean = min(sum(r[k] for r in res.values()) / len(res) for k in ("wer", "ctc_wer"))
        self._log({"type": "eval", "step": self.step, "elapsed": self.elapsed, "wer": mean,
                   **{f"wer/{k}": v["wer"] for k, v in res.items()},
                   **{f"ctc_wer/{k}": v["ctc_wer"] for k, v in res.items()}})
        for k, v in res.items():
            log.info("eval step %d %s WER %.1f%% (CTC %.1f%%) e.g. %s", self.step, k, v["wer"], v["ctc_wer"],
                     v["examples"][:2])
        if mean < self.best:
            self.best = mean
            self.save("best.pt")
        return mean

    def train_step(self, batch: list[Item]) -> dict[str, float]:
        cfg = self.cfg
        feats, targets, chars = [], [], []
        mean, std = self.feat_norm
        for it in batch:
            f = tempo(self.cache.get(it), self.rng.choice(cfg.tempo_factors))
            if cfg.freq_warp > 0:
                f = freq_warp(f, 1.0 + self.rng.uniform(-cfg.freq_warp, cfg.freq_warp))
            f = (f - mean) / std
            if self.step >= cfg.specaug_start:
                f = spec_augment(f, self.rng)
            feats.append(f)
            targets.append(self.tok.encode(it.text))
            chars.append(self.chars.encode(it.text))
        distill = None
        if self.teacher is not None:
            distill = []
            for it in batch:
                t = self.teacher.get(*it.id.split(":", 1))
                distill.append(None if t is None else torch.from_numpy(t).to(self.device))
        x, fl, y, tl = collate(feats, targets)
        x, fl, y, tl = (t.to(self.device) for t in (x, fl, y, tl))
        ct = cl = None
        if self.model.cfg.ctc_units == "chars":
            cl = torch.tensor([len(c) for c in chars])
            ct = torch.zeros(len(chars), max(1, int(cl.max())), dtype=torch.long)
            for i, c in enumerate(chars):
                ct[i, : len(c)] = torch.tensor(c, dtype=torch.long)
            ct, cl = ct.to(self.device), cl.to(self.device)
        for g in self.opt.param_groups:
            g["lr"] = cfg.lr_at(self.step) * g.get("lr_scale", 1.0)
        self._apply_freeze()
        joint = self.step >= cfg.ctc_only_steps
        losses = self.model.forward_losses(x, fl, y, tl, normalised=True, transducer=joint, ctc_targets=ct, ctc_lens=cl,
                                           distill_targets=distill,
                                           ctc_paths=self.forgetting is not None and cfg.forget_signal == "ctc_cer",
                                           utterance_rnnt=self.forgetting is not None and cfg.forget_signal == "rnnt")
        forgot: dict[str, float] = {}
        if self.forgetting is not None:
            if cfg.forget_signal == "ctc_cer":
                from training.forgetting import greedy_ctc_cer

                paths, lens = losses.pop("ctc_paths"), losses.pop("enc_lens")
                units = chars if self.model.cfg.ctc_units == "chars" else targets
                errors = [greedy_ctc_cer(paths[i, : int(lens[i])].tolist(), units[i]) for i in range(len(batch))]
            else:
                errors = losses.pop("rnnt_per_token").tolist()
            forgot = {"forgetting_events": float(self.forgetting.update([it.id for it in batch], errors)),
                      "learned": sum(c <= cfg.forget_threshold for c in errors) / len(errors)}
        if joint:
            ramp = (self.step - cfg.ctc_only_steps) / max(1, cfg.rnnt_ramp_steps)
            w_rnnt = cfg.rnnt_weight * max(0.2, min(1.0, ramp))
            loss = w_rnnt * losses["rnnt"] + cfg.ctc_weight * losses["ctc"] + cfg.ilm_weight * losses["ilm"]
        else:
            loss = losses["ctc"]
        if "distill" in losses:
            loss = loss + cfg.distill_weight * losses["distill"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm))
        mest: dict[str, float] = {}
        if math.isfinite(gnorm):
            self.opt.step()
            if self.sparse is not None:
                mest = self.sparse.after_update()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
        self.step += 1
        return ({k: float(v.detach()) for k, v in losses.items()} | {"loss": float(loss.detach()), "gnorm": gnorm}
                | mest | forgot)

    def _on_signal(self, *_: object) -> None:
        self._stop = True

    def run(self) -> None:
        cfg = self.cfg
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.model.train()
        start = time.monotonic()
        last_ckpt = last_eval = start
        acc: dict[str, float] = {}
        n_acc = 0
        audio_s = 0.0
        epochs_run = 0
        while not self._stop:
            items = [it for it in self.train_items() if it.duration <= cfg.max_len_at(self.step)]
            if self.forgetting is not None:  # MEST's data efficiency: skip what is never forgotten
                keep = self.forgetting.keep([it.id for it in items])
                dropped = len(items) - len(keep)
                items = [it for it in items if it.id in keep]
                self._log({"type": "forgetting", "step": self.step, "epoch": self.epoch, "dropped": dropped,
                           "unforgettable": len(self.forgetting.unforgettable())})
                log.info("forgetting statistics: %d unforgettable utterances dropped this epoch", dropped)
            batches = make_batches(items, cfg.max_batch_seconds, cfg.max_batch_utts, self.rng)
            log.info("epoch %d: %d utterances (%.2f h), %d batches, max len %.0f s", self.epoch, len(items),
                     sum(it.duration for it in items) / 3600, len(batches), cfg.max_len_at(self.step))
            limit = cfg.max_len_at(self.step)
            for batch in batches:
                t0 = time.monotonic()
                stats = self.train_step(batch)
                self.elapsed += time.monotonic() - t0
                audio_s += sum(it.duration for it in batch)
                for k, v in stats.items():
                    acc[k] = acc.get(k, 0.0) + v
                n_acc += 1
                if self.step % cfg.log_every == 0:
                    rec = {"type": "train", "step": self.step, "epoch": self.epoch, "elapsed": self.elapsed,
                           "lr": cfg.lr_at(self.step), "audio_h": audio_s / 3600,
                           **{k: v / n_acc for k, v in acc.items()}}
                    self._log(rec)
                    log.info("step %d %s lr %.2e", self.step, " ".join(
                        f"{k} {rec[k]:.3f}" for k in ("loss", "rnnt", "ctc", "ilm", "distill", "gnorm") if k in rec), rec["lr"])
                    acc, n_acc = {}, 0
                now = time.monotonic()
                done = (now - start) / 60 >= cfg.max_minutes or (cfg.max_steps and self.step >= cfg.max_steps)
                if now - last_eval >= cfg.eval_minutes * 60 or self.step in cfg.eval_steps:
                    self.run_eval()
                    last_eval = time.monotonic()
                if now - last_ckpt >= cfg.ckpt_minutes * 60 or done or self._stop:
                    self.save()
                    last_ckpt = time.monotonic()
                if done or self._stop:
                    self._stop = True
                    break
                if cfg.max_len_at(self.step) > limit:
                    break  # curriculum stage changed: rebuild the batches
            else:
                self._log({"type": "epoch", "epoch": self.epoch, "step": self.step, "elapsed": self.elapsed,
                           "utterances": len(items), "batches": len(batches)})
                self.epoch += 1
                epochs_run += 1
                if cfg.max_epochs and epochs_run >= cfg.max_epochs:
                    self.save()
                    break
        self.run_eval()
        self.save()
        log.info("stopped at step %d; best dev WER %.1f%%", self.step, self.best)
