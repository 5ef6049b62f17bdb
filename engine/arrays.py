"""Microphone-array presets and geometry checks.

The presets follow DESIGN.md: `circular-7` is 6 mics on a 4.25 cm radius, the first on +x,
counter-clockwise, plus the centre mic last; `linear-4` is 4 mics 4 cm apart on the x axis.
Geometry is (M, 3) in metres relative to the array centre. If `corpus/arrays.py` defines the
same presets (the corpus engineer's simulation), those are used so the two cannot drift.
"""

from __future__ import annotations

import math

import numpy as np


def _circular(n: int, radius: float, centre: bool) -> list[list[float]]:
    mics = [[radius * math.cos(2 * math.pi * k / n), radius * math.sin(2 * math.pi * k / n), 0.0] for k in range(n)]
    if centre:
        mics.append([0.0, 0.0, 0.0])
    return [[round(v, 6) + 0.0 for v in m] for m in mics]


def _linear(n: int, spacing: float) -> list[list[float]]:
    offset = (n - 1) / 2
    return [[round((k - offset) * spacing, 6), 0.0, 0.0] for k in range(n)]


PRESETS: dict[str, list[list[float]]] = {
    "circular-7": _circular(6, 0.0425, centre=True),
    "linear-4": _linear(4, 0.04),
    "mono": [[0.0, 0.0, 0.0]],
}

try:  # prefer the corpus's definitions when they exist, so simulation and serving agree
    from corpus import arrays as _corpus_arrays  # type: ignore[attr-defined]

    for _name in ("circular-7", "linear-4"):
        _geom = getattr(_corpus_arrays, "PRESETS", {}).get(_name)
        if _geom is not None:
            PRESETS[_name] = np.round(np.asarray(_geom, dtype=float).reshape(-1, 3), 6).tolist()
except ImportError:
    pass

MAX_ABS_METRES = 10.0


class GeometryError(ValueError):
    """The array description is not usable."""


def resolve_array(array: object, channels: int | None) -> tuple[str | None, np.ndarray | None]:
    """(preset name or None, (M, 3) geometry or None) from a preset name or a list of [x, y, z].

    `channels`, when given, must equal M.
    """
    if array is None:
        return None, None
    preset = None
    if isinstance(array, str):
        if array not in PRESETS:
            raise GeometryError(f"unknown array preset {array!r}; known: {sorted(PRESETS)}")
        preset, array = array, PRESETS[array]
    if not isinstance(array, (list, tuple)) or not array:
        raise GeometryError("array must be a preset name or a non-empty list of [x, y, z]")
    rows = []
    for i, mic in enumerate(array):
        if not isinstance(mic, (list, tuple)) or len(mic) != 3:
            raise GeometryError(f"array[{i}] must be [x, y, z]")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in mic):
            raise GeometryError(f"array[{i}] must hold numbers")
        if not all(math.isfinite(v) and abs(v) <= MAX_ABS_METRES for v in mic):
            raise GeometryError(f"array[{i}] must hold finite metres within ±{MAX_ABS_METRES}")
        rows.append([float(v) for v in mic])
    geometry = np.asarray(rows, dtype=np.float64)
    if channels is not None and len(geometry) != channels:
        raise GeometryError(f"array has {len(geometry)} mics but the stream has {channels} channels")
    return preset, geometry
