"""Audio front end of a stream: PCM bytes → float frames, channel choice, streaming resampling.

Numpy/scipy only (no torch), so the server can validate frames with the same code.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import firwin, resample_poly

ENCODINGS = {"pcm_s16le": np.dtype("<i2"), "pcm_f32le": np.dtype("<f4")}


class AudioFormatError(ValueError):
    """A binary message that is not valid audio for the stream; `code` is the protocol's."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def frame_bytes(encoding: str, channels: int) -> int:
    return ENCODINGS[encoding].itemsize * channels


def decode_pcm(data: bytes, encoding: str, channels: int) -> np.ndarray:
    """Interleaved little-endian PCM → float32 (N, channels) in [-1, 1].

    Raises `AudioFormatError` (`bad_frame`, `bad_audio`) rather than guessing: a byte count
    that is not a whole number of frames means the client and server disagree on the format.
    """
    size = frame_bytes(encoding, channels)
    if len(data) == 0 or len(data) % size:
        raise AudioFormatError("bad_frame", f"{len(data)} bytes is not a whole number of {size}-byte frames "
                                            f"({channels} channel(s) of {encoding})")
    samples = np.frombuffer(data, dtype=ENCODINGS[encoding])
    if encoding == "pcm_s16le":
        out = samples.astype(np.float32) / 32768.0
    else:
        out = samples.astype(np.float32)
        if not np.isfinite(out).all():
            raise AudioFormatError("bad_audio", "pcm_f32le samples must be finite (found NaN or inf)")
    return out.reshape(-1, channels)


def select_channel(frames: np.ndarray, channel: str | int) -> np.ndarray:
    """(N, C) → (N,): the mean of the channels, or one of them."""
    if channel == "mean":
        return frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0].copy()
    return np.ascontiguousarray(frames[:, int(channel)])


class StreamingResampler:
    """Polyphase resampling of an unbounded stream, chunk by chunk, equal to one-shot
    `scipy.signal.resample_poly` over the whole signal.

    Why not call `resample_poly` on each chunk: its zero padding at both ends of every chunk
    would put a click at each chunk boundary. Here each call keeps `context` input samples of
    history and holds back `context` of look-ahead (a multiple of `down`, at least the filter's
    half-length), so every output sample sees exactly the input the one-shot filter sees.
    Latency: `context` input samples (≈ 10 ms at 44.1 kHz → 16 kHz).
    Works on (N,) or (N, C) float arrays.
    """

    def __init__(self, in_rate: int, out_rate: int):
        g = math.gcd(int(in_rate), int(out_rate))
        self.up, self.down = int(out_rate) // g, int(in_rate) // g
        self.identity = self.up == self.down
        self._history: np.ndarray | None = None
        self._pending: np.ndarray | None = None
        self._shape: tuple[int, ...] = ()  # trailing (channel) shape of the input
        if self.identity:
            return
        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate  # resample_poly's default design
        self.filter = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0))
        half_in = math.ceil(half_len / self.up) + 1
        self.context = math.ceil(half_in / self.down) * self.down

    def _resample(self, x: np.ndarray) -> np.ndarray:
        return resample_poly(x, self.up, self.down, axis=0, window=self.filter).astype(np.float32)

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed input samples; return the output samples that are now final."""
        x = np.asarray(x, dtype=np.float32)
        self._shape = x.shape[1:]
        if self.identity:
            return x
        if self._history is None:
            self._history = np.zeros((self.context,) + x.shape[1:], dtype=np.float32)
            self._pending = x[:0]
        self._pending = np.concatenate([self._pending, x])
        n = (len(self._pending) - self.context) // self.down * self.down
        if n <= 0:
            return np.zeros((0,) + x.shape[1:], dtype=np.float32)
        window = np.concatenate([self._history, self._pending[: n + self.context]])
        y = self._resample(window)
        k = self.context * self.up // self.down
        out = y[k : k + n * self.up // self.down]
        done = np.concatenate([self._history, self._pending[:n]])
        self._history = done[-self.context :]
        self._pending = self._pending[n:]
        return out

    def flush(self) -> np.ndarray:
        """End of input: the remaining output, as the one-shot resampler's zero padding gives."""
        if self.identity or self._pending is None or len(self._pending) == 0:
            return np.zeros((0,) + self._shape, dtype=np.float32)
        rest = len(self._pending)
        pad = (-rest) % self.down + self.context
        tail = np.zeros((pad,) + self._pending.shape[1:], dtype=np.float32)
        window = np.concatenate([self._history, self._pending, tail])
        y = self._resample(window)
        k = self.context * self.up // self.down
        out = y[k : k + math.ceil(rest * self.up / self.down)]
        self._pending = self._pending[:0]
        return out
