"""Microphone-array presets, the azimuth convention, and checks on a described array.

The one home of the geometry every package shares (DESIGN.md): the corpus renders rooms onto
these arrays, the diariser localises on them, the server accepts their names in a `start`
message or an upload. Pure numpy, no torch, so anything may import it.

Geometry is a (M, 3) array of mic [x, y, z] in metres relative to the array centre. Azimuth is
in degrees, counter-clockwise from the array's +x axis, in [0, 360).

- `circular-7`: 6 mics on a 4.25 cm radius, the first on +x, counter-clockwise, the centre mic last;
- `linear-4`: 4 mics 4 cm apart along x, centred (-6, -2, +2, +6 cm);
- `mono`: one mic at the centre (a single-channel stream that still names an array).
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Mapping

import numpy as np

__all__ = [
    "PRESETS", "preset_names", "geometry", "preset_rows", "reference_mic", "azimuth_deg",
    "GeometryError", "resolve_array", "MAX_ABS_METRES",
]


def _circular7(radius: float = 0.0425) -> np.ndarray:
    a = np.arange(6) * np.pi / 3  # first mic on +x, counter-clockwise
    ring = np.stack([radius * np.cos(a), radius * np.sin(a), np.zeros(6)], axis=1)
    return np.vstack([ring, np.zeros((1, 3))])  # centre mic last


def _linear4(spacing: float = 0.04) -> np.ndarray:
    x = (np.arange(4) - 1.5) * spacing
    return np.stack([x, np.zeros(4), np.zeros(4)], axis=1)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)  # shared by every importer: nobody may move a mic under the others
    return a


PRESETS: Mapping[str, np.ndarray] = MappingProxyType({
    "circular-7": _frozen(_circular7()),
    "linear-4": _frozen(_linear4()),
    "mono": _frozen(np.zeros((1, 3))),
})
# The channel kept when a corpus stores one channel: the centre mic where there is one.
_REFERENCE = {"circular-7": 6, "linear-4": 1, "mono": 0}

MAX_ABS_METRES = 10.0  # a described mic farther than this from the centre is a unit mistake


def preset_names() -> list[str]:
    return sorted(PRESETS)


def geometry(name: str) -> np.ndarray:
    """(M, 3) mic positions in metres for a preset name (a writable copy: callers may mutate it)."""
    try:
        return PRESETS[name].copy()
    except KeyError:
        raise ValueError(f"unknown array preset {name!r}; known: {preset_names()}") from None


def preset_rows(name: str) -> list[list[float]]:
    """A preset as JSON-ready rows rounded to the micrometre: what the server lists and what a
    named preset resolves to (so `-0.0425, 5.2e-18` reads as `-0.0425, 0.0` on the wire)."""
    return [[round(float(v), 6) + 0.0 for v in mic] for mic in PRESETS[name]]


def reference_mic(name: str) -> int:
    return _REFERENCE[name]


def azimuth_deg(rel: np.ndarray) -> np.ndarray | float:
    """Azimuth of position(s) relative to the array centre: degrees CCW from +x, in [0, 360)."""
    rel = np.asarray(rel, dtype=float)
    az = np.degrees(np.arctan2(rel[..., 1], rel[..., 0])) % 360.0
    return float(az) if az.ndim == 0 else az


class GeometryError(ValueError):
    """The array description is not usable."""


def resolve_array(array: object, channels: int | None) -> tuple[str | None, np.ndarray | None]:
    """(preset name or None, (M, 3) float64 geometry or None) from a preset name or a list of
    [x, y, z] in metres, as a client sends it. `channels`, when given, must equal M."""
    if array is None:
        return None, None
    preset = None
    if isinstance(array, str):
        if array not in PRESETS:
            raise GeometryError(f"unknown array preset {array!r}; known: {preset_names()}")
        preset, array = array, preset_rows(array)
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
    geom = np.asarray(rows, dtype=np.float64)
    if channels is not None and len(geom) != channels:
        raise GeometryError(f"array has {len(geom)} mics but the stream has {channels} channels")
    return preset, geom
