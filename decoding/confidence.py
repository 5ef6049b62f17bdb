"""Word confidence as P(word correct): decoding features through a calibrated logistic model.

Why: the mean token posterior a transducer emits a word with is overconfident where it is
wrong (a beam with an LM emits a wrong word at high posterior when the LM likes it) and
says nothing about whether the audio supports the word's letters. arXiv 2105.00858 §4 feeds
decoding features to a small classifier trained on held-out decodes. Ours are all free at
the end of a segment: the token posteriors (mean, min, count), how well the CTC head's
forced alignment supports the letters (decoding/alignment.py), and the word's duration per
letter (too fast or too slow for its spelling is suspicious). The classifier is a logistic
regression (training/confidence.py fits it with scikit-learn); at run time it is a dot
product with weights stored in the model's manifest (`extra.confidence`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["FEATURES", "word_features", "ConfidenceModel"]

FEATURES = ("log_mean_post", "log_min_post", "tokens", "ctc_support", "seconds_per_letter", "letters")


def word_features(probs: list[float], letters: int, seconds: float, ctc_support: float | None) -> list[float]:
    """The `FEATURES` of one word: its tokens' posteriors at emission, its letter count, its
    duration (aligned when aligned), and the mean posterior of its letters' CTC spikes in the
    forced alignment (None: not aligned, counted as the neutral 0.5)."""
    eps = 1e-4
    return [math.log(max(sum(probs) / len(probs), eps)), math.log(max(min(probs), eps)), float(len(probs)),
            0.5 if ctc_support is None else ctc_support, seconds / max(letters, 1), float(letters)]


@dataclass(frozen=True)
class ConfidenceModel:
    """Standardise, then logistic: P(correct) = sigmoid(w · (x - mean) / scale + b)."""

    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    features: tuple[str, ...] = FEATURES
    metrics: dict = field(default_factory=dict)  # what training/confidence.py measured (held out)

    def __post_init__(self) -> None:
        if not (len(self.mean) == len(self.scale) == len(self.coef) == len(self.features)):
            raise ValueError("confidence model: mean, scale, coef and features differ in length")
        if tuple(self.features) != FEATURES:
            raise ValueError(f"confidence model was fitted on {self.features}, this code computes {FEATURES}")

    def predict(self, x: list[float]) -> float:
        z = self.intercept + sum(w * (v - m) / s for w, v, m, s in zip(self.coef, x, self.mean, self.scale))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def to_dict(self) -> dict:
        return {"features": list(self.features), "mean": self.mean, "scale": self.scale, "coef": self.coef,
                "intercept": self.intercept, "metrics": self.metrics}

    @classmethod
    def from_dict(cls, d: dict | None) -> "ConfidenceModel | None":
        if not d:
            return None
        return cls([float(v) for v in d["mean"]], [float(v) for v in d["scale"]], [float(v) for v in d["coef"]],
                   float(d["intercept"]), tuple(d.get("features", FEATURES)), dict(d.get("metrics", {})))
