"""The mouth patch drawn for one frame, from the prepared bank and the mouth state the lip-sync driver chose.

The one place that turns a `MouthState` into pixels, shared by the photo and the video paths, so richer mouth
shapes (width, smile, tongue) change here and in preparation without touching the renderer's frame loop.
"""

from __future__ import annotations

import numpy as np

from avatar.banks import blend_bank
from avatar.lipsync import MouthState
from avatar.prepare import SHAPE_LEVELS, PreparedAvatar


def mouth_patch(avatar: PreparedAvatar, state: MouthState) -> np.ndarray:
    """(mouth h, mouth w, 3) uint8 patch for `avatar.mouth_rect`."""
    return blend_bank(avatar.mouth_bank, avatar.open_levels, state.opening, SHAPE_LEVELS, state.shape)
