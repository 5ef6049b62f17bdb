"""Prometheus metrics of one server (its own registry, so tests can run several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.active = Gauge("minutes_active_streams", "open streams", ["endpoint"], registry=r)
        self.streams = Counter("minutes_streams", "streams opened", ["endpoint"], registry=r)
        self.refused = Counter("minutes_refused_streams", "streams refused", ["reason"], registry=r)
        self.errors = Counter("minutes_errors", "errors sent, by code", ["code"], registry=r)
        self.engine_streams = Gauge("minutes_engine_streams", "streams whose state the decoder holds", registry=r)
        self.queue_depth = Gauge("minutes_queue_depth", "streams with a chunk waiting for the decoder", registry=r)
        self.rtf = Gauge("minutes_rtf", "decoder compute / audio over the last ~10 s", registry=r)
        self.audio = Counter("minutes_audio_seconds", "audio seconds decoded", registry=r)
        self.decode = Histogram("minutes_decode_seconds", "one batched decode call", registry=r,
                                buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0))
        self.batch = Histogram("minutes_decode_batch_size", "streams per batched decode call", registry=r,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.jobs = Gauge("minutes_jobs", "jobs by status", ["status"], registry=r)
        self.transcriptions = Counter("minutes_transcriptions", "synchronous transcriptions served", registry=r)
        for ep in ("stream", "vosk"):
            self.active.labels(ep).set(0)

    def observe_decode(self, batch: int, seconds: float, audio: float) -> None:
        """Called by the engine's worker thread after each batched decode (thread-safe)."""
        self.decode.observe(seconds)
        self.batch.observe(batch)
        self.audio.inc(audio)

    def error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
