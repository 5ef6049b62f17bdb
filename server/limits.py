"""Concurrent-stream slots: a server-wide cap and an optional cap per API key."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Iterator


class StreamSlots:
    """Counts open streams (both WebSocket endpoints) so an extra one is refused cleanly."""

    def __init__(self, max_streams: int, max_per_key: int = 0):
        self.max_streams = max_streams
        self.max_per_key = max_per_key
        self.total = 0
        self.per_key: Counter[str] = Counter()

    def try_acquire(self, key: str | None) -> str | None:
        """None when a slot was taken, else the reason it was refused."""
        if self.total >= self.max_streams:
            return f"the server is at its limit of {self.max_streams} concurrent streams"
        if key is not None and self.max_per_key and self.per_key[key] >= self.max_per_key:
            return f"this API key is at its limit of {self.max_per_key} concurrent streams"
        self.total += 1
        if key is not None:
            self.per_key[key] += 1
        return None

    def release(self, key: str | None) -> None:
        self.total -= 1
        if key is not None:
            self.per_key[key] -= 1
            if self.per_key[key] <= 0:
                del self.per_key[key]

    @contextmanager
    def held(self, key: str | None) -> Iterator[None]:
        try:
            yield
        finally:
            self.release(key)
