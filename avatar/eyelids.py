"""Blinks painted, not warped: an upper lid of the photo's own skin slides down over the eye, lashes at its edge.

Warping the lid landmarks down squeezes the eye's pixels into a smear with specks of iris and catchlight
along the closed lid, and drags whatever lies between lid and brow (the rim of a pair of glasses) along
with it. A real lid covers the eyeball without moving anything else, so that is what is drawn here:
inside the eye outline only, a lid surface filled in from the skin around the eye, with a dark lash
line at its moving edge.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar import landmarks as lm
from avatar.face_rig import FaceFrame
from avatar.patch_mesh import Rect

BLINK_MEET = 0.96
"""Where the lids meet in a blink, as a fraction of the way from the upper to the lower lid."""
LASH_BAND = 0.035
"""Thickness of the lash line at the lid's edge, in eye distances."""
LASH_COVER = 0.08
"""How far above the upper lid outline (eye distances) the lid covers the photo's own lashes, which are
redrawn at its moving edge."""


def _ramp(x: np.ndarray, width: float) -> np.ndarray:
    return np.clip(x / max(width, 1e-6) + 0.5, 0.0, 1.0)


class EyeLids:
    """Lids over the eyes of `image`, drawn inside `rect` (the eye patch) for any blink level."""

    def __init__(self, image: np.ndarray, xy: np.ndarray, frame: FaceFrame, rect: Rect) -> None:
        self.image = image
        self.frame = frame
        self.rect = rect
        iod = frame.iod
        x0, y0, x1, y1 = rect
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        self.u, self.v = frame.to_face(np.stack([xs, ys], axis=2))
        self.eyes = []
        cover = np.zeros(image.shape[:2], np.uint8)
        for upper, lower in ((lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER), (lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER)):
            uu, uv = frame.to_face(xy[upper])
            lu, lv = frame.to_face(xy[lower])
            order_u, order_l = np.argsort(uu), np.argsort(lu)
            self.eyes.append((uu[order_u], uv[order_u], lu[order_l], lv[order_l]))
            cv2.fillPoly(cover, [np.round(xy[np.concatenate([upper, lower[::-1]])]).astype(np.int32)], 255)
        band = max(1, round(LASH_COVER * iod))
        cover = cv2.dilate(cover, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1)))
        skin = cv2.inpaint(image, cover, max(2, round(0.08 * iod)), cv2.INPAINT_TELEA)
        skin = cv2.GaussianBlur(skin, (0, 0), max(0.6, 0.02 * iod))[y0:y1, x0:x1].astype(np.float64)
        self.skin = self._lift(image, cover, skin)
        self.texture = self._lid_texture(image, cover, iod)
        self.lash = self._lash_colour(image, xy)

    def _lid_texture(self, image: np.ndarray, cover: np.ndarray, iod: float) -> np.ndarray:
        """Fine grain for the lid, a fraction of the skin's own texture around the eyes (wrinkles are not grain).

        A lid of smooth inpainted colour reads as a patch on textured skin. The photo's own texture above
        the eye cannot be borrowed: lashes, brows and glasses rims sit there and would be copied in.
        """
        x0, y0, x1, y1 = self.rect
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        detail = grey - cv2.GaussianBlur(grey, (0, 0), max(1.0, 0.04 * iod))
        around = (cv2.dilate(cover, np.ones((9, 9), np.uint8)) > 0) & (cover == 0)
        amount = 0.35 * float(np.median(np.abs(detail[around]))) * 1.4826 if around.any() else 0.0
        grain = np.random.default_rng(0).standard_normal((y1 - y0, x1 - x0)).astype(np.float32)
        grain = cv2.GaussianBlur(grain, (0, 0), 0.9)
        grain *= amount / max(float(grain.std()), 1e-6)
        return np.repeat(grain[..., None], 3, axis=2).astype(np.float64)

    def _lift(self, image: np.ndarray, cover: np.ndarray, skin: np.ndarray) -> np.ndarray:
        """The inpainted lid with its dark parts pulled towards the typical skin colour around the eye: lashes,
        brows or a glasses rim at the edge of the covered area bleed into the fill, but a lid is skin."""
        around = (cv2.dilate(cover, np.ones((9, 9), np.uint8)) > 0) & (cover == 0)
        if not around.any():
            return skin
        ring = image[around].astype(np.float64)
        floor = float(np.percentile(ring.mean(axis=1), 50))
        reference = np.median(ring[ring.mean(axis=1) >= floor], axis=0)
        dark = np.clip(2.0 * (floor - skin.mean(axis=2)) / max(floor, 1.0), 0.0, 1.0)
        return skin + (reference - skin) * dark[..., None]

    @staticmethod
    def _lash_colour(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """The photo's lash line colour: the darkest pixels along the upper lid outlines."""
        ids = np.concatenate([lm.RIGHT_EYE_UPPER, lm.LEFT_EYE_UPPER])
        h, w = image.shape[:2]
        cols = np.clip(np.round(xy[ids, 0]).astype(int), 0, w - 1)
        rows = np.clip(np.round(xy[ids, 1]).astype(int), 0, h - 1)
        samples = np.concatenate([image[np.clip(rows + d, 0, h - 1), cols] for d in (-1, 0, 1)]).astype(np.float64)
        darkest = samples[np.argsort(samples.sum(axis=1))[: max(3, len(samples) // 4)]]
        return darkest.mean(axis=0)

    def paint(self, blink: float) -> np.ndarray:
        """A copy of the image with the lids closed by `blink` (0 open … 1 shut)."""
        out = self.image.copy()
        if blink <= 0.0:
            return out
        iod = self.frame.iod
        u, v = self.u, self.v
        lash_w = max(1.0, LASH_BAND * iod)
        x0, y0, x1, y1 = self.rect
        region = out[y0:y1, x0:x1].astype(np.float64)
        for uu, uv, lu, lv in self.eyes:
            top = np.interp(u, uu, uv)
            bottom = np.interp(u, lu, lv)
            edge = top + BLINK_MEET * blink * np.maximum(bottom - top, 0.0)
            across = np.minimum(u - uu[0], uu[-1] - u)
            inside = _ramp(across, 1.0)
            cover = LASH_COVER * iod
            alpha = _ramp(v - (top - cover), 0.5 * cover) * _ramp(edge - v, 1.0) * inside
            if not alpha.any():
                continue
            # The lid is a curved surface: a little lighter mid-lid, shading into the lashes at its edge.
            depth = np.clip((edge - v) / max(float(np.max(edge - top)) + lash_w, 1.0), 0.0, 1.0)
            lid = self.skin * (0.93 + 0.07 * np.sin(np.pi * depth))[..., None] + self.texture
            taper = np.clip(across / (0.08 * iod), 0.0, 1.0) ** 0.5
            lashes = np.exp(-((((edge - v) - 0.4 * lash_w) / (0.5 * lash_w)) ** 2)) * taper
            lid = lid + (self.lash - lid) * (0.75 * lashes)[..., None]
            region = region + (lid - region) * alpha[..., None]
        out[y0:y1, x0:x1] = np.clip(np.round(region), 0, 255).astype(np.uint8)
        return out
