"""Microphone array presets and the azimuth convention (DESIGN.md).

Geometry is a (M, 3) array of mic [x, y, z] in metres relative to the array centre. Azimuth
is in degrees, counter-clockwise from the array's +x axis, in [0, 360).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PRESETS", "geometry", "reference_mic", "azimuth_deg", "preset_names"]


def _circular7(radius: float = 0.0425) -> np.ndarray:
    a = np.arange(6) * np.pi / 3  # first mic on +x, counter-clockwise
    ring = np.stack([radius * np.cos(a), radius * np.sin(a), np.zeros(6)], axis=1)
    return np.vstack([ring, np.zeros((1, 3))])  # centre mic last


def _linear4(spacing: float = 0.04) -> np.ndarray:
    x = (np.arange(4) - 1.5) * spacing  # along +x, centred: -6, -2, +2, +6 cm
    return np.stack([x, np.zeros(4), np.zeros(4)], axis=1)


PRESETS: dict[str, np.ndarray] = {"circular-7": _circular7(), "linear-4": _linear4()}
# The channel kept when a corpus stores one channel: the centre mic where there is one.
_REFERENCE = {"circular-7": 6, "linear-4": 1}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def geometry(name: str) -> np.ndarray:
    """(M, 3) mic positions in metres for a preset name (a copy: callers may mutate it)."""
    try:
        return PRESETS[name].copy()
    except KeyError:
        raise ValueError(f"unknown array preset {name!r}; known: {preset_names()}") from None


def reference_mic(name: str) -> int:
    return _REFERENCE[name]


def azimuth_deg(rel: np.ndarray) -> np.ndarray | float:
    """Azimuth of position(s) relative to the array centre: degrees CCW from +x, in [0, 360)."""
    rel = np.asarray(rel, dtype=float)
    az = np.degrees(np.arctan2(rel[..., 1], rel[..., 0])) % 360.0
    return float(az) if az.ndim == 0 else az
