"""The mouth patch drawn for one frame, from the prepared bank and the mouth state the lip-sync driver chose.

The one place that turns a `MouthState` into pixels, shared by the photo and the video paths, so richer mouth
shapes (width, smile, tongue) change here and in preparation without touching the renderer's frame loop.
"""

from __future__ import annotations

import numpy as np

from avatar.banks import blend_bank
from avatar.lipsync import MouthState
from avatar.prepare import SHAPE_LEVELS, PreparedAvatar


def mouth_patch(avatar: PreparedAvatar, state: MouthState, smile: float = 0.0) -> np.ndarray:
    """(mouth h, mouth w, 3) uint8 patch for `avatar.mouth_rect`.

    `smile` is the expression cue's weight: -1 turns a smiling photo neutral, 0 keeps the photo's own
    expression, +1 is a full smile (not rendered yet: the bank has no smile axis).
    """
    return blend_bank(avatar.mouth_bank, avatar.open_levels, state.opening, SHAPE_LEVELS, state.shape)
