"""Snap the detector's inner-lip contour to the real edge of a photo's open mouth.

mediapipe places the inner lip points well on small faces, but on large or upscaled faces with a
toothy smile they often run across the teeth rather than along the lip. The warp closes the mouth
by moving exactly these points together, so teeth left outside them would stay visible on a
"closed" mouth. Here the visible opening (teeth: brighter and less red than the lips; cavity: dark)
is found in the pixels and the inner-lip points are moved outwards onto its border.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar import landmarks as lm

MAX_SNAP = 0.15
"""Largest correction, in face units (eye distance): beyond this the detector is not just imprecise."""


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255)
    return mask


def opening_region(image: np.ndarray, xy: np.ndarray, iod: float) -> np.ndarray:
    """uint8 mask of the photo's visible mouth opening (teeth and cavity), empty for a closed mouth."""
    h, w = image.shape[:2]
    outer = _polygon_mask((h, w), xy[lm.LIPS_OUTER])
    inner = _polygon_mask((h, w), xy[lm.LIPS_INNER])
    radius = max(1, round(0.06 * iod))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    around = cv2.dilate(outer, kernel)
    lips_only = (outer > 0) & (inner == 0)
    pixels = image.astype(np.float32)
    luminance = pixels.mean(axis=2)
    redness = pixels[:, :, 2] - 0.5 * (pixels[:, :, 0] + pixels[:, :, 1])
    if lips_only.sum() < 10:
        return np.zeros((h, w), np.uint8)
    lip_luminance = float(np.median(luminance[lips_only]))
    lip_redness = float(np.median(redness[lips_only]))
    teeth = (luminance > 1.05 * lip_luminance) & (redness < 0.65 * lip_redness)
    dark = luminance < 0.55 * lip_luminance
    candidate = ((teeth | dark) & (around > 0)).astype(np.uint8)
    candidate = cv2.morphologyEx(candidate, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    count, labels = cv2.connectedComponents(candidate)
    keep = np.zeros((h, w), np.uint8)
    for label in range(1, count):
        component = labels == label
        if (inner[component] > 0).any():
            keep[component] = 255
    return keep


def refine_inner_lips(image: np.ndarray, xy: np.ndarray, iod: float) -> np.ndarray:
    """A copy of `xy` with the inner-lip points moved outwards onto the visible opening's border."""
    region = opening_region(image, xy, iod)
    out = xy.copy()
    if not region.any():
        return out
    limit = MAX_SNAP * iod
    width = region.shape[1]
    for ids, upper in ((lm.LIPS_INNER_UPPER[1:-1], True), (lm.LIPS_INNER_LOWER[1:-1], False)):
        for i in ids.tolist():
            x, y = xy[i]
            column = round(float(x))
            if not 0 <= column < width:
                continue
            rows = np.flatnonzero(region[:, column])
            rows = rows[np.abs(rows - y) <= limit]
            if len(rows) == 0:
                continue
            edge = rows.min() - 0.5 if upper else rows.max() + 0.5
            if (upper and edge < y) or (not upper and edge > y):
                out[i, 1] = edge
    return out
