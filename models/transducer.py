"""Streaming transducer: encoder + LSTM predictor + joiner, with a CTC head and an internal-LM view.

Shapes: B batch, T feature frames, N encoder frames, U target tokens, V vocabulary (blank = 0).

Three views of one model (later search, LM fusion/ILME, MWER and pruning build on them):
- `forward_losses`: whole utterances -> transducer, CTC and internal-LM (ILMT) losses;
- `stream_encode` + `predict_step` + `join`: one chunk and one token at a time, state in and
  out, never kept on the module, so one loaded model serves every stream;
- `ilm_logits`: predictor + joiner with the encoder's contribution zeroed — the internal LM.

Global feature mean/std are buffers: a checkpoint carries the normalisation it was trained
with. The config dataclass is saved inside the checkpoint so it rebuilds its own model.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from models.encoder import EncoderConfig, EncoderState, StreamingConformer
from models.features import FbankConfig
from models.whisper_encoder import StreamingWhisperEncoder, WhisperEncoderConfig, WhisperEncoderState

BLANK = 0


@dataclass
class TransducerConfig:
    vocab_size: int = 257  # sentencepiece pieces + 1 (blank = 0, piece i -> id i + 1)
    encoder: EncoderConfig | WhisperEncoderConfig = field(default_factory=EncoderConfig)
    embed_dim: int = 256
    pred_dim: int = 256
    joint_dim: int = 256
    pred_dropout: float = 0.1
    ctc_vocab: int = 0  # size of the CTC head's output (blank = 0); 0 = the transducer's vocabulary
    ctc_units: str = "bpe"  # "bpe" (the transducer's pieces) or "chars" (decoding.tokenizer.CharTokenizer)
    distill_dim: int = 0  # training only: a linear head from encoder layer `distill_layer` to a teacher's states
    distill_layer: int = 0  # 1-based encoder layer the head reads (0 = the last)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TransducerConfig":
        d = dict(d)
        e = dict(d.pop("encoder", {}))
        enc = WhisperEncoderConfig(**e) if e.get("kind") == "whisper" else EncoderConfig(**e)
        return cls(encoder=enc, **d)

    @property
    def features(self) -> FbankConfig:
        """The front end the encoder was trained on: Whisper's log-mel for a Whisper encoder."""
        return FbankConfig(kind="whisper" if isinstance(self.encoder, WhisperEncoderConfig) else "kaldi",
                           num_mel_bins=self.encoder.n_mels)

    def to_dict(self) -> dict[str, Any]:
        """As saved in checkpoints. A whisper encoder's per-layer sizes are written only when a
        pruning made them differ (empty lists are the uniform default): an unpruned model's
        config, and so its checkpoint bytes and checksum, stay what they were before pruning existed."""
        d = asdict(self)
        for name in ("ff_dims", "layer_heads"):
            if name in d["encoder"] and not d["encoder"][name]:
                del d["encoder"][name]
        return d


@dataclass
class PredictorState:
    """Per-stream predictor state, batched on dim 0."""

    h: Tensor  # (B, P)
    c: Tensor  # (B, P)
    out: Tensor  # (B, P) predictor output after the last emitted token (or start)

    @staticmethod
    def stack(states: list["PredictorState"]) -> "PredictorState":
        return PredictorState(*(torch.cat([getattr(s, k) for s in states]) for k in ("h", "c", "out")))

    def unstack(self) -> list["PredictorState"]:
        return [PredictorState(self.h[b : b + 1], self.c[b : b + 1], self.out[b : b + 1]) for b in range(self.h.shape[0])]

    def where(self, mask: Tensor, other: "PredictorState") -> "PredictorState":
        """Rows where `mask` (B,) is True from `other`, the rest from self."""
        m = mask[:, None]
        return PredictorState(torch.where(m, other.h, self.h), torch.where(m, other.c, self.c), torch.where(m, other.out, self.out))


