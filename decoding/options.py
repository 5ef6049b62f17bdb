"""Decoding options: one frozen dataclass that picks the search and its scorers.

Options arrive per request (the `start` message of a stream, or a REST call), so nothing in
them may require reloading a model: the LM is loaded once with the recogniser, and λ's,
hotwords and beam size only change how hypotheses are scored. Per-call overrides go through
`dataclasses.replace` (or `DecodingOptions.from_dict`), in the manner of whisper's options.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["Decoding", "DecodingOptions", "SEARCHES", "SearchRequest"]

SEARCHES = ("greedy", "beam")
WORD_TIMES = ("aligned", "emission")


@dataclass(frozen=True)
class DecodingOptions:
    """How to search the transducer's output lattice for one stream."""

    decoder: str = ""  # "transducer" | "ctc" (the auxiliary head); "" = the model's default
    search: str = "greedy"  # transducer search: "greedy" | "beam" (modified beam search, one symbol per frame)
    beam_size: int = 4  # hypotheses kept per stream after every frame
    nbest: int = 1  # hypotheses returned by `result()` / the n-best list (≤ beam_size)
    alternatives: int = 0  # n-best hypotheses attached to each closed segment (0 = none)
    lm_weight: float = 0.0  # λ_T: shallow fusion weight of the external LM, + λ_T log P_LM(y)
    ilm_weight: float = 0.0  # λ_I: internal-LM estimate subtracted, − λ_I log P_ILM(y) (ILME)
    length_reward: float = 0.0  # added per emitted token; offsets the LM's bias to short outputs
    hotwords: tuple[str, ...] = ()  # words/phrases to boost (normalised text), per session
    # log-score bonus per matched token of a hotword. The one default of the option: the
    # `start` message's `hotword_boost`, the REST field and the trie all take this name and this
    # value when none is given (bench/results/lm_fusion.md measured 1-2 as the safe range)
    hotword_boost: float = 2.0
    # Beam only: log-score paid once by each word of a hypothesis that is not in the lexicon
    # (decoding/lexicon.py; the model's lexicon.txt.gz plus `vocabulary` and the hotwords);
    # 0 = no lexicon. A model's default in its manifest.
    oov_penalty: float = 0.0
    vocabulary: tuple[str, ...] = ()  # words this session adds to the lexicon (names, jargon)
    # Audio per encoder step, a multiple of the model's trained chunk (0 = that chunk). Wider
    # chunks see more context (fewer errors) and cost less per second, but partials come later:
    # a live stream's latency choice, and what batch transcription uses (bench/results/asr_chunks.md).
    chunk_seconds: float = 0.0
    max_symbols_per_frame: int = 3  # greedy only: cap on emissions in one encoder frame
    blank_penalty: float = 0.0  # subtracted from the blank logit (fewer deletions); a model's default in its manifest
    # Endpointing (the recogniser's rules; here so one options object describes a stream).
    endpoint_trailing_blank: float = 1.0  # s without a token after a word -> endpoint
    # s of silence heard after a word (decoding/vad.py's level test on the audio received) ->
    # endpoint; 0 turns the rule off and finals wait for endpoint_trailing_blank
    endpoint_quick_blank: float = 0.16
    endpoint_no_speech: float = 5.0  # s without any token in the segment -> endpoint
    endpoint_max_segment: float = 20.0  # s: a segment this long is closed
    # Times of final words: "aligned" = forced alignment of the segment's text on the CTC head
    # (decoding/alignment.py); "emission" = the frames the search emitted them at (what partials
    # always carry)
    word_times: str = "aligned"

    def __post_init__(self) -> None:
        if self.search not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}, got {self.search!r}")
        if self.beam_size < 1 or self.nbest < 1:
            raise ValueError("beam_size and nbest must be ≥ 1")
        if self.nbest > self.beam_size:
            object.__setattr__(self, "nbest", self.beam_size)  # (plan() widens the beam for alternatives first)
        if self.lm_weight < 0 or self.ilm_weight < 0 or self.hotword_boost < 0:
            raise ValueError("lm_weight, ilm_weight and hotword_boost must be ≥ 0")
        if self.alternatives < 0:
            raise ValueError("alternatives must be ≥ 0")
        if self.word_times not in WORD_TIMES:
            raise ValueError(f"word_times must be one of {WORD_TIMES}, got {self.word_times!r}")
        if self.oov_penalty < 0 or self.chunk_seconds < 0:
            raise ValueError("oov_penalty and chunk_seconds must be ≥ 0")
        for name in ("hotwords", "vocabulary"):
            value = getattr(self, name)
            if isinstance(value, (list, str)):
                object.__setattr__(self, name, tuple([value] if isinstance(value, str) else value))

    @property
    def uses_lm(self) -> bool:
        return self.lm_weight > 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hotwords"] = list(self.hotwords)
        d["vocabulary"] = list(self.vocabulary)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, base: "DecodingOptions | None" = None) -> "DecodingOptions":
        """Options from a JSON-ready dict (unknown keys ignored), over `base` if given."""
        base = base or cls()
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in (data or {}).items() if k in names}
        for name in ("hotwords", "vocabulary"):
            if name in kw:
                kw[name] = tuple(kw[name] or ())
        return replace(base, **kw)


