"""Streaming recogniser (the API docs/TEAM.md fixes; the sherpa-onnx shape).

One `Recogniser` per process holds the model and no per-stream state; each `Stream` holds its
audio buffers, encoder caches, predictor state and tokens. `decode_streams` runs one batched
encoder forward over one chunk of every ready stream, then one batched greedy transducer step
per frame, so many streams cost little more than one on a memory-bound CPU.

Why results come out as they do:
- times: each token is stamped with the encoder frame it was emitted on (80 ms frames); a
  word starts at its first token's frame and ends one frame after its last token's.
- confidence: mean posterior of a word's tokens at emission.
- stable prefix: greedy tokens are never revised, so every word but the last is final (the
  last may still grow by another piece); after `input_finished` everything is stable.
- endpoints: a run of frames with no token (blank) after speech, a long run with none at all,
  or a segment that grows too long.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from compression.store import ModelStore, split_ref
from compression.quantise import apply_compression
from compression.store.manifest import MANIFEST_NAME, Manifest
from decoding.alignment import WordTimeShift, align_words
from decoding.confidence import ConfidenceModel, word_features
from decoding.greedy import Emission, ctc_best_path, greedy_search
from decoding.options import Decoding, DecodingOptions, SearchRequest  # one options object (docs/notes/lm-to-asr.md)
from decoding.recogniser_beam import BeamDecoding  # beam search / LM fusion / hotwords
from decoding.tokenizer import CharTokenizer, Tokenizer
from decoding.vad import FrameLevels
from minutes.types import Alternative, Word
from models.encoder import EncoderState
from models.whisper_encoder import WhisperEncoderState
from models.features import FbankConfig, fbank
from models.transducer import PredictorState, Transducer, load_checkpoint

__all__ = ["Decoding", "DecodingOptions", "Recogniser", "Stream", "StreamResult"]


@dataclass(frozen=True)
class StreamResult:
    text: str
    words: tuple[Word, ...]
    tokens: tuple[int, ...]
    stable_chars: int  # length of the prefix of `text` that will not change


@dataclass
class Stream:
    """One live audio stream's state. Create with `Recogniser.new_stream`."""

    options: DecodingOptions
    enc_state: EncoderState | WhisperEncoderState
    pred_state: PredictorState
    _rec: "Recogniser"
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    feats: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 80))
    frames_done: int = 0  # encoder frames decoded since the stream start
    segment_start: int = 0  # encoder frame where the current segment began
    last_emit: int = -1  # encoder frame of the last token (of any segment)
    emissions: list[Emission] = field(default_factory=list)  # current segment's tokens
    finished: bool = False
    flushed: bool = False  # finished and everything decoded
    ctc_prev: int = 0  # CTC best-path token of the previous frame (blank = 0)
    beam: Any = None  # BeamStream when a transducer stream asks for beam search or hotwords
    chunk_frames: int = 0  # encoder frames per step (a multiple of the model's chunk; set by new_stream)
    alternatives: list[Alternative] = field(default_factory=list)  # the last closed segment's n best
    levels: FrameLevels | None = None  # audio level per encoder frame (the quick endpoint rule)
    ctc_frames: list[torch.Tensor] = field(default_factory=list)  # current segment's CTC log-posteriors (aligned word times)
    final_features: list[list[float] | None] = field(default_factory=list)  # the last closed segment's words' confidence features

    def accept_waveform(self, samples: np.ndarray | list[float]) -> None:
        """Float32 mono at the recogniser's sample rate, any length."""
        if self.finished:
            raise RuntimeError("accept_waveform after input_finished")
        a = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.samples = np.concatenate([self.samples, a]) if self.samples.size else a.copy()
        if self.levels is not None:
            self.levels.accept(a)

    def input_finished(self) -> None:
        self.finished = True

    @property
    def chunk_seconds(self) -> float:
        return self.chunk_frames * self._rec.frame_seconds

    def _words(self) -> list[Word]:
        return self._rec.words(self.emissions, ctc=self._rec.decoder_of(self) == "ctc")

    def result(self) -> StreamResult:
        words = self._words()
        text = " ".join(w.text for w in words)
        stable = len(text) if self.flushed else len(" ".join(w.text for w in words[:-1]))
        if self.beam is not None and not self.flushed:  # beam: only what every hypothesis shares
            n = self._rec.beam.stable_tokens(self)
            stable = min(stable, len(" ".join(w.text for w in self._rec.words(self.emissions[:n])[:-1])))
        return StreamResult(text, tuple(words), tuple(e.token for e in self.emissions), stable)

    def reset_segment(self) -> list[Word]:
        """Close the current segment: its final words; the next segment starts afresh
        (predictor back to the sentence start), times still count from the stream start."""
        n = self.options.alternatives
        if self.beam is not None:
            if n:  # before the beam restarts: its hypotheses are the segment's alternatives
                self.alternatives = self._rec.beam.alternatives(self, n, self._rec.words)
            self.emissions = self._rec.beam.reset(self)
        words, self.final_features = self._rec.final_words_with_features(self)
        words = self._rec.calibrated(words, self.final_features)
        if n and self.beam is None:  # the greedy search's one hypothesis
            score = sum(math.log(max(e.prob, 1e-12)) for e in self.emissions)
            self.alternatives = [Alternative(" ".join(w.text for w in words), 1.0, round(score, 3), tuple(words))] if words else []
        self.emissions = []
        self.ctc_frames = []
        self.segment_start = self.frames_done
        self.pred_state = self._rec.model.initial_predictor_state(1)
        self.ctc_prev = 0
        return words

    # -- internals used by the recogniser ----------------------------------------------------
    def _available_frames(self, cfg: FbankConfig) -> int:
        return self.feats.shape[0] + cfg.num_frames(self.samples.size)

    def _compute_features(self, cfg: FbankConfig) -> None:
        n = cfg.num_frames(self.samples.size)
        if n == 0:
            return
        used = cfg.window + (n - 1) * cfg.shift
        new = fbank(torch.from_numpy(self.samples[:used]), cfg)
        self.samples = self.samples[n * cfg.shift :]
        self.feats = torch.cat([self.feats, new]) if self.feats.numel() else new