class Predictor(nn.Module):
    """Embedding + one LSTM layer. Training runs nn.LSTM over whole label sequences; a single
    step uses `torch.lstm_cell` on the same weights (nn.LSTM at batch 1 pays ~5 ms of oneDNN
    overhead per call on this machine)."""

    def __init__(self, vocab: int, embed: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)

    def forward(self, targets: Tensor) -> Tensor:
        """targets (B, U) -> (B, U + 1, P): output 0 follows the start (blank) symbol."""
        x = F.pad(targets, (1, 0), value=BLANK)
        y, _ = self.lstm(self.drop(self.embed(x)))
        return y

    def step(self, tokens: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """tokens (B,) -> new (h, c); h is the output."""
        x = self.embed(tokens)
        l = self.lstm
        return torch.lstm_cell(x, (h, c), l.weight_ih_l0, l.weight_hh_l0, l.bias_ih_l0, l.bias_hh_l0)


class Joiner(nn.Module):
    def __init__(self, enc_dim: int, pred_dim: int, joint_dim: int, vocab: int) -> None:
        super().__init__()
        self.enc_proj = nn.Linear(enc_dim, joint_dim, bias=False)  # no bias: zeroing the
        self.pred_proj = nn.Linear(pred_dim, joint_dim)  # encoder input zeroes its share (ILM)
        self.out = nn.Linear(joint_dim, vocab)

    def forward(self, enc: Tensor, pred: Tensor) -> Tensor:
        """enc (..., E), pred (..., P), broadcastable -> (..., V) raw logits."""
        return self.joint(self.enc_proj(enc), self.pred_proj(pred))

    def joint(self, enc_p: Tensor | None, pred_p: Tensor) -> Tensor:
        """The joiner formula, written once: already-projected enc (..., J) and pred (..., J)
        -> (..., V) raw logits. Searches project each side once (per chunk, per hypothesis)
        and call this per expansion; `enc_p` None is the encoder's share zeroed (enc_proj has
        no bias), the internal LM."""
        return self.out(torch.tanh(pred_p if enc_p is None else enc_p + pred_p))


class Transducer(nn.Module):
    def __init__(self, cfg: TransducerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        e = cfg.encoder
        self.register_buffer("feat_mean", torch.zeros(e.n_mels))
        self.register_buffer("feat_std", torch.ones(e.n_mels))
        self.encoder = StreamingWhisperEncoder(e) if isinstance(e, WhisperEncoderConfig) else StreamingConformer(e)
        self.ctc = nn.Linear(e.d_model, cfg.ctc_vocab or cfg.vocab_size)
        self.predictor = Predictor(cfg.vocab_size, cfg.embed_dim, cfg.pred_dim, cfg.pred_dropout)
        self.joiner = Joiner(e.d_model, cfg.pred_dim, cfg.joint_dim, cfg.vocab_size)
        self.distill = nn.Linear(e.d_model, cfg.distill_dim) if cfg.distill_dim else None

    def set_distill_head(self, dim: int, layer: int = 0) -> None:
        """Add (dim > 0) or drop (dim = 0) the training-only distillation head. Dropping it is
        what packaging does: the shipped model is the transducer alone."""
        self.cfg.distill_dim, self.cfg.distill_layer = dim, layer
        self.distill = nn.Linear(self.cfg.encoder.d_model, dim).to(self.feat_mean.device) if dim else None

    # -- features ---------------------------------------------------------------------------
    def normalise(self, feats: Tensor) -> Tensor:
        return (feats - self.feat_mean) / self.feat_std

    @property
    def frame_seconds(self) -> float:
        """Seconds per encoder frame."""
        return 0.01 * self.cfg.encoder.subsampling

    # -- whole utterances -------------------------------------------------------------------
    def encode(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Raw log-mel (B, T, F) -> encoder output (B, N, D), lengths (B,)."""
        return self.encoder(self.normalise(feats), lengths)

    def forward_losses(
        self, feats: Tensor, feat_lens: Tensor, targets: Tensor, target_lens: Tensor, *,
        normalised: bool = False, transducer: bool = True,
        ctc_targets: Tensor | None = None, ctc_lens: Tensor | None = None,
        distill_targets: list[Tensor | None] | None = None, ctc_paths: bool = False,
        utterance_rnnt: bool = False,
    ) -> dict[str, Tensor]:
        """Summed losses divided by the number of target tokens in the batch:
        `rnnt`, `ctc` and `ilm` (cross-entropy of the internal LM on the transcript).
        `transducer=False` computes CTC alone (a cheap encoder warm-up: no joint tensor).
        `ctc_targets`/`ctc_lens` are the CTC head's own units when they are not the pieces.
        `distill_targets`: per utterance a teacher's (frames, distill_dim) states or None; they
        are stretched in time to the utterance's encoder frames (which absorbs tempo
        perturbation) and add `distill` (see `distill_loss`). `ctc_paths` adds the CTC head's
        argmax path (B, N) and the frame counts `enc_lens`; `utterance_rnnt` each utterance's
        transducer loss per target token `rnnt_per_token` (B,) (training/forgetting.py reads them)."""
        x = feats if normalised else self.normalise(feats)
        tap = (self.cfg.distill_layer or self.cfg.encoder.n_layers) if distill_targets is not None else 0
        enc, enc_lens, tapped = self.encoder.forward_tapped(x, feat_lens, tap)
        ntok = target_lens.sum().clamp(min=1).float()
        logp = self.ctc(enc).log_softmax(-1).transpose(0, 1)
        ct, cl = (targets, target_lens) if ctc_targets is None else (ctc_targets, ctc_lens)
        ctc = F.ctc_loss(logp, ct, enc_lens, cl, blank=BLANK, reduction="sum", zero_infinity=True)
        extra = {} if distill_targets is None else {"distill": self.distill_loss(tapped, enc_lens, distill_targets)}
        if ctc_paths:
            extra |= {"ctc_paths": logp.detach().argmax(-1).transpose(0, 1), "enc_lens": enc_lens}
        if not transducer:
            return {"ctc": ctc / ntok, **extra}
        pred = self.predictor(targets)  # (B, U+1, P)
        logits = self.joiner(enc.unsqueeze(2), pred.unsqueeze(1))  # (B, N, U+1, V)
        rnnt = torchaudio.functional.rnnt_loss(
            logits, targets.int(), enc_lens.int(), target_lens.int(), blank=BLANK, reduction="none",
        )
        if utterance_rnnt:
            extra["rnnt_per_token"] = rnnt.detach() / target_lens.clamp(min=1).float()
        rnnt = rnnt.sum()
        ilm_logits = self.ilm_logits(pred[:, :-1])  # (B, U, V), blank masked
        tmask = torch.arange(targets.shape[1], device=targets.device)[None] < target_lens[:, None]
        ilm = F.cross_entropy(ilm_logits[tmask], targets[tmask], reduction="sum")
        return {"rnnt": rnnt / ntok, "ctc": ctc / ntok, "ilm": ilm / ntok, **extra}

    def distill_loss(self, hidden: Tensor, lengths: Tensor, targets: list[Tensor | None]) -> Tensor:
        """Mean over frames of L1 + (1 - cosine) between the head's projection of `hidden`
        (B, N, D) and standardised teacher states (DistilHuBERT's objective, without its log-
        sigmoid): L1 matches each dimension, the cosine the direction as a whole."""
        if self.distill is None:
            raise ValueError("distill_targets given but the model has no distillation head (set_distill_head)")
        pred = self.distill(hidden)
        total, frames = pred.new_zeros(()), 0
        for b, tgt in enumerate(targets):
            n = int(lengths[b])
            if tgt is None or n == 0 or tgt.shape[0] == 0:
                continue
            tgt = F.interpolate(tgt.T[None], size=n, mode="linear", align_corners=False)[0].T
            p = pred[b, :n]
            total = total + F.l1_loss(p, tgt, reduction="sum") / tgt.shape[1] \
                + (1 - F.cosine_similarity(p, tgt, dim=-1)).sum()
            frames += n
        return total / max(frames, 1)

    def ilm_logits(self, pred: Tensor) -> Tensor:
        """Internal LM: joiner on predictor output alone (encoder share zeroed), blank masked."""
        logits = self.joiner.joint(None, self.joiner.pred_proj(pred))
        return logits.index_fill(-1, torch.tensor([BLANK], device=logits.device), float("-inf"))

    # -- streaming --------------------------------------------------------------------------
    def initial_encoder_state(self, batch: int = 1) -> EncoderState | WhisperEncoderState:
        return self.encoder.initial_state(batch, self.feat_mean.device)

    def stream_encode(self, feats: Tensor, state: EncoderState | WhisperEncoderState
                      ) -> tuple[Tensor, EncoderState | WhisperEncoderState]:
        """Raw log-mel chunk (B, subsampling * n, F) + state -> encoder frames (B, n, D) + new state."""
        return self.encoder.infer(self.normalise(feats), state)

    def initial_predictor_state(self, batch: int = 1) -> PredictorState:
        p = self.cfg.pred_dim
        dev = self.feat_mean.device
        z = torch.zeros(batch, p, device=dev)
        h, c = self.predictor.step(torch.full((batch,), BLANK, dtype=torch.long, device=dev), z, z)
        return PredictorState(h, c, h)

    def predict_step(self, tokens: Tensor, state: PredictorState) -> PredictorState:
        h, c = self.predictor.step(tokens, state.h, state.c)
        return PredictorState(h, c, h)

    def join(self, enc: Tensor, pred_out: Tensor) -> Tensor:
        """enc (B, D), pred_out (B, P) -> raw logits (B, V)."""
        return self.joiner(enc, pred_out)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# -- checkpoints ------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, model: Transducer, extra: dict[str, Any] | None = None,
                    weights_dtype: torch.dtype | None = None) -> None:
    """Atomic save: config + weights (+ optimiser/step/tokenizer... in `extra`).
    `weights_dtype` (e.g. float16) stores the floating weights smaller; they load back into the
    float32 model as stored (`load_state_dict` casts). Feature statistics stay float32."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = model.state_dict()
    if weights_dtype is not None:
        weights = {k: v.to(weights_dtype) if v.is_floating_point() and not k.startswith("feat_") else v
                   for k, v in weights.items()}
        extra = {**(extra or {}), "weights_dtype": str(weights_dtype).removeprefix("torch.")}
    blob = {"config": model.cfg.to_dict(), "model": weights, **(extra or {})}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path | bytes, map_location: str = "cpu") -> tuple[Transducer, dict[str, Any]]:
    """Rebuild the model a checkpoint describes; returns (model in eval mode, the whole blob)."""
    src = io.BytesIO(path) if isinstance(path, bytes) else path
    blob = torch.load(src, map_location=map_location, weights_only=False)
    model = Transducer(TransducerConfig.from_dict(blob["config"]))
    model.load_state_dict(blob["model"])
    model.eval()
    return model, blob
