"""The mouth patch drawn for one frame, from the prepared banks and the mouth state the lip-sync driver chose.

The one place that turns a `MouthState` and an expression's smile weight into pixels, shared by the photo
and the video paths, so richer mouth shapes change here and in preparation without touching the
renderer's frame loop. Per frame it only blends prepared patches: at most eight for opening × shape ×
smile, and the tongue's small box.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar.banks import blend_bank, bracket
from avatar.lipsync import MouthState
from avatar.mouth_build import SHAPE_LEVELS
from avatar.prepare import PreparedAvatar

SMILE_RELAX = 0.5
"""Share of a smile that goes while talking: people smile as they speak, but less than when they listen. Half,
so a talking full smile rests on the bank's half-smile layer instead of a blend of two far-apart ones."""
MIN_TONGUE = 0.02


def smile_amount(photo_smile: float, smile: float, relax: float) -> float:
    """The smile amount (0 neutral … 1 full) to draw for an expression weight `smile` (-1 neutral, 0 the photo's
    own, +1 full) after talking (`relax` 0 … 1) softened it.

    The amount is what relaxes, so a neutral photo's neutral mouth stays put while a smile softens as it talks.
    """
    smile = float(np.clip(smile, -1.0, 1.0))
    amount = photo_smile * (1.0 + smile) if smile < 0 else photo_smile + smile * (1.0 - photo_smile)
    return amount * (1.0 - SMILE_RELAX * float(np.clip(relax, 0.0, 1.0)))


def mouth_patch(avatar: PreparedAvatar, state: MouthState, smile: float = 0.0) -> np.ndarray:
    """(mouth h, mouth w, 3) uint8 patch for `avatar.mouth_rect`; never a view into the banks.

    `smile` is the expression cue's weight: -1 turns a smiling photo neutral, 0 keeps the photo's own
    expression, +1 is a full smile; while talking (`state.relax`) the smile softens.
    """
    levels = avatar.smile_levels
    k, share = bracket(levels, smile_amount(avatar.photo_smile, smile, state.relax))
    own = int(np.argmin(np.abs(levels - avatar.photo_smile)))

    def layer(index: int) -> np.ndarray:
        bank = avatar.mouth_bank if index == own else avatar.smile_bank[index - (index > own)]
        return blend_bank(bank, avatar.open_levels, state.opening, SHAPE_LEVELS, state.shape)

    if share < 1e-3:
        patch = layer(k).copy()
    elif share > 1 - 1e-3:
        patch = layer(k + 1).copy()
    else:
        patch = cv2.addWeighted(layer(k), 1.0 - share, layer(k + 1), share, 0.0)
    if state.tongue > MIN_TONGUE and state.opening > 0:
        _add_tongue(patch, avatar, state)
    return patch


def _add_tongue(patch: np.ndarray, avatar: PreparedAvatar, state: MouthState) -> None:
    """Blend the raised-tongue patches into `patch` (in place), inside the tongue's box only."""
    x0, y0, x1, y1 = avatar.tongue_box
    if x1 <= x0 or y1 <= y0:
        return
    i, t = bracket(avatar.open_levels, state.opening)
    box = (slice(y0, y1), slice(x0, x1))
    tongue = (1.0 - t) * avatar.tongue_bank[i][box].astype(np.float32) + t * avatar.tongue_bank[i + 1][box]
    alpha = (1.0 - t) * avatar.tongue_alpha[i][box].astype(np.float32) + t * avatar.tongue_alpha[i + 1][box]
    alpha *= min(state.tongue, 1.0) / 255.0
    region = patch[box].astype(np.float32)
    region += (tongue - region) * alpha[..., None]
    patch[box] = (region + 0.5).astype(np.uint8)
