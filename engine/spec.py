"""`StreamSpec`: what a stream is (audio format, array, options), validated once at `start`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from decoding.options import SearchRequest


@dataclass(frozen=True)
class StreamSpec:
    sample_rate: int  # of the audio the client sends
    encoding: str = "pcm_s16le"  # pcm_s16le | pcm_f32le
    channels: int = 1
    preset: str | None = None  # array preset name, when one was given
    geometry: tuple[tuple[float, float, float], ...] | None = None  # (M, 3) metres
    partials: bool = True
    hotwords: tuple[str, ...] = ()  # normalised phrases to bias the search towards
    hotword_boost: float | None = None  # log-score bonus per matched token; None: the model's default
    diarisation: bool = False  # asked for; the engine may not have it
    model: str | None = None  # None: the server's default
    channel: str | int = "mean"  # what the recogniser hears: mean of channels, or one index
    format: str = "display"  # display: cased and punctuated words | raw: the recogniser's tokens
    search: SearchRequest | None = None  # greedy/beam and fusion weights asked for; None: the model's defaults
    chunk_seconds: float | None = None  # audio per encoder step asked for; None: the model's (batch one for files)
    file: bool = False  # a whole file (REST), not a live stream: decoded with the model's batch chunk
    alternatives: int = 0  # n-best hypotheses on each final (0: none)
    word_times: str | None = None  # finals' word times asked for: "aligned" | "emission"; None: the model's default

    @property
    def geometry_array(self) -> np.ndarray | None:
        return None if self.geometry is None else np.asarray(self.geometry, dtype=np.float64)
