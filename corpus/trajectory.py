"""Talker trajectories: a seat, then walks along arcs around the array (polar waypoints).

Positions are interpolated linearly in (azimuth, distance, height) about the array centre, so
a walk is an arc, the natural path of someone moving round a meeting table. The rendered
position is always clipped inside the room, and ground truth is computed from the clipped
position, so what is written out is exactly what was simulated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minutes.arrays import azimuth_deg

__all__ = ["Trajectory", "Waypoint"]


@dataclass(frozen=True)
class Waypoint:
    t: float  # seconds from the start of the recording
    azimuth: float  # degrees, unwrapped (may leave [0, 360) so arcs go the short or long way)
    distance: float  # metres, horizontal, from the array centre
    height: float  # metres above the array's plane


@dataclass(frozen=True)
class Trajectory:
    """Piecewise-linear polar path; static before the first and after the last waypoint."""

    waypoints: tuple[Waypoint, ...]
    center: tuple[float, float, float]  # absolute array centre
    room_dims: tuple[float, float, float]
    margin: float = 0.3

    @property
    def moving(self) -> bool:
        w = self.waypoints
        return any((a.azimuth, a.distance, a.height) != (b.azimuth, b.distance, b.height) for a, b in zip(w, w[1:]))

    def relative(self, t: float | np.ndarray) -> np.ndarray:
        """Position(s) relative to the array centre, metres: (3,) or (T, 3)."""
        t_arr = np.atleast_1d(np.asarray(t, dtype=float))
        ts = [w.t for w in self.waypoints]
        az = np.radians(np.interp(t_arr, ts, [w.azimuth for w in self.waypoints]))
        r = np.interp(t_arr, ts, [w.distance for w in self.waypoints])
        z = np.interp(t_arr, ts, [w.height for w in self.waypoints])
        rel = np.stack([r * np.cos(az), r * np.sin(az), z], axis=1)
        c = np.asarray(self.center)
        lo, hi = self.margin - c, np.asarray(self.room_dims) - self.margin - c
        rel = np.clip(rel, lo, hi)
        return rel[0] if np.ndim(t) == 0 else rel

    def absolute(self, t: float | np.ndarray) -> np.ndarray:
        return self.relative(t) + np.asarray(self.center)

    def azimuth(self, t: float | np.ndarray) -> np.ndarray | float:
        """Ground-truth azimuth, degrees CCW from the array's +x, in [0, 360)."""
        return azimuth_deg(self.relative(t))

    def sample(self, duration: float, hop: float = 0.1) -> dict[str, list]:
        """Ground truth on a regular grid, for the trajectories file."""
        ts = np.round(np.arange(0.0, duration + 1e-9, hop), 3)
        rel = self.relative(ts)
        return {
            "t": ts.tolist(),
            "azimuth": np.round(azimuth_deg(rel), 2).tolist(),
            "position": np.round(rel, 3).tolist(),
        }
