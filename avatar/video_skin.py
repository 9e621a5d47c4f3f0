"""Where a video frame's own lower face is, and the colour gain that makes the reference mouth match its skin.

Both are measured on one frame with that frame's landmarks: the outline follows its jaw line (so the laid-on
mouth never reaches the backdrop or the collar), and the colour is fitted only on pixels that are skin in
both the reference patch and this frame (inside both faces, away from both mouths, and of skin chroma), so a
blue or green backdrop, the source's own moving lips and the beard shadow below them never bias it.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar import landmarks as lm
from avatar.face_rig import OPEN_MAX, UPPER_SHARE_OF_OPENING, face_frame

LOWER_OUTLINE = np.array([234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288,
                          361, 323, 454, 351, 6, 122])  # fmt: skip
"""The jaw line from cheek to cheek through the chin, closed over the nose: the lower face as a polygon."""
JAW_DROP = (1.0 - UPPER_SHARE_OF_OPENING) * OPEN_MAX
"""How far (eye distances) the animated chin drops below the frame's own when the mouth is fully open."""
MIN_SKIN_PIXELS = 60
"""Fewer matched skin pixels than this (a face turned far, a hand in front) give no trustworthy colour."""
CHROMA_TOLERANCE = 14.0
"""YCrCb chroma distance from the frame's median skin within which a pixel counts as skin (backdrops are far)."""


def lower_face(xy: np.ndarray, feather: float) -> tuple[np.ndarray, np.ndarray]:
    """(outline, drops): the lower-face polygon pulled `2 × feather` inside the jaw line (so its blurred edge
    stays on the face), and each point's outward move when the mouth opens fully (the chin's drop, fading to
    nothing towards the cheeks)."""
    frame = face_frame(xy)
    iod = frame.iod
    points = xy[LOWER_OUTLINE].astype(np.float64)
    centre = xy[lm.NOSE_TIP].astype(np.float64)
    inward = centre - points
    inward /= np.maximum(np.linalg.norm(inward, axis=1, keepdims=True), 1e-6)
    outline = points + inward * (2.0 * feather + 0.02 * iod)
    u, v = frame.to_face(points)
    u_chin, _ = frame.to_face(xy[lm.CHIN][None])
    reach = np.clip(1.0 - ((u - u_chin) / (0.9 * iod)) ** 2, 0.0, 1.0) * (v > 0)
    drops = np.multiply.outer(reach * (JAW_DROP * iod + 2.5 * feather), frame.ey)
    return outline.astype(np.float32), drops.astype(np.float32)


def skin_mask(image: np.ndarray, xy: np.ndarray, iod: float) -> np.ndarray:
    """Boolean: the lower face of `image` (its own landmarks `xy`) without the lips and the nostrils."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(xy[LOWER_OUTLINE]).astype(np.int32)], 255)
    holes = np.zeros_like(mask)
    cv2.fillPoly(holes, [np.round(xy[lm.LIPS_OUTER]).astype(np.int32)], 255)
    cv2.circle(holes, tuple(int(c) for c in np.round(xy[lm.NOSE_TIP])), max(1, round(0.3 * iod)), 255, -1)
    grow = max(3, round(0.12 * iod)) | 1
    holes = cv2.dilate(holes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    shrink = max(3, round(0.06 * iod)) | 1
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (shrink, shrink)))
    return (mask > 0) & (holes == 0)


def skin_coloured(image: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Candidates whose chroma is near their median (drops backdrop, hair, glasses frames, deep shadow)."""
    if candidates.sum() < MIN_SKIN_PIXELS:
        return candidates
    ycrcb = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(np.float32)
    chroma = ycrcb[..., 1:]
    median = np.median(chroma[candidates], axis=0)
    near = np.linalg.norm(chroma - median, axis=-1) < CHROMA_TOLERANCE
    luma = ycrcb[..., 0]
    return candidates & near & (luma > 25) & (luma < 245)


class ShadingFit:
    """Fits, per frame, the smooth per-channel gain that maps the reference's closed mouth patch to the frame."""

    def __init__(self, neutral: np.ndarray, reference_skin: np.ndarray) -> None:
        h, w = neutral.shape[:2]
        v, u = np.mgrid[-1.0 : 1.0 : h * 1j, -1.0 : 1.0 : w * 1j]
        self.neutral = neutral.astype(np.float64)
        self.reference_skin = reference_skin
        self.basis = np.stack([np.ones_like(u), u, v], axis=-1)
        self.size = (w, h)

    def fit(self, image: np.ndarray, xy: np.ndarray, patch_to_frame: np.ndarray, iod: float) -> np.ndarray | None:
        """(3 channels, 3 coefficients) gain, or None when too little skin is visible to trust a fit."""
        seen = cv2.warpAffine(image, patch_to_frame, self.size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        own = skin_mask(image, xy, iod).astype(np.uint8)
        own = cv2.warpAffine(own, patch_to_frame, self.size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
        skin = skin_coloured(seen, own & self.reference_skin)
        if skin.sum() < MIN_SKIN_PIXELS:
            return None
        target = seen[skin].astype(np.float64)
        basis = self.basis[skin]
        ridge = np.diag([0.0, 0.05, 0.05])  # a gradient across the mouth only where the pixels demand it
        coefficients = np.empty((3, 3))
        for channel in range(3):
            design = basis * self.neutral[skin][:, channel, None]
            gram = design.T @ design
            scale = np.trace(gram) / 3
            coefficients[channel] = np.linalg.solve(gram + ridge * scale, design.T @ target[:, channel])
        coefficients[:, 0] = np.clip(coefficients[:, 0], 0.4, 2.5)
        coefficients[:, 1:] = np.clip(coefficients[:, 1:], -0.3, 0.3)
        return coefficients.astype(np.float32)