@dataclass(frozen=True)
class SearchRequest:
    """What a client asked of the search (a stream's `options.search`, the REST `search`
    field); a None field keeps the model's default. Validated by the server's protocol module;
    the recogniser's `plan` decides what of it the model can do."""

    search: str | None = None  # "greedy" | "beam"
    beam_size: int | None = None
    lm_weight: float | None = None  # λ_T, shallow fusion with the model's external LM
    ilm_weight: float | None = None  # λ_I, the internal-LM estimate subtracted (ILME)
    oov_penalty: float | None = None  # per non-word (decoding/lexicon.py); 0 turns the lexicon off

    def apply(self, base: DecodingOptions) -> DecodingOptions:
        """`base` with this request's choices; greedy drops the fusion weights (they need the beam).

        The model's per-token `length_reward` offsets its LM's average cost per piece at the
        tuned λ's (bench/asr_lm.py), so it follows the fusion weights asked for: it scales with
        the net LM weight λ_T − λ_I, and is 0 when fusion is switched off. Without that, a
        client asking `{"lm_weight": 0}` would keep a bonus that now only inserts words."""
        if self.search == "greedy":
            return replace(base, search="greedy", lm_weight=0.0, ilm_weight=0.0, length_reward=0.0, oov_penalty=0.0)
        kw: dict[str, Any] = {"search": self.search or base.search}
        for name in ("beam_size", "lm_weight", "ilm_weight", "oov_penalty"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        if base.length_reward and (self.lm_weight is not None or self.ilm_weight is not None):
            net_base = base.lm_weight - base.ilm_weight
            net = kw.get("lm_weight", base.lm_weight) - kw.get("ilm_weight", base.ilm_weight)
            kw["length_reward"] = base.length_reward * max(net, 0.0) / net_base if net_base > 0 else 0.0
        return replace(base, **kw)


@dataclass(frozen=True)
class Decoding:
    """How a stream is decoded, as applied (echoed in `ready` and REST results).

    Made by `Recogniser.plan` from what the client asked for: the model decides which hotwords
    it can use, so the answer says what was applied and why anything was not."""

    decoder: str  # "transducer" | "ctc"
    hotwords: tuple[str, ...] = ()  # normalised phrases the search is biased towards
    hotword_boost: float | None = None  # log-score bonus per matched token (None without hotwords)
    warnings: tuple[str, ...] = ()  # why asked-for hotwords were not applied
    search: str = "greedy"  # "greedy" | "beam" (hotwords need the beam: alternatives to choose between)
    beam_size: int | None = None  # with search "beam"
    lm_weight: float = 0.0  # λ_T applied (0: no external LM in the search)
    ilm_weight: float = 0.0  # λ_I applied
    oov_penalty: float = 0.0  # per word outside the model's lexicon (0: no lexicon in the search)
    chunk_seconds: float = 0.0  # audio per encoder step for this stream (the `ready` message's chunk_seconds)
    alternatives: int = 0  # n-best hypotheses attached to each final (0: none)

    def to_dict(self) -> dict[str, Any]:
        return {"decoder": self.decoder, "search": self.search, "beam_size": self.beam_size,
                "lm_weight": self.lm_weight, "ilm_weight": self.ilm_weight, "oov_penalty": self.oov_penalty,
                "chunk_seconds": self.chunk_seconds, "alternatives": self.alternatives,
                "hotwords": list(self.hotwords), "hotword_boost": self.hotword_boost}
