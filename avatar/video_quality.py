"""Colour measurements of a video avatar's output against the clip it was made from.

A laid-on mouth that does not match its frame shows first as a chin of another colour than the cheeks: so the
cheek-to-chin colour difference (CIELAB ΔE) of an output frame is compared with the same difference on the
clip's own frame. The skin is sampled where the mouth patch covers it (the chin) and where it never reaches
(the cheeks beside the nose), each located by landmarks detected on the frame being measured.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar import landmarks as lm

CHEEKS = (205, 425)
"""Mid-cheek landmarks, level with the nostrils: skin the mouth patch's feathered edge does not reach."""
CHIN = (199, 175)
"""Mid-chin landmarks, between the lower lip and the bottom of the chin: inside the mouth patch."""


def _lab_mean(lab: np.ndarray, centres: np.ndarray, radius: int) -> np.ndarray:
    mask = np.zeros(lab.shape[:2], np.uint8)
    for x, y in np.round(centres).astype(int):
        cv2.circle(mask, (int(x), int(y)), radius, 255, -1)
    return lab[mask > 0].mean(axis=0)


def skin_colours(image: np.ndarray, face: lm.FaceLandmarks) -> tuple[np.ndarray, np.ndarray]:
    """Mean CIELAB colour (L 0-100) of the cheeks and of the chin of `face` in `image`."""
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
    xy = face.xy
    iod = float(np.linalg.norm(xy[lm.LEFT_EYE].mean(axis=0) - xy[lm.RIGHT_EYE].mean(axis=0)))
    radius = max(2, round(0.1 * iod))
    cheeks = _lab_mean(lab, xy[list(CHEEKS)], radius)
    chin = _lab_mean(lab, xy[list(CHIN)].mean(axis=0, keepdims=True), radius)
    return cheeks, chin


def cheek_to_chin(image: np.ndarray) -> float:
    """ΔE between the cheeks and the chin of the largest face in `image` (NaN without a face)."""
    faces = lm.detect_faces(image, max_faces=1)
    if not faces:
        return float("nan")
    cheeks, chin = skin_colours(image, faces[0])
    return float(np.linalg.norm(cheeks - chin))
