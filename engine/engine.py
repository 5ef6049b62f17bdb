"""`Engine`: models from the store, the batching worker, and per-stream pipelines.

Built once when the server starts. Loading the default model happens in the background so the
server answers `/healthz` at once and `/readyz` says 503 until (unless) a model is loaded.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np

from compression.store import ModelStore, StoreError, UnknownModelError, split_ref, version_key
from compression.store.manifest import Manifest
from engine.config import EngineConfig
from engine.display import Punctuates
from engine.spec import StreamSpec
from engine.protocols import Diarises, DiariserStream, Recognises
from engine.stream import EngineStream, Sink
from engine.worker import BatchWorker, DecodeObserver

log = logging.getLogger("minutes.engine")


class EngineError(Exception):
    """A request the engine cannot serve; `code` is the protocol's error code."""

    code = "internal"


class ModelUnavailable(EngineError):
    code = "model_unavailable"


class UnknownModel(EngineError):
    code = "unknown_model"


@dataclass
class LoadedModel:
    """A recogniser loaded from the store, shared by every stream that uses it."""

    name: str
    manifest: Manifest
    recogniser: Recognises  # decoding.recogniser.Recogniser

    @property
    def ref(self) -> str:
        """`name/version`: the store's address of exactly this artefact."""
        return f"{self.name}/{self.manifest.version}"


