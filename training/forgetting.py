"""Forgetting statistics (Toneva et al. 2019, as MEST uses them, arXiv 2110.14032): which training
utterances the model learns once and never forgets, so later epochs can skip them.

"Learned" at a visit: an error measure from the forward pass the update already made (no extra
decoding) is at or below `threshold`: the utterance's transducer loss per target token
(`forget_signal = "rnnt"`, the default) or the CTC head's greedy character error rate
(`"ctc_cer"`; a CTC head as weak as default/10's never learns anything by it). A forgetting event is a visit where an utterance learned at its previous visit is
no longer learned. After `min_visits` visits, an utterance learned at every visit (so never
forgotten) is "unforgettable": the trainer drops it from later epochs, at most `max_drop` of
the data, which saves their share of the training time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ForgettingStats", "greedy_ctc_cer"]


def greedy_ctc_cer(path: list[int], target: list[int], blank: int = 0) -> float:
    """Character error rate of a CTC argmax path (repeats collapsed, blanks removed)."""
    from torchaudio.functional import edit_distance

    hyp = [t for k, t in enumerate(path) if t != blank and (k == 0 or t != path[k - 1])]
    if not target:
        return float(bool(hyp))
    return edit_distance(target, hyp) / len(target)


@dataclass
class ForgettingStats:
    threshold: float = 0.1  # error (loss per token or CER) at or below which an utterance counts as learned
    min_visits: int = 2
    max_drop: float = 0.5  # never drop more than this share of the training items
    visits: dict[str, int] = field(default_factory=dict)
    learned_now: dict[str, bool] = field(default_factory=dict)
    forgotten: dict[str, int] = field(default_factory=dict)  # forgetting events per utterance
    never_learned: set[str] = field(default_factory=set)  # ids not learned at some visit

    def update(self, ids: list[str], errors: list[float]) -> int:
        """Record one visit of each id; returns the forgetting events of this batch."""
        events = 0
        for i, err in zip(ids, errors):
            learned = err <= self.threshold
            if self.learned_now.get(i) and not learned:
                self.forgotten[i] = self.forgotten.get(i, 0) + 1
                events += 1
            if not learned:
                self.never_learned.add(i)
            self.learned_now[i] = learned
            self.visits[i] = self.visits.get(i, 0) + 1
        return events

    def unforgettable(self) -> set[str]:
        """Ids seen `min_visits` times, learned every time."""
        return {i for i, n in self.visits.items()
                if n >= self.min_visits and i not in self.never_learned and not self.forgotten.get(i)}

    def keep(self, ids: list[str]) -> set[str]:
        """Of `ids`, those to train on: all but the unforgettable, capped at `max_drop` of them
        (the least-visited unforgettable ones stay first: they have the least evidence)."""
        drop = sorted(self.unforgettable() & set(ids), key=lambda i: -self.visits[i])
        drop = drop[: int(self.max_drop * len(ids))]
        return set(ids) - set(drop)

    def state_dict(self) -> dict:
        return {"visits": self.visits, "learned_now": self.learned_now, "forgotten": self.forgotten,
                "never_learned": sorted(self.never_learned)}

    def load_state_dict(self, d: dict) -> None:
        self.visits, self.learned_now, self.forgotten = dict(d["visits"]), dict(d["learned_now"]), dict(d["forgotten"])
        self.never_learned = set(d["never_learned"])
