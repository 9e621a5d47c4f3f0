"""Banks of pre-rendered patches (mouth shapes, eyelids) and the bilinear blend between their levels."""

from __future__ import annotations

import cv2
import numpy as np


def bracket(levels: np.ndarray, value: float) -> tuple[int, float]:
    i = int(np.clip(np.searchsorted(levels, value, side="right") - 1, 0, len(levels) - 2))
    t = float(np.clip((value - levels[i]) / (levels[i + 1] - levels[i]), 0.0, 1.0))
    return i, t


def blend_bank(bank: np.ndarray, levels_a: np.ndarray, a: float, levels_b: np.ndarray, b: float) -> np.ndarray:
    """Bilinear blend of the four bank patches around (a, b); exact patches when on a level."""
    i, t = bracket(levels_a, a)
    j, u = bracket(levels_b, b)

    def row(k: int) -> np.ndarray:
        if u < 1e-3:
            return bank[k, j]
        if u > 1 - 1e-3:
            return bank[k, j + 1]
        return cv2.addWeighted(bank[k, j], 1.0 - u, bank[k, j + 1], u, 0.0)

    if t < 1e-3:
        return row(i)
    if t > 1 - 1e-3:
        return row(i + 1)
    return cv2.addWeighted(row(i), 1.0 - t, row(i + 1), t, 0.0)
