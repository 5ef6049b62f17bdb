"""DER and JER with pyannote.metrics, as the issue fixes them: standard 0.25 s collar, overlap
scored (not skipped), plus the no-collar variant for reference."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Iterable

from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

from diarisation.rttm import turns_to_annotation
from minutes.types import Turn

__all__ = ["DiarisationScore", "score"]


@dataclass(frozen=True)
class DiarisationScore:
    """Percentages. `der` = (miss + false alarm + confusion) / total reference speech."""

    der: float
    jer: float
    miss: float
    false_alarm: float
    confusion: float
    total: float  # seconds of scored reference speech

    def to_dict(self) -> dict:
        return asdict(self)


def score(reference: Iterable[Turn], hypothesis: Iterable[Turn], collar: float = 0.25,
          skip_overlap: bool = False) -> DiarisationScore:
    """Score one recording. Speaker names need not match: the metric finds the best mapping."""
    ref = turns_to_annotation(reference, "r")
    hyp = turns_to_annotation(hypothesis, "r")
    with warnings.catch_warnings():  # the scored extent is the union of both: that is intended
        warnings.simplefilter("ignore", UserWarning)
        comp = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)(ref, hyp, detailed=True)
        jer = JaccardErrorRate(collar=collar, skip_overlap=skip_overlap)(ref, hyp)
    total = comp["total"] or 1e-9
    return DiarisationScore(
        der=100 * comp["diarization error rate"], jer=100 * jer,
        miss=100 * comp["missed detection"] / total, false_alarm=100 * comp["false alarm"] / total,
        confusion=100 * comp["confusion"] / total, total=comp["total"],
    )
