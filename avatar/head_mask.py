"""Which pixels belong to the head: the only ones head motion may move.

A smooth blob around the face also drags whatever lies behind the head (a flag, a pole, a
collar) along with it, and a viewer reads that as a swimming background. So the weight is a
silhouette: mediapipe's selfie segmentation (its model ships inside the wheel, so this works
offline) cut down to the head by the face landmarks (face oval and hair above the chin, fading
out over the neck), united with the face oval in case the segmentation misses part of the face.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar import landmarks as lm

NECK_FADE = 0.7
"""Below the chin the weight falls to 0 over this many eye distances: the neck bends, the shoulders stay."""
NECK_HALF_WIDTH = 0.6
"""Below the chin only this close to it (eye distances, sideways) is neck; further out is collar and shoulder."""
HAIR_REACH = 1.1
"""How far beyond the face oval (in eye distances) hair can still belong to the head."""


def person_mask(image: np.ndarray) -> np.ndarray:
    """float32 (h, w) probability that a pixel shows the person, 0 everywhere if segmentation fails."""
    from mediapipe.python.solutions import selfie_segmentation

    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    with lm.native_stderr_silenced(), selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        result = seg.process(rgb)
    mask = getattr(result, "segmentation_mask", None)
    if mask is None:
        return np.zeros(image.shape[:2], np.float32)
    return np.clip(mask.astype(np.float32), 0.0, 1.0)


def dilate_ellipse(mask: np.ndarray, radius: int) -> np.ndarray:
    """`cv2.dilate` of a binary uint8 mask by `cv2.MORPH_ELLIPSE` of size 2·radius+1, pixel for pixel, but in
    time linear in the mask's runs instead of in the kernel's area (0.1 s instead of 2-6 s for a 1080p photo).

    Each row of OpenCV's elliptical kernel is one run centred on the anchor, so dilating a row run by
    kernel row dy widens it by that row's half-width and moves it dy rows: the result is the union of
    these widened runs, counted with a difference array along each row.
    """
    h, w = mask.shape
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    rows = np.flatnonzero(kernel.any(axis=1))
    half = (np.count_nonzero(kernel[rows], axis=1) - 1) // 2
    shift = rows - radius
    on = np.zeros((h, w + 2), np.int8)
    on[:, 1:-1] = mask > 0
    edges = np.diff(on, axis=1)
    run_y, run_x0 = np.nonzero(edges == 1)
    _, run_x1 = np.nonzero(edges == -1)  # end (exclusive) of each run, in the same row-major order
    y = run_y[:, None] + shift[None, :]
    x0 = np.clip(run_x0[:, None] - half[None, :], 0, w)
    x1 = np.clip(run_x1[:, None] + half[None, :], 0, w)
    inside = (y >= 0) & (y < h)
    y, x0, x1 = (a[inside].astype(np.intp) for a in (y, x0, x1))
    cells = h * (w + 1)
    count = np.bincount(y * (w + 1) + x0, minlength=cells) - np.bincount(y * (w + 1) + x1, minlength=cells)
    covered = np.cumsum(count.reshape(h, w + 1)[:, :w], axis=1) > 0
    return covered.astype(np.uint8) * 255


def head_weight(image: np.ndarray, xy: np.ndarray, iod: float) -> np.ndarray:
    """float32 (h, w): 1 on the head, 0 on the background and body, soft at the silhouette and over the neck."""
    h, w = image.shape[:2]
    oval = np.zeros((h, w), np.uint8)
    cv2.fillPoly(oval, [np.round(xy[lm.FACE_OVAL]).astype(np.int32)], 255)
    reach = max(1, round(HAIR_REACH * iod))
    zone = dilate_ellipse(oval, reach)
    chin_x, chin_y = (float(v) for v in xy[lm.CHIN])
    neck_x0, neck_x1 = round(chin_x - NECK_HALF_WIDTH * iod), round(chin_x + NECK_HALF_WIDTH * iod)
    below = slice(max(0, round(chin_y)), h)
    zone[below, : max(0, neck_x0)] = 0
    zone[below, max(0, neck_x1) :] = 0
    person = (person_mask(image) > 0.5).astype(np.uint8) * 255
    head = np.maximum(cv2.bitwise_and(person, zone), oval)
    head = cv2.morphologyEx(head, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    weight = cv2.GaussianBlur(head.astype(np.float32) / 255.0, (0, 0), max(0.8, 0.05 * iod))
    ys = np.arange(h, dtype=np.float32)[:, None]
    neck = np.clip(1.0 - (ys - chin_y) / (NECK_FADE * iod), 0.0, 1.0)
    weight *= neck * neck * (3.0 - 2.0 * neck)
    weight[weight < 0.02] = 0.0
    return weight.astype(np.float32)
