"""Speaker embeddings for the diariser: the TDNN trained by `training/speaker.py` from the model
store, or — when no trained model is there — a documented classical fallback.

The fallback is the mean and standard deviation of 20 MFCCs (c1..c20, no c0) over the window,
standardised and L2-normalised: the long-term spectral envelope that separates talkers
roughly (vocal tract length, pitch region via the lower cepstra) without any training. It is
far weaker than the trained model; the diariser then leans on location.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torchaudio

from compression.store import ModelStore, UnknownModelError, split_ref
from models.speaker import SpeakerEncoder, load_speaker

log = logging.getLogger(__name__)

__all__ = ["ARCHITECTURE", "Embedder", "default_model_path"]

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = "tdnn-speaker-embedding"  # what `training/speaker.py` publishes to the store
STORE_REF = "speaker"  # the store name of the trained speaker model (its newest version)


def default_model_path(store: str | Path = REPO / "store", ref: str = STORE_REF) -> Path | None:
    """model.pt of the store's speaker model (newest version by number unless `ref` names
    one), its files checked against the manifest's sha256; None when the store has none.
    A model whose bytes changed is a `ChecksumError`, not a silent fallback."""
    try:
        folder, _ = ModelStore(Path(store)).resolve(*split_ref(ref), verify=True)
    except UnknownModelError:
        return None
    return folder / "model.pt"


class Embedder:
    """Mono 16 kHz audio windows -> L2-normalised embeddings (D,). One per process: it holds no
    per-stream state. `kind` is "tdnn" (trained) or "mfcc" (classical fallback).

    `model_path`: a checkpoint to load as it is; None takes the store's (`default_model_path`)."""

    def __init__(self, model_path: str | Path | None = None, kind: str = "auto", min_samples: int = 4000) -> None:
        path = Path(model_path) if model_path else default_model_path()
        self.min_samples = min_samples
        self.path = path
        self.model: SpeakerEncoder | None = None
        if kind in ("auto", "tdnn") and path is not None and path.exists():
            self.model = load_speaker(path)
            self.kind = "tdnn"
        elif kind == "tdnn":
            raise FileNotFoundError(f"no speaker model at {path or 'store/' + STORE_REF}")
        else:
            self.kind = "mfcc"
            self.mfcc = torchaudio.transforms.MFCC(16000, n_mfcc=21, melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 40})
            log.warning("speaker model %s missing: using the classical MFCC-statistics embedding",
                        path or f"store/{STORE_REF}")

    @property
    def dim(self) -> int:
        return self.model.cfg.embedding if self.model else 40

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        """(N,) float32 at 16 kHz -> (D,). Windows shorter than `min_samples` are repeated."""
        x = np.asarray(wave, dtype=np.float32)
        if len(x) < self.min_samples:
            x = np.tile(x, int(np.ceil(self.min_samples / max(len(x), 1))))[: self.min_samples]
        with torch.inference_mode():
            t = torch.from_numpy(x)[None]
            if self.model is not None:
                return self.model(t)[0].numpy()
            c = self.mfcc(t)[0, 1:]  # (20, T)
            c = c - c.mean(dim=1, keepdim=True) * 0  # keep the mean: it carries the envelope
            v = torch.cat([c.mean(dim=1) / 50.0, c.std(dim=1) / 20.0])
            return torch.nn.functional.normalize(v, dim=0).numpy()