class Recogniser:
    """Loaded once per process; `decode_streams` serves any number of streams."""

    def __init__(self, model: Transducer, tokenizer: Tokenizer, manifest: Manifest | None = None,
                 beam: BeamDecoding | None = None) -> None:
        self.model = model.eval()
        self.tok = tokenizer
        self.manifest = manifest  # the store's record of this artefact (None: a bare checkpoint)
        extra = manifest.extra if manifest is not None else {}
        self.fbank_cfg = model.cfg.features  # Kaldi fbank or Whisper log-mel, what the encoder was trained on
        self.sample_rate = self.fbank_cfg.sample_rate
        enc = model.cfg.encoder
        self.subsampling = enc.subsampling  # feature frames per encoder frame
        self.chunk_frames = enc.chunk_frames  # encoder frames per chunk
        self.frame_seconds = model.frame_seconds
        self.chunk_seconds = self.chunk_frames * self.frame_seconds
        # what batch (file) transcription decodes with: a wider chunk, since no one waits for
        # partials there (the manifest's `batch_chunk_seconds`; default the trained chunk)
        self.batch_chunk_seconds = self.chunk_seconds_for(float(extra.get("batch_chunk_seconds") or 0.0))
        # which head decodes by default: the store manifest may say "ctc" when, for a young model,
        # the auxiliary CTC head is the more accurate of the two
        self.default_decoder = extra.get("decoder") or "transducer"
        # constant correction of aligned word times, measured by bench/word_times.py
        self.word_time_shift = WordTimeShift.from_dict(extra.get("word_time_shift"))
        # P(word correct) from decoding features (decoding/confidence.py); None: mean posterior
        self.confidence = ConfidenceModel.from_dict(extra.get("confidence"))
        self.options = DecodingOptions.from_dict(extra.get("decoding"))  # the model's defaults
        self.beam = beam or BeamDecoding(model, tokenizer)
        self._pieces = self.beam.pieces
        if model.cfg.ctc_units == "chars":
            chars = CharTokenizer()
            self._ctc_pieces = [""] + [chars.piece(i) for i in range(1, chars.vocab_size)]
        else:
            self._ctc_pieces = self._pieces

    @classmethod
    def load(cls, path: str | Path, manifest: Manifest | None = None) -> "Recogniser":
        """A store version folder (model.pt beside manifest.json) or a checkpoint file.

        `manifest`: the one `ModelStore.resolve` returned with the folder (already checked);
        without it the folder's own manifest.json is read, typed, when there is one. Which
        version of a name to load is the store's question (`from_store`), not this one's."""
        path = Path(path)
        file = path / "model.pt" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no model.pt at {path} (a store name? use Recogniser.from_store)")
        if manifest is None and (file.parent / MANIFEST_NAME).is_file():
            manifest = Manifest.read(file.parent / MANIFEST_NAME)
        model, blob = load_checkpoint(file)
        if manifest is not None and manifest.compression:
            apply_compression(model, manifest.compression)  # e.g. int8 linear layers (compression/quantise.py)
        tok = Tokenizer(blob["tokenizer"])
        beam = BeamDecoding.for_model_dir(model, tok, file.parent)
        if manifest is not None and manifest.compression.get("int8_search"):
            from compression.int8_search import quantise_search, search_parts

            lm = getattr(beam.search.lm, "lm", None)  # the LSTM LM (an n-gram stays as it is)
            quantise_search(model, lm if isinstance(lm, torch.nn.Module) else None,
                            search_parts(manifest.compression["int8_search"]))
        return cls(model, tok, manifest, beam)

    @classmethod
    def from_store(cls, store: ModelStore | str | Path, ref: str = "default", verify: bool = True) -> "Recogniser":
        """The model `ref` (`name`, its newest version, or `name/version`) of a store, its
        files checked against the manifest's sha256 when `verify`."""
        store = store if isinstance(store, ModelStore) else ModelStore(Path(store))
        folder, manifest = store.resolve(*split_ref(ref), verify=verify)
        return cls.load(folder, manifest)

    def plan(self, hotwords: Sequence[str] = (), hotword_boost: float | None = None,
             search: SearchRequest | None = None, chunk_seconds: float | None = None,
             alternatives: int = 0) -> tuple[DecodingOptions, Decoding]:
        """A stream's options (this model's defaults with the hotwords it can use, the boost
        and the search asked for; `hotword_boost` None keeps the default's) and what will be
        applied, with a warning for everything asked for that it cannot do.

        Why the recogniser decides: whether a hotword can be used depends on the model (its
        CTC head cannot bias; a phrase its tokenizer cannot spell is dropped), and shallow
        fusion needs an external LM the model may not have. `chunk_seconds`: the audio per
        encoder step asked for (None: the model's trained chunk), rounded by `chunk_seconds_for`.
        `alternatives`: n-best hypotheses per final; more than one needs the beam, at least n wide."""
        base = self.options
        decoder = base.decoder or self.default_decoder
        words, warnings = tuple(hotwords), []
        if words and decoder == "ctc":
            warnings.append("this model decodes with its CTC head, which cannot bias towards hotwords; they were ignored")
            words = ()
        if words:
            words, unspellable = self.spellable(words)
            if unspellable:
                warnings.append(f"hotwords the model's vocabulary cannot spell were ignored: {list(unspellable)}")
        options = base
        if search is not None:
            if decoder == "ctc":
                warnings.append("this model decodes with its CTC head; the search options were ignored")
            else:
                options = search.apply(base)
        if options.lm_weight and self.beam.search.lm is None:
            if search is not None and search.lm_weight:
                warnings.append("this model has no external LM; lm_weight was ignored")
            options = replace(options, lm_weight=0.0)
        if options.oov_penalty and self.beam.lexicon is None:
            if search is not None and search.oov_penalty:
                warnings.append("this model has no lexicon; oov_penalty was ignored")
            options = replace(options, oov_penalty=0.0)
        if words:
            options = replace(options, hotwords=words,
                              hotword_boost=base.hotword_boost if hotword_boost is None else float(hotword_boost))
            if search is not None and search.search == "greedy":  # asked for; hotwords override it
                warnings.append("hotwords need alternatives to choose between: the beam search was used")
        if chunk_seconds is not None:
            applied = self.chunk_seconds_for(chunk_seconds)
            if abs(applied - chunk_seconds) > 1e-6:
                warnings.append(f"chunk_seconds {chunk_seconds:g} was rounded to {applied:g}: a multiple of the "
                                f"model's {self.chunk_seconds:g} s chunk, at most {self.MAX_CHUNK_MULTIPLE} of them")
            options = replace(options, chunk_seconds=applied)
        if alternatives:
            options = replace(options, alternatives=alternatives, nbest=alternatives,
                              beam_size=max(options.beam_size, alternatives))
            if alternatives > 1 and decoder == "ctc":
                warnings.append("this model decodes with its CTC head: one alternative only")
            elif alternatives > 1:
                if options.search != "beam" and search is not None and search.search == "greedy":
                    warnings.append(f"{alternatives} alternatives need the beam search: it was used")
                options = replace(options, search="beam")
        beam = decoder != "ctc" and BeamDecoding.wants(options)
        return options, Decoding(decoder, words, options.hotword_boost if words else None, tuple(warnings),
                                 "beam" if beam else "greedy", options.beam_size if beam else None,
                                 options.lm_weight if beam else 0.0, options.ilm_weight if beam else 0.0,
                                 options.oov_penalty if beam else 0.0,
                                 options.chunk_seconds or self.chunk_seconds,
                                 min(options.alternatives, options.beam_size if beam else 1))

    MAX_CHUNK_MULTIPLE = 8  # wider chunks than 8x the trained one were never measured

    def chunk_seconds_for(self, seconds: float) -> float:
        """`seconds` rounded to a multiple of the model's chunk, 1..MAX_CHUNK_MULTIPLE of them
        (0: the model's chunk). Why multiples: chunk boundaries then fall where training's did,
        and the key/value cache (the left context) stays the size it was trained with."""
        k = max(1, min(self.MAX_CHUNK_MULTIPLE, round(seconds / self.chunk_seconds))) if seconds > 0 else 1
        return round(k * self.chunk_seconds, 6)

    def spellable(self, words: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Split phrases into those the tokenizer spells without its unknown piece, and the rest."""
        unk = self.tok.sp.unk_id() + 1  # the transducer's ids are SentencePiece's + 1 (0 is blank)
        ok = tuple(w for w in words if (ids := self.tok.encode(w)) and unk not in ids)
        return ok, tuple(w for w in words if w not in ok)

    def new_stream(self, options: DecodingOptions | None = None) -> Stream:
        s = Stream(
            options=options or self.options,
            enc_state=self.model.initial_encoder_state(1),
            pred_state=self.model.initial_predictor_state(1),
            _rec=self,
        )
        s.chunk_frames = round(self.chunk_seconds_for(s.options.chunk_seconds) / self.frame_seconds)
        if s.options.endpoint_quick_blank > 0:
            s.levels = FrameLevels(int(round(self.frame_seconds * self.sample_rate)))
        if self.decoder_of(s) != "ctc" and BeamDecoding.wants(s.options):
            s.beam = self.beam.new(s.options)
        return s

    def is_ready(self, s: Stream) -> bool:
        if s.flushed:
            return False
        avail = s._available_frames(self.fbank_cfg)
        return avail >= self.subsampling * s.chunk_frames or s.finished

    @torch.no_grad()
    def decode_streams(self, streams: list[Stream]) -> None:
        """One chunk for each ready stream, batched by chunk length."""
        groups: dict[int, list[tuple[Stream, torch.Tensor]]] = {}
        for s in streams:
            if not self.is_ready(s):
                continue
            s._compute_features(self.fbank_cfg)
            usable = (s.feats.shape[0] // self.subsampling) * self.subsampling
            take = min(self.subsampling * s.chunk_frames, usable)
            if s.finished and s.feats.shape[0] - take < self.subsampling:
                s.flushed = True  # this is the last chunk (a shorter tail is dropped, as offline)
            if take == 0:
                continue
            chunk, s.feats = s.feats[:take], s.feats[take:]
            groups.setdefault(take, []).append((s, chunk))
        for take, members in groups.items():
            ss = [m[0] for m in members]
            feats = torch.stack([m[1] for m in members])
            enc, enc_state = self.model.stream_encode(feats, type(ss[0].enc_state).stack([s.enc_state for s in ss]))
            n = enc.shape[1]
            for s, e in zip(ss, enc_state.unstack()):
                s.enc_state = e
            align = [i for i, s in enumerate(ss) if self._aligns(s)]
            if align:  # the CTC head's posteriors, kept until the segment's words are final
                lp = self.model.ctc(enc[align]).log_softmax(-1)
                for j, i in enumerate(align):
                    ss[i].ctc_frames.append(lp[j].clone())  # not a view: the batch's tensor is freed
            ctc = [i for i, s in enumerate(ss) if self.decoder_of(s) == "ctc"]
            if ctc:
                self._ctc_search([ss[i] for i in ctc], enc[ctc])
            rnnt = [i for i in range(len(ss)) if i not in set(ctc)]
            beam = [i for i in rnnt if ss[i].beam is not None]
            if beam:
                self.beam.decode([ss[i] for i in beam], enc[beam], n)
                rnnt = [i for i in rnnt if ss[i].beam is None]
            if rnnt:
                self._transducer_search([ss[i] for i in rnnt], enc[rnnt])
            for s in ss:
                s.frames_done += n

    def _transducer_search(self, ss: list[Stream], enc: torch.Tensor) -> None:
        n = enc.shape[1]
        lengths = torch.full((len(ss),), n)
        hyps, pred = greedy_search(
            self.model, enc, lengths, PredictorState.stack([s.pred_state for s in ss]),
            [s.frames_done for s in ss], max_symbols=ss[0].options.max_symbols_per_frame,
            blank_penalty=self._blank_penalties(ss),
        )
        for s, p, h in zip(ss, pred.unstack(), hyps):
            s.pred_state = p
            s.emissions.extend(h)
            if h:
                s.last_emit = h[-1].frame

    @staticmethod
    def _blank_penalties(ss: list[Stream]) -> torch.Tensor | float:
        """One penalty per stream, or a plain 0 when none asks for one (the joiner loop then
        skips the subtraction on every frame)."""
        pens = [s.options.blank_penalty for s in ss]
        return torch.tensor(pens) if any(pens) else 0.0

    def _ctc_search(self, ss: list[Stream], enc: torch.Tensor) -> None:
        """Best path of the CTC head, carried across chunks (`decoding.greedy.ctc_best_path`)."""
        hyps, last = ctc_best_path(self.model.ctc(enc), [s.ctc_prev for s in ss], [s.frames_done for s in ss])
        for s, h, k in zip(ss, hyps, last):
            s.emissions.extend(h)
            if h:
                s.last_emit = h[-1].frame
            s.ctc_prev = k

    def is_endpoint(self, s: Stream) -> bool:
        o = s.options
        fs = self.frame_seconds
        if s.flushed:
            return True
        since = s.frames_done - max(s.last_emit + 1, s.segment_start)
        if s.emissions and since * fs >= o.endpoint_trailing_blank:
            return True
        # The quick rule: the talker has stopped when the last `endpoint_quick_blank` s of the
        # decoded audio are silent (decoding/vad.py's level test) and the transducer has been
        # blank for 2 frames (a word emitted late, over the silence, may still have tokens to
        # come). The levels are read up to the decoded frames only, so where a segment ends does
        # not depend on how the client cut its audio into messages.
        quick = int(np.ceil(o.endpoint_quick_blank / fs - 1e-9))
        if s.emissions and quick > 0 and since >= 2 and s.levels is not None:
            run = s.levels.trailing_silence(s.frames_done)
            if run is not None and run >= quick:
                return True
        if not s.emissions and since * fs >= o.endpoint_no_speech:
            return True
        return (s.frames_done - s.segment_start) * fs >= o.endpoint_max_segment

    def _aligns(self, s: Stream) -> bool:
        """Whether the stream's segments are aligned on the CTC head: for aligned word times and
        for the confidence features, so whenever the model has a character CTC head."""
        return self.model.cfg.ctc_units == "chars"

    def calibrated(self, words: list[Word], feats: list[list[float] | None]) -> list[Word]:
        """`conf` = P(correct) from the model's calibrator when it has one and the word has
        features (else the mean posterior)."""
        if self.confidence is None:
            return words
        return [w if f is None else replace(w, conf=round(self.confidence.predict(f), 4)) for w, f in zip(words, feats)]

    def final_words_with_features(self, s: Stream) -> tuple[list[Word], list[list[float] | None]]:
        """The words of the segment `s` is closing, with each word's confidence features
        (decoding/confidence.py): times from forced alignment on the CTC head when the stream
        asks for them (decoding/alignment.py, moved by the model's measured shift; emission
        times otherwise, and where the words cannot be aligned), `conf` still the mean posterior
        (`calibrated` applies the model's). The features always come from the alignment (the
        calibrator was fitted on aligned words), whichever times are reported; a word of a
        segment that cannot be aligned has None (it keeps its mean posterior)."""
        groups = self._groups(s.emissions, ctc=self.decoder_of(s) == "ctc")
        words = [self._word(text, g) for text, g in groups]
        spans = None
        if words and s.ctc_frames and self._aligns(s):
            spans = align_words(torch.cat(s.ctc_frames), [w.text for w in words])
        if spans is None:
            return words, [None] * len(words)
        fs, shift, t0 = self.frame_seconds, self.word_time_shift, s.segment_start
        aligned = []
        for w, sp in zip(words, spans):
            start = max(t0 * fs, (t0 + sp.start) * fs + shift.start)  # never before the segment
            end = max(start + 0.01, (t0 + sp.end) * fs + shift.end)
            aligned.append(replace(w, start=round(start, 3), end=round(end, 3)))
        feats: list[list[float] | None] = [
            word_features([e.prob for e in g], len(a.text), a.end - a.start, sp.support)
            for a, (_, g), sp in zip(aligned, groups, spans)]
        return (aligned if s.options.word_times == "aligned" else words), feats

    def decoder_of(self, s: Stream) -> str:
        return s.options.decoder or self.default_decoder

    def words(self, emissions: list[Emission], ctc: bool = False) -> list[Word]:
        """Tokens -> words with emission times (s from stream start) and mean-posterior confidence.
        `ctc`: the emissions are the CTC head's units (characters when it predicts those)."""
        return [self._word(text, g) for text, g in self._groups(emissions, ctc)]

    def _groups(self, emissions: list[Emission], ctc: bool = False) -> list[tuple[str, list[Emission]]]:
        """(word text, its emissions) for every word with letters."""
        pieces = self._ctc_pieces if ctc else self._pieces
        groups: list[list[Emission]] = []
        for e in emissions:
            piece = pieces[e.token]
            if piece.startswith("\u2581") or not groups:
                groups.append([e])
            else:
                groups[-1].append(e)
        out = []
        for g in groups:
            text = "".join(pieces[e.token] for e in g).replace("\u2581", "").strip()
            if text:
                out.append((text, g))
        return out

    def _word(self, text: str, g: list[Emission]) -> Word:
        fs = self.frame_seconds
        return Word(text=text, start=round(g[0].frame * fs, 3), end=round((g[-1].frame + 1) * fs, 3),
                    conf=round(sum(e.prob for e in g) / len(g), 4))

    def transcribe(self, audio: np.ndarray, options: DecodingOptions | None = None,
                   chunk_samples: int | None = None, endpoints: bool = True,
                   features: list[list[float] | None] | None = None) -> list[Word]:
        """Stream a whole signal through one stream as the server does (chunks of
        `chunk_samples`, segments closed at endpoints); returns every final word. `features`:
        a list that receives each final word's confidence features (decoding/confidence.py;
        None for a word of a segment that could not be aligned)."""
        s = self.new_stream(options)
        step = chunk_samples or int(s.chunk_seconds * self.sample_rate)
        words: list[Word] = []

        def drain() -> None:
            while self.is_ready(s):
                self.decode_streams([s])
                if endpoints and not s.flushed and self.is_endpoint(s):
                    close()

        def close() -> None:
            words.extend(s.reset_segment())
            if features is not None:
                features.extend(s.final_features)

        for i in range(0, len(audio), step):
            s.accept_waveform(audio[i : i + step])
            drain()
        s.input_finished()
        drain()
        close()
        return words
