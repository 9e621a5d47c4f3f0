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

SMILE_RELAX = 0.45
"""Share of a smile that goes while talking: people smile as they speak, but less than when they listen."""
MIN_TONGUE = 0.02


def smile_weight(photo_smile: float, smile: float, relax: float) -> float:
    """The bank's smile coordinate for an expression weight `smile` after talking relaxed it.

    The smile amount (0 neutral … `photo_smile` the photo … 1 full) is what relaxes, so a neutral photo's
    neutral mouth stays put while a smiling photo's smile softens as it talks.
    """
    smile = float(np.clip(smile, -1.0, 1.0))
    amount = photo_smile * (1.0 + smile) if smile < 0 else photo_smile + smile * (1.0 - photo_smile)
    amount *= 1.0 - SMILE_RELAX * float(np.clip(relax, 0.0, 1.0))
    if amount >= photo_smile:
        return (amount - photo_smile) / max(1.0 - photo_smile, 1e-6) if photo_smile < 1.0 else 0.0
    return amount / photo_smile - 1.0


def mouth_patch(avatar: PreparedAvatar, state: MouthState, smile: float = 0.0) -> np.ndarray:
    """(mouth h, mouth w, 3) uint8 patch for `avatar.mouth_rect`; never a view into the banks.

    `smile` is the expression cue's weight: -1 turns a smiling photo neutral, 0 keeps the photo's own
    expression, +1 is a full smile; while talking (`state.relax`) the smile softens.
    """
    weight = smile_weight(avatar.photo_smile, smile, state.relax)
    own = blend_bank(avatar.mouth_bank, avatar.open_levels, state.opening, SHAPE_LEVELS, state.shape)
    if abs(weight) < 1e-3:
        patch = own.copy()
    else:
        layer = avatar.smile_bank[0 if weight < 0 else 1]
        other = blend_bank(layer, avatar.open_levels, state.opening, SHAPE_LEVELS, state.shape)
        share = min(abs(weight), 1.0)
        patch = other.copy() if share > 1 - 1e-3 else cv2.addWeighted(own, 1.0 - share, other, share, 0.0)
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