class Engine:
    def __init__(self, config: EngineConfig, observer: DecodeObserver | None = None):
        self.store = ModelStore(config.store)
        if config.latency_budget > 0:  # the budget names the model: from here on it is `model`
            from compression.store.select import choose_by_budget
            from minutes.config import ConfigError

            try:
                chosen = choose_by_budget(self.store, config.latency_budget)
            except StoreError as exc:  # a setting no model meets: say so at start-up, not per stream
                raise ConfigError(f"latency_budget: {exc}") from exc
            log.info("latency budget RTF %g: serving %s (RTF %g, WER %.2f %% on real speech)",
                     config.latency_budget, chosen.ref, chosen.rtf, chosen.wer)
            config = replace(config, model=chosen.ref)
        self.config = config
        # One decoder thread per core you give it: each batches its own streams (torch ops
        # release the GIL, so two decoders use two cores); a stream stays on one decoder.
        self.workers = [BatchWorker(config.max_batch, config.loop_interval_ms, observer, on_start=self._thread_setup)
                        for _ in range(config.decoders)]
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()  # "name/version" -> model
        self._aliases: dict[str, str] = {}  # a bare name -> the "name/version" it meant when loaded
        self._load_lock = threading.Lock()
        self._diariser: Diarises | None = None
        self.diarisation_reason = "diarisation is off in the server's configuration"
        self.punctuator: Punctuates | None = None  # models.punctuation.Punctuator, shared by every stream
        self.punctuation_reason = "punctuation is off in the server's configuration"
        self.status = "starting"  # starting | loading | ready | no_model
        self.reason = "starting"
        self._started = False

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker and load the default model in the background."""
        if self._started:
            return
        self._started = True
        for w in self.workers:
            w.start()
        threading.Thread(target=self._load_default, name="minutes-model-loader", daemon=True).start()

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def _thread_setup(self) -> None:
        pass  # torch threads are set when torch is first imported (in _load)

    def _load_default(self) -> None:
        self.status, self.reason = "loading", f"loading model {self.config.model!r}"
        try:
            self.model(self.config.model)
        except EngineError as exc:
            self.status, self.reason = "no_model", f"no model loaded: {exc}"
            log.warning("no model loaded: %s (the server runs; /readyz answers 503)", exc)
            return
        self._setup_punctuator()  # before "ready": a stream opened then must already be punctuated
        self.status = "ready"
        self.reason = f"model {self.config.model!r} loaded"
        self._setup_diariser()

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    # -- models ----------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        out = []
        for m in self.store.list():
            d = m.summary()
            loaded = sorted({k.split("/", 1)[1] for k in self._models if k.split("/", 1)[0] == m.name}, key=version_key)
            d["loaded"] = m.version in loaded  # this (the newest) version is loaded
            d["loaded_versions"] = loaded
            versions = self.store.versions(m.name)
            if len(versions) > 1:
                d["versions"] = versions
            out.append(d)
        return out

    def loaded(self, ref: str) -> bool:
        """Whether `ref` (`name` or `name/version`) is served without loading anything."""
        return self._aliases.get(ref, ref) in self._models

    def model(self, ref: str | None = None) -> LoadedModel:
        """The loaded model `ref` (`name` or `name/version`; the default when None), loading it
        if needed (blocking). A bare name means its newest version when it is first loaded, and
        keeps meaning that one while it stays loaded (a version published later does not swap
        the model under running streams); `name` and `name/version` of the same artefact share
        one recogniser, so their streams batch together."""
        ref = ref or self.config.model
        loaded = self._models.get(self._aliases.get(ref, ref))  # fast path without the lock: a load
        if loaded is not None:  # of another model may hold it for seconds, and the event loop must not wait
            return loaded
        with self._load_lock:
            key = self._aliases.get(ref, ref)
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            name, version, manifest = self._manifest(ref)
            key = f"{name}/{manifest.version}"
            loaded = self._models.get(key) or self._load(name, manifest.version)
            self._models[key] = loaded
            self._models.move_to_end(key)
            if version is None:
                self._aliases[name] = key
            default = self._aliases.get(self.config.model, self.config.model)
            for old in [k for k in self._models if k != default][: max(0, len(self._models) - self.config.max_models)]:
                del self._models[old]  # least recently used first; the default stays; open streams keep theirs alive
                for alias in [a for a, k in self._aliases.items() if k == old]:
                    del self._aliases[alias]
                log.info("model %s unloaded (max_models=%d)", old, self.config.max_models)
            return loaded

    def _manifest(self, ref: str) -> tuple[str, str | None, Manifest]:
        """(name, the version asked for or None, the manifest it resolves to). The server's own
        model missing is `ModelUnavailable`; any other name or version the store lacks (or a
        malformed reference) is `UnknownModel`: an `unknown_model` error for that request."""
        missing = ModelUnavailable if ref == self.config.model else UnknownModel
        try:
            name, version = split_ref(ref)
        except StoreError as exc:
            raise missing(str(exc)) from exc
        try:
            return name, version, self.store.manifest(name, version)
        except UnknownModelError as exc:
            raise missing(str(exc)) from exc
        except StoreError as exc:  # in the store but unreadable (its manifest)
            raise ModelUnavailable(str(exc)) from exc

    def _load(self, name: str, version: str) -> LoadedModel:
        try:
            folder, manifest = self.store.resolve(name, version, verify=self.config.verify_checksums)
        except StoreError as exc:  # a checksum mismatch, or the folder vanished since _manifest
            raise ModelUnavailable(str(exc)) from exc
        t0 = time.perf_counter()
        try:
            import torch

            torch.set_num_threads(self.config.threads)
            from decoding.recogniser import Recogniser

            rec = Recogniser.load(folder, manifest)  # the folder and manifest the store checked
        except Exception as exc:  # an artefact the recogniser cannot read is "unavailable", not a crash
            log.exception("loading model %s/%s failed", name, manifest.version)
            raise ModelUnavailable(f"model {name!r} could not be loaded: {exc}") from exc
        log.info("model %s/%s loaded in %.1fs (%s)", name, manifest.version, time.perf_counter() - t0,
                 manifest.architecture)
        return LoadedModel(name, manifest, rec)

    # -- punctuation -----------------------------------------------------------------------
    def _setup_punctuator(self) -> None:
        """Load the punctuator; without one, streams get the recogniser's tokens and a warning."""
        if not self.config.punctuator:
            return
        try:
            name, version = split_ref(self.config.punctuator)
            folder, manifest = self.store.resolve(name, version, verify=self.config.verify_checksums)
            from models.punctuation import Punctuator

            self.punctuator = Punctuator.load(folder)
            self.punctuation_reason = ""
            log.info("punctuator %s/%s loaded", name, manifest.version)
        except Exception as exc:  # a server without the punctuator still transcribes
            log.warning("no punctuator: %s (finals stay in the recogniser's normalised text)", exc)
            self.punctuation_reason = f"punctuation is not available on this server: {exc}"

    def text_format(self, spec: StreamSpec) -> tuple[str, str | None]:
        """The text format a stream gets and, when it differs from what was asked, why."""
        if spec.format == "display" and self.punctuator is None:
            return "raw", self.punctuation_reason or "punctuation is not available on this server"
        return spec.format, None

    # -- diarisation -----------------------------------------------------------------------
    def _setup_diariser(self) -> None:
        if not self.config.diarisation:
            return
        try:
            from diarisation.online import OnlineConfig, OnlineDiariser
        except Exception as exc:
            self.diarisation_reason = f"diarisation is not available on this server ({exc.__class__.__name__})"
            return
        try:
            self._diariser = OnlineDiariser(OnlineConfig())
            self.diarisation_reason = ""
        except Exception as exc:
            log.exception("online diariser could not be built")
            self.diarisation_reason = f"diarisation is not available on this server: {exc}"

    @property
    def diarisation_available(self) -> bool:
        return self._diariser is not None

    # -- streams ---------------------------------------------------------------------------
    def open_stream(self, spec: StreamSpec, sink: Sink, keep_turns: bool = False) -> EngineStream:
        """A new stream on the worker. Blocking when the model must first be loaded.
        `keep_turns`: the diariser keeps speaker turns for the `End` (files); a live stream's
        diariser keeps only a rolling window, so its memory stays flat for hours."""
        if spec.model is None and not self.ready:
            raise ModelUnavailable(self.reason)
        model = self.model(spec.model)
        diariser = None
        if spec.diarisation and self._diariser is not None and spec.geometry is not None:
            diariser = self._new_diariser_stream(spec, model.recogniser.sample_rate, keep_turns)
        fmt, _ = self.text_format(spec)
        display = None
        if fmt == "display":
            from engine.display import DisplayWriter

            display = DisplayWriter(self.punctuator)
        stream = EngineStream(uuid.uuid4().hex[:16], spec, model, sink, diariser, display,
                              self.config.split_at_speaker_changes)
        worker = min(self.workers, key=lambda w: w.active)
        stream.worker = worker
        worker.add(stream)
        return stream

    def _new_diariser_stream(self, spec: StreamSpec, rate: int, keep_turns: bool) -> DiariserStream:
        assert self._diariser is not None and spec.geometry_array is not None
        return self._diariser.new_stream(spec.geometry_array, rate, memory=self.config.diariser_memory_seconds,
                                         keep_turns=keep_turns)

    def transcribe_source(self, spec: StreamSpec, source: Iterator[np.ndarray], sink: Sink) -> EngineStream:
        """A stream fed from an iterator of (N, C) blocks (a file), finished when it runs dry."""
        stream = self.open_stream(spec, sink, keep_turns=True)
        stream.feed_from(source)
        stream.finish("stop")
        stream.worker.notify()
        return stream

    def notify(self) -> None:
        for w in self.workers:
            w.notify()

    @property
    def active_streams(self) -> int:
        return sum(w.active for w in self.workers)

    @property
    def queue_depth(self) -> int:
        return sum(w.queue_depth for w in self.workers)

    def rtf(self) -> float:
        """Compute seconds per audio second, summed over decoders (2 decoders at 0.5 each = 1.0)."""
        return sum(w.rtf() for w in self.workers)

