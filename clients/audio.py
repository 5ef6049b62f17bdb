"""Audio sources for the streaming client: a file (any libsndfile format) or a microphone.

A source yields float32 blocks shaped (N, C) at its own sample rate; the server resamples, so
the client never does. `encode` packs a block into the wire format of docs/protocol.md
(interleaved little-endian PCM).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Protocol

import numpy as np
import soundfile as sf

ENCODINGS = ("pcm_s16le", "pcm_f32le")


class AudioSourceError(RuntimeError):
    """The audio cannot be read (bad file, no microphone): a message for the user, no trace."""


class AudioSource(Protocol):
    sample_rate: int
    channels: int
    live: bool  # True: yields in real time by itself (a microphone); the client must not pace it

    def blocks(self, seconds: float) -> AsyncIterator[np.ndarray]:
        """Blocks of about `seconds` each, float32 (N, C) in [-1, 1]."""
        ...


def encode(block: np.ndarray, encoding: str) -> bytes:
    """(N, C) float32 -> interleaved little-endian PCM bytes (N × C samples)."""
    if encoding == "pcm_s16le":
        return (np.clip(block, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
    if encoding == "pcm_f32le":
        return np.ascontiguousarray(block, dtype="<f4").tobytes()
    raise ValueError(f"encoding must be one of {ENCODINGS}, not {encoding!r}")


@dataclass
class FileSource:
    """A sound file read block by block (never whole, so hour-long files stream in constant memory)."""

    path: Path
    start: float = 0.0  # seconds to skip
    duration: float | None = None  # seconds to send at most
    live = False

    def __post_init__(self) -> None:
        try:
            info = sf.info(str(self.path))
        except (RuntimeError, sf.LibsndfileError) as exc:  # libsndfile's own message is clear
            raise AudioSourceError(f"cannot read {self.path}: {exc}") from None
        self.sample_rate = int(info.samplerate)
        self.channels = int(info.channels)
        self.frames = int(info.frames)

    @property
    def seconds(self) -> float:
        total = self.frames / self.sample_rate - self.start
        return max(0.0, min(total, self.duration) if self.duration is not None else total)

    async def blocks(self, seconds: float) -> AsyncIterator[np.ndarray]:
        size = max(1, int(round(seconds * self.sample_rate)))
        remaining = int(round(self.seconds * self.sample_rate))
        with sf.SoundFile(str(self.path)) as fh:
            fh.seek(int(round(self.start * self.sample_rate)))
            while remaining > 0:
                block = fh.read(min(size, remaining), dtype="float32", always_2d=True)
                if len(block) == 0:
                    return
                remaining -= len(block)
                yield block
                await asyncio.sleep(0)


@dataclass
class MicSource:
    """The default (or a named) input device through PortAudio (`sounddevice`)."""

    sample_rate: int = 16000
    channels: int = 1
    device: str | int | None = None
    duration: float | None = None  # stop after this many seconds; None: until cancelled
    live = True

    async def blocks(self, seconds: float) -> AsyncIterator[np.ndarray]:
        try:
            import sounddevice as sd
        except OSError as exc:  # the Python package is there, the C library is not
            raise AudioSourceError(f"--mic needs PortAudio ({exc}); on Debian: apt-get install libportaudio2") from None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[np.ndarray] = asyncio.Queue()

        def callback(indata, frames, time_info, status) -> None:  # PortAudio's thread
            loop.call_soon_threadsafe(queue.put_nowait, indata.copy())

        size = max(1, int(round(seconds * self.sample_rate)))
        try:
            stream = sd.InputStream(
                samplerate=self.sample_rate, channels=self.channels, dtype="float32",
                blocksize=size, device=self.device, callback=callback,
            )
        except Exception as exc:  # sounddevice raises PortAudioError/ValueError for bad devices
            raise AudioSourceError(f"cannot open the microphone: {exc}") from None
        sent = 0
        limit = None if self.duration is None else int(self.duration * self.sample_rate)
        with stream:
            while limit is None or sent < limit:
                block = await queue.get()
                sent += len(block)
                yield block
