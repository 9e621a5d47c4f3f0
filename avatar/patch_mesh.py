"""A triangle mesh over one rectangular face patch (mouth or eyes), pinned to zero motion at its border.

Because the patch border never moves, a rendered patch can be pasted back with a plain slice
assignment and no seam: its border pixels are the photo's own.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar import landmarks as lm
from avatar.face_rig import IRIS
from avatar.mesh_warp import MeshWarp, rect_ring, triangulate

Rect = tuple[int, int, int, int]
"""x0, y0, x1, y1 in image pixels (x1, y1 exclusive)."""


def clip_rect(box: tuple[float, float, float, float], width: int, height: int) -> Rect:
    x0, y0, x1, y1 = box
    return (
        max(0, int(np.floor(x0))),
        max(0, int(np.floor(y0))),
        min(width, int(np.ceil(x1))),
        min(height, int(np.ceil(y1))),
    )


class PatchMesh:
    def __init__(self, xy: np.ndarray, rect: Rect, iod: float) -> None:
        self.rect = rect
        x0, y0, x1, y1 = rect
        self.size = (x1 - x0, y1 - y0)
        local = xy.astype(np.float64) - (x0, y0)
        margin = 1.5
        inside = (
            (local[:, 0] > margin)
            & (local[:, 1] > margin)
            & (local[:, 0] < self.size[0] - 1 - margin)
            & (local[:, 1] < self.size[1] - 1 - margin)
        )
        inside[list(IRIS)] = False
        self.landmark_ids = np.flatnonzero(inside)
        ring = rect_ring(*self.size, per_side=max(4, round(max(self.size) / (0.2 * iod))))
        fillers = self._fillers(local, ring, iod)
        self.points = np.concatenate([local[self.landmark_ids], ring, fillers])
        self.n_ring = len(ring)
        self.triangles = triangulate(self.points)
        self._slot = {int(i): k for k, i in enumerate(self.landmark_ids)}
        self._warp = MeshWarp(self.points, self.triangles, self.size)

    def _fillers(self, local: np.ndarray, ring: np.ndarray, iod: float) -> np.ndarray:
        """Extra free vertices where landmarks are sparse (neck, background), so motion fades smoothly."""
        step = 0.18 * iod
        w, h = self.size
        gx, gy = np.meshgrid(np.arange(step, w - step / 2, step), np.arange(step, h - step / 2, step))
        grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
        if len(grid) == 0:
            return np.zeros((0, 2))
        anchors = np.concatenate([local[self.landmark_ids], ring])
        dist = np.linalg.norm(grid[:, None, :] - anchors[None, :, :], axis=2).min(axis=1)
        keep = dist > 0.6 * step
        holes = [lm.LIPS_INNER, lm.LEFT_EYE, lm.RIGHT_EYE]
        for hole in holes:
            poly = local[hole].astype(np.float32)
            keep &= np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) < 0 for x, y in grid])
        return grid[keep]

    def warp_map(self, moves: dict[int, np.ndarray], pinned: set[int]) -> np.ndarray:
        """(h, w, 2) float32 map into full-image coordinates for this deformation."""
        n = len(self.points)
        fixed = np.zeros(n, dtype=bool)
        values = np.zeros((n, 2))
        n_lm = len(self.landmark_ids)
        fixed[n_lm : n_lm + self.n_ring] = True
        for i, d in moves.items():
            slot = self._slot.get(i)
            if slot is not None:
                fixed[slot] = True
                values[slot] = d
        for i in pinned:
            slot = self._slot.get(i)
            if slot is not None:
                fixed[slot] = True
        disp = self._warp.harmonic_fill(fixed, values)
        out = self._warp.backward_map(self.points + disp)
        out[..., 0] += self.rect[0]
        out[..., 1] += self.rect[1]
        return out
