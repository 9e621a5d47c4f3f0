"""Build the mouth banks of an avatar: every lip opening × lip shape × smile, and a raised-tongue row.

Each patch is an exact mesh warp of the photo's lower face by the mouth rig, with the mouth's interior
painted into it; the renderer then only blends neighbouring patches. The smile axis holds the smile
amounts a frame dwells on — neutral, half (where a smile settles while talking), full, and the photo's
own — so an expression never rests on a blend of two far-apart shapes (which would show doubled mouth
corners). The tongue row is drawn at the middle shape and the photo's own smile only, since the sounds
that show it (l, n, d, t, th) have neither rounded nor spread lips.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from avatar.face_rig import OPEN_MAX, FaceFrame, LipTargets, MouthRig
from avatar.mouth_interior import MouthColours, analyse_mouth, opening_mask, paint_interior
from avatar.patch_mesh import PatchMesh, Rect

SHAPE_LEVELS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=np.float32)
SMILE_AMOUNTS = (0.0, 1.0)
"""Smile amounts always drawn besides the photo's own and a half smile: neutral and full."""
SAME_SMILE = 0.1
"""A smile amount this close to the photo's own is not drawn again: the photo's layer stands for it."""
PRESS_LEVEL = -0.25
"""The 'opening' of pressed lips (p, b, m): a little beyond closed."""
MAX_OPEN_STEP_PX = 1.2
"""Neighbouring mouth patches differ by at most this lip travel, so blending them never ghosts."""
PAINT_MARGIN_PX = 6
"""Mouth-interior painting reaches at most this far beyond the lip targets and the photo's opening (its
soft edges, the closed-lip line and the 2 px inpainting of leftovers), so it is done in that box only."""
TONGUE_VISIBLE = 8.0
"""A raised-tongue patch that differs from its plain one by this much (grey levels) is fully the tongue's."""


@dataclass
class MouthBanks:
    mouth_bank: np.ndarray
    """(openings, shapes, h, w, 3) uint8 at the photo's own smile."""
    smile_bank: np.ndarray
    """(layers, openings, shapes, h, w, 3) uint8: the other smile amounts' layers."""
    smile_levels: np.ndarray
    """Smile amount of every layer in ascending order, the photo's own (`mouth_bank`) included."""
    tongue_bank: np.ndarray
    """(openings, h, w, 3) uint8 with the tongue raised, at the middle shape and the photo's own smile."""
    tongue_alpha: np.ndarray
    """(openings, h, w) uint8: where the raised tongue changes its patch (255 = all tongue)."""
    tongue_box: Rect
    """Patch box holding every non-zero `tongue_alpha`: the only part a frame needs to blend."""
    open_levels: np.ndarray
    photo_smile: float
    colours: MouthColours


