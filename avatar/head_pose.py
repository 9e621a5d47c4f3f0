"""Depth-aware head turns (yaw) and nods (pitch) as displacement fields, combined per frame into the one remap.

A small rotation of a 3-D surface moves each point, seen from the front, by the angle times its depth in
front of the rotation axis: the nose tip travels most, the cheeks less, the ears and the hair at the sides
(about on the axis) hardly at all, and whatever is behind the axis goes the other way. That is linear in the
angle to within 0.4% up to 5°, so one field per axis, built once from the face mesh's own depth (mediapipe
gives a z per landmark), is all a frame needs: `yaw · depth` across and `pitch · depth` down.

The depth between landmarks is interpolated over the mesh, carried out beyond the face (hair, ears, neck)
fading to the axis, smoothed so no fold can form, and multiplied by the head weight, so the background
(weight exactly 0) never moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

from avatar import landmarks as lm

AXIS_IDS = (234, 454, 127, 356, 93, 323)
"""Landmarks at the sides of the face in front of the ears: the turning axis of the head is about as deep."""
BEYOND_FADE = 0.6
"""Outside the face mesh (hair, ears, neck) the depth fades to the axis over this many eye distances."""
SMOOTH = 0.12
"""Gaussian smoothing of the depth field, in eye distances: keeps the warp free of folds at the nose's sides."""
STEP = 4
"""The depth is interpolated on a grid this many pixels apart and resized up: it is smooth anyway."""
IRIS_FALL = 1.4
"""Beyond the iris the gaze field falls to 0 over this many iris radii (of sclera)."""


@dataclass(frozen=True)
class PoseFields:
    """Per-pixel displacement (pixels per radian, or per unit gaze) over the head region."""

    depth: np.ndarray
    """(roi h, roi w) float32: depth in front of the turning axis, weighted by the head weight (0 off the head)."""
    gaze: np.ndarray
    """(roi h, roi w) float32: 1 at the irises, fading to 0 at the lids: how much of a gaze shift a pixel takes."""
    iris_radius: float
    """Pixels: a gaze of 1 moves the irises by this much."""


def _mesh_depth(points: np.ndarray, roi: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(depth toward the camera relative to the axis, inside-the-mesh mask) on a STEP-spaced grid of the roi."""
    x0, y0, x1, y1 = roi
    xy = points[:, :2].astype(np.float64)
    forward = float(np.mean(points[list(AXIS_IDS), 2])) - points[:, 2].astype(np.float64)
    gx = np.arange(x0, x1 + STEP, STEP, dtype=np.float64)
    gy = np.arange(y0, y1 + STEP, STEP, dtype=np.float64)
    grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
    tri = Delaunay(xy[:468])
    simplex = tri.find_simplex(grid)
    inside = simplex >= 0
    depth = np.zeros(len(grid))
    transform = tri.transform[simplex[inside]]
    bary2 = np.einsum("nij,nj->ni", transform[:, :2], grid[inside] - transform[:, 2])
    bary = np.concatenate([bary2, 1.0 - bary2.sum(axis=1, keepdims=True)], axis=1)
    depth[inside] = (forward[:468][tri.simplices[simplex[inside]]] * bary).sum(axis=1)
    shape = (len(gy), len(gx))
    return depth.reshape(shape), inside.reshape(shape)


def pose_fields(points: np.ndarray, roi: tuple[int, int, int, int], head_weight: np.ndarray, iod: float) -> PoseFields:
    """The head's displacement fields, from the landmarks (x, y, z in image pixels) and the head weight."""
    x0, y0, x1, y1 = roi
    depth, inside = _mesh_depth(points, roi)
    mask = inside.astype(np.float32)
    # Beyond the mesh: the nearest mesh depths carried outwards (normalised blur), fading to the axis.
    spread = max(1.0, 0.5 * iod / STEP)
    carried = cv2.GaussianBlur(depth.astype(np.float32), (0, 0), spread) / np.maximum(
        cv2.GaussianBlur(mask, (0, 0), spread), 1e-3
    )
    outside = (1 - inside).astype(np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, 5) * STEP
    fade = np.clip(1.0 - distance / (BEYOND_FADE * iod), 0.0, 1.0)
    full = np.where(inside, depth, np.clip(carried, 0.0, None) * fade).astype(np.float32)
    full = cv2.GaussianBlur(full, (0, 0), max(0.5, SMOOTH * iod / STEP))
    ys, xs = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32) / STEP
    dense = cv2.remap(full, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    weighted = dense * head_weight
    gaze, radius = _gaze_field(points, roi, iod)
    return PoseFields(np.ascontiguousarray(weighted, np.float32), np.ascontiguousarray(gaze, np.float32), radius)


def _gaze_field(points: np.ndarray, roi: tuple[int, int, int, int], iod: float) -> tuple[np.ndarray, float]:
    """A plateau over each iris inside the eye opening, falling to 0 at the lids and the eye's corners: moving
    the pixels under it slides the whole iris along inside the eye while the lids, lashes and skin stay.

    The fall-offs are at least as wide as the largest gaze shift (one iris radius), so the sclera they squeeze
    or stretch never folds over."""
    x0, y0, x1, y1 = roi
    h, w = y1 - y0, x1 - x0
    field = np.zeros((h, w), np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    radii = []
    for outline, iris in ((lm.RIGHT_EYE, lm.RIGHT_IRIS), (lm.LEFT_EYE, lm.LEFT_IRIS)):
        centre = points[iris[0], :2].astype(np.float64)
        radius = float(np.mean(np.linalg.norm(points[iris[1:], :2] - centre, axis=1)))
        radii.append(radius)
        opening = np.zeros((h, w), np.uint8)
        cv2.fillPoly(opening, [np.round(points[outline, :2] - (x0, y0)).astype(np.int32)], 255)
        inner = np.clip(cv2.distanceTransform(opening, cv2.DIST_L2, 3) / max(1.0, radius), 0.0, 1.0)
        r = np.hypot(xs - np.float32(centre[0] - x0), ys - np.float32(centre[1] - y0)) / radius
        fall = np.clip((r - 1.0) / IRIS_FALL, 0.0, 1.0)
        plateau = 1.0 - fall * fall * (3.0 - 2.0 * fall)
        field = np.maximum(field, (plateau * inner).astype(np.float32))
    return field, float(np.mean(radii))
