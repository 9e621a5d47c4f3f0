"""The brow rig of the eye bank: raised brows (surprise, a question) above rest, concern below it.

Concern is the worried brow: the inner ends lift and draw together while the outer ends stay or drop a
little (the 'grief' muscles), the opposite slant of a raise. Negative levels of the same axis are concern, so
the eye bank blends continuously from concerned through rest to raised.
"""

from __future__ import annotations

import numpy as np

from avatar import landmarks as lm
from avatar.face_rig import EyeRig

CONCERN_LIFT = 0.07
"""Eye distances the inner brow ends rise at full concern."""
CONCERN_DROP = 0.02
"""Eye distances the outer brow ends fall at full concern."""
CONCERN_KNIT = 0.035
"""Eye distances the inner brow ends move towards each other at full concern."""


class BrowRig(EyeRig):
    """`EyeRig` for levels 0 … 1 (raised); levels -1 … 0 are concern."""

    def controls(self, brow: float) -> tuple[dict[int, np.ndarray], set[int]]:
        moves, pinned = super().controls(max(brow, 0.0))
        if brow >= 0.0:
            return moves, pinned
        amount = -brow
        iod = self.frame.iod
        for ids in (lm.RIGHT_BROW, lm.LEFT_BROW):
            u, _ = self.frame.to_face(self.xy[ids])
            reach = np.abs(u)
            outer = (reach - reach.min()) / max(float(np.ptp(reach)), 1e-6)
            inner = 1.0 - outer
            du = -np.sign(u) * CONCERN_KNIT * iod * amount * inner
            dv = (-CONCERN_LIFT * inner + CONCERN_DROP * outer) * iod * amount
            for k, i in enumerate(ids.tolist()):
                moves[i] = self.frame.vector(np.array(du[k]), np.array(dv[k]))
        return moves, pinned