def build_mouth_banks(
    image: np.ndarray, xy: np.ndarray, frame: FaceFrame, rect: Rect, progress: Callable[[float], None]
) -> MouthBanks:
    """All mouth patches for `rect` of `image`; `progress` is told the share done (0 … 1)."""
    iod = frame.iod
    rig = MouthRig(xy, frame)
    colours = analyse_mouth(image, xy, rig)
    photo_opening = opening_mask(image, xy, colours, iod)
    steps = max(12, int(np.ceil(OPEN_MAX * iod / MAX_OPEN_STEP_PX)))
    open_levels = np.concatenate([[PRESS_LEVEL], np.linspace(0.0, 1.0, steps + 1)]).astype(np.float32)
    mesh = PatchMesh(xy, rect, iod)
    mw, mh = mesh.size
    n_open, n_shape = len(open_levels), len(SHAPE_LEVELS)
    # The half smile is where a smile settles while talking (`mouth_bank.SMILE_RELAX`): the photo's own when it
    # smiles broadly, a cued full smile's when it does not.
    half = rig.photo_smile / 2 if rig.photo_smile >= 0.5 else 0.5
    others = [a for a in (*SMILE_AMOUNTS, half) if abs(a - rig.photo_smile) >= SAME_SMILE]
    levels = sorted([rig.photo_smile, *others])
    own = levels.index(rig.photo_smile)
    layers = np.empty((len(levels), n_open, n_shape, mh, mw, 3), np.uint8)
    tongue_bank = np.empty((n_open, mh, mw, 3), np.uint8)
    tongue_alpha = np.zeros((n_open, mh, mw), np.uint8)
    middle = int(np.flatnonzero(SHAPE_LEVELS == 0.0)[0])

    def draw(opening: float, shape: float, smile: float | None, tongue: float = 0.0) -> np.ndarray:
        moves, pinned, targets = rig.controls(opening, shape, smile)
        maps = mesh.warp_map(moves, pinned)
        patch = cv2.remap(image, maps[..., 0], maps[..., 1], cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT)
        leftovers = cv2.remap(photo_opening, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR)
        x0, y0, x1, y1 = _paint_box(frame, targets, leftovers, rect)
        paint_interior(
            patch[y0:y1, x0:x1],
            (rect[0] + x0, rect[1] + y0),
            image,
            frame,
            rig,
            targets,
            colours,
            leftovers[y0:y1, x0:x1],
            tongue,
        )
        return patch

    for i, opening in enumerate(open_levels):
        for m, smile in enumerate(levels):
            for j, shape in enumerate(SHAPE_LEVELS):
                layers[m, i, j] = draw(float(opening), float(shape), None if m == own else smile)
        tongue_bank[i] = draw(float(opening), 0.0, None, tongue=1.0)
        change = np.abs(tongue_bank[i].astype(np.int16) - layers[own, i, middle]).max(axis=2)
        tongue_alpha[i] = np.clip(change * (255.0 / TONGUE_VISIBLE), 0, 255).astype(np.uint8)
        progress((i + 1) / n_open)
    return MouthBanks(
        mouth_bank=np.ascontiguousarray(layers[own]),
        smile_bank=np.ascontiguousarray(layers[[m for m in range(len(levels)) if m != own]]),
        smile_levels=np.array(levels, np.float32),
        tongue_bank=tongue_bank,
        tongue_alpha=tongue_alpha,
        tongue_box=_nonzero_box(tongue_alpha),
        open_levels=open_levels,
        photo_smile=rig.photo_smile,
        colours=colours,
    )


def _nonzero_box(alpha: np.ndarray) -> Rect:
    ys, xs = np.nonzero(alpha.max(axis=0))
    if len(xs) == 0:
        return (0, 0, 0, 0)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _paint_box(frame: FaceFrame, targets: LipTargets, leftovers: np.ndarray, rect: Rect) -> Rect:
    """The part of a mouth patch that painting its interior can change (patch coordinates).

    The lip targets bound the opening and the closed-lip line; the photo's own opening carried through
    the warp bounds what is filled in. Painting only there gives the same patch 3-8x faster (big faces
    have big patches and many opening levels).
    """
    points = np.concatenate(
        [frame.to_image(targets.upper_u, targets.upper_v), frame.to_image(targets.lower_u, targets.lower_v)]
    ) - np.array(rect[:2], dtype=np.float64)
    ys, xs = np.nonzero(leftovers > 64)
    low = points.min(axis=0)
    high = points.max(axis=0)
    if len(xs):
        low = np.minimum(low, (xs.min(), ys.min()))
        high = np.maximum(high, (xs.max(), ys.max()))
    h, w = leftovers.shape[:2]
    x0, y0 = np.clip(np.floor(low).astype(int) - PAINT_MARGIN_PX, 0, (w, h))
    x1, y1 = np.clip(np.ceil(high).astype(int) + PAINT_MARGIN_PX + 1, 0, (w, h))
    return int(x0), int(y0), int(max(x1, x0 + 1)), int(max(y1, y0 + 1))
