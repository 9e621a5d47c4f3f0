"""A video avatar's idle loop: the clip's own frames played back and forth, and the animated mouth laid onto each.

The mouth and jaw are animated on one reference frame (the patch banks). Everything that places them on
another frame comes from that frame alone, measured once at preparation (`MouthPlacement`): the affine map from
the reference face to this frame's face (its own landmarks, so turns and scale changes are followed), a smooth
colour gain fitted on this frame's own skin around the mouth (never the backdrop, never another frame), and the
outline of this frame's own lower face, which the laid-on patch never crosses. Frames are kept JPEG-compressed
(decoded one per rendered frame), so a minute of clip costs tens of megabytes, not gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import cv2
import numpy as np

STABLE_POINTS = np.array([33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 2, 98, 327, 129, 358, 234, 454, 93, 323])
"""Landmarks that move with the head but not with the mouth, the lids, the brows or a smile (eyes' corners, the
nose, the sides of the face): they carry the head's motion (a smile lifts the cheeks, which must not tilt the
placed mouth)."""
_LOOP_ARRAYS = ("jpegs", "offsets", "transforms", "gains")
_PLACEMENT_ARRAYS = ("shown", "shading", "outlines", "drops", "rect", "mask")


@dataclass
class MouthPlacement:
    """Per frame of a loop: which frame to show, and how the animated mouth goes onto it."""

    shown: np.ndarray
    """(frames,) int32: the frame shown in place of each: itself, or the nearest frame whose face was tracked
    reliably (a frame where the mesh lost the face is never drawn on)."""
    shading: np.ndarray
    """(frames, 3, 3) float32: per colour channel, the gain (c0 + c1·u + c2·v) that turns the reference skin
    into this frame's skin around the mouth; u, v run from -1 to 1 across the mouth patch."""
    outlines: np.ndarray
    """(frames, points, 2) float32: this frame's lower face (inside its jaw line), in frame pixels."""
    drops: np.ndarray
    """(frames, points, 2) float32: how far each outline point moves out when the mouth is fully open
    (the animated chin drops below the frame's own)."""
    rect: np.ndarray
    """(4,) int: the mouth patch's rectangle in the reference frame (x0, y0, x1, y1)."""
    mask: np.ndarray
    """(mouth h, mouth w) float32: the patch's own feathered weight (0 at its border)."""
    feather: float
    """Blur (px, sigma) of the outline's edge; the outline is already pulled this far inside twice over."""
    _grid: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        h, w = self.mask.shape
        v, u = np.mgrid[-1.0 : 1.0 : h * 1j, -1.0 : 1.0 : w * 1j].astype(np.float32)
        self._grid = np.stack([np.ones_like(u), u, v], axis=-1)

    def gain(self, k: int) -> np.ndarray:
        """(mouth h, mouth w, 3) float32 colour gain of frame `k` over the mouth patch."""
        return self._grid @ self.shading[k].T

    def inside_face(self, k: int, opening: float, origin: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
        """1 inside frame `k`'s own lower face (reaching as low as the animated chin drops), 0 off the face."""
        outline = self.outlines[k] + opening * self.drops[k] - np.array(origin, np.float32)
        inside = np.zeros((size[1], size[0]), np.uint8)
        cv2.fillPoly(inside, [np.round(outline * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
        # Two box blurs of this width have the variance of a Gaussian of sigma `feather`, at a tenth of the cost.
        width = round(np.sqrt(6.0 * self.feather**2 + 1.0)) | 1
        inside = cv2.blur(cv2.blur(inside, (width, width)), (width, width))
        return inside.astype(np.float32) * np.float32(1 / 255)


@dataclass
class VideoLoop:
    jpegs: np.ndarray
    """All frames' JPEG bytes, concatenated (uint8)."""
    offsets: np.ndarray
    """(frames + 1,) int64: frame i is jpegs[offsets[i]:offsets[i + 1]]."""
    transforms: np.ndarray
    """(frames, 2, 3) float32: reference-frame pixels → this frame's pixels (a video's: affine, from the face's own
    landmarks)."""
    gains: np.ndarray
    """(frames, 3) float32: per-channel colour gain of the skin around the mouth relative to the reference frame."""
    fps: float
    placement: MouthPlacement | None = None
    """A video avatar's per-frame mouth placement (None for a loop that only carries frames and head motion)."""

    QUALITY: ClassVar[int] = 92

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def frame(self, index: int) -> np.ndarray:
        data = self.jpegs[self.offsets[index] : self.offsets[index + 1]]
        return cv2.imdecode(data, cv2.IMREAD_COLOR)

    def index_at(self, seconds: float) -> int:
        """The frame shown at `seconds`. Ping-pong: forwards through the loop, then backwards, so it never jumps (a
        video's ends were chosen where the head is slowest, so the turn-around shows least); a frame where the
        face was lost gives way to the nearest good one."""
        n = len(self)
        if n <= 1:
            return 0
        period = 2 * n - 2
        position = round(seconds * self.fps) % period
        position = position if position < n else period - position
        return int(self.placement.shown[position]) if self.placement is not None else position

    def draw(self, patch: np.ndarray, opening: float, seconds: float) -> np.ndarray:
        """The clip's frame at `seconds` with `patch` (the animated mouth at `opening`) laid onto its face."""
        k = self.index_at(seconds)
        out = self.frame(k)
        placement = self.placement
        if placement is None:
            return out
        x0, y0, x1, y1 = (int(v) for v in placement.rect)
        matrix = self.transforms[k].astype(np.float64) @ np.array([[1.0, 0, x0], [0, 1.0, y0], [0, 0, 1.0]])
        corners = np.array([[0, 0, 1], [x1 - x0, 0, 1], [0, y1 - y0, 1], [x1 - x0, y1 - y0, 1]], np.float64)
        placed = corners @ matrix.T
        h, w = out.shape[:2]
        dx0, dy0 = np.maximum(np.floor(placed.min(axis=0)).astype(int), 0)
        dx1, dy1 = np.minimum(np.ceil(placed.max(axis=0)).astype(int), (w, h))
        if dx1 <= dx0 or dy1 <= dy0:
            return out
        matrix[:, 2] -= (dx0, dy0)
        size = (int(dx1 - dx0), int(dy1 - dy0))
        shaded = cv2.convertScaleAbs(patch.astype(np.float32) * placement.gain(k))
        warped = cv2.warpAffine(shaded, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        weight = cv2.warpAffine(placement.mask, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
        weight *= placement.inside_face(k, max(opening, 0.0), (dx0, dy0), size)
        region = out[dy0:dy1, dx0:dx1]
        out[dy0:dy1, dx0:dx1] = cv2.blendLinear(warped, region, weight, 1.0 - weight)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """What the avatar cache stores (with `fps` and, for a placement, its `feather`)."""
        arrays = {name: getattr(self, name) for name in _LOOP_ARRAYS}
        if self.placement is not None:
            arrays.update({f"placement_{name}": getattr(self.placement, name) for name in _PLACEMENT_ARRAYS})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], fps: float, feather: float | None) -> VideoLoop:
        placement = None
        if feather is not None:
            placement = MouthPlacement(
                **{name: arrays[f"placement_{name}"] for name in _PLACEMENT_ARRAYS}, feather=feather
            )
        return cls(**{name: arrays[name] for name in _LOOP_ARRAYS}, fps=fps, placement=placement)

    @staticmethod
    def array_names(with_placement: bool) -> tuple[str, ...]:
        return _LOOP_ARRAYS + tuple(f"placement_{name}" for name in _PLACEMENT_ARRAYS if with_placement)
