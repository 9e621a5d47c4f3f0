"""The face's deformation rig: where the mouth, lids and brows go for a given set of controls.

Everything is measured in a face frame (origin between the inner mouth corners, x along the eye
line, y down) and in face units (the inter-ocular distance), so one set of constants fits every
photo size. The rig only moves control landmarks; `mesh_warp.harmonic_fill` spreads the motion to
the rest of the face and fades it to zero at the patch border.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avatar import landmarks as lm

OPEN_MAX = 0.34
"""Inner-lip gap at the mouth centre when fully open, in face units (a wide 'ah': the jaw visibly drops)."""
ROUND_NARROWING = 0.34
"""How much of its width a fully rounded mouth (oh, oo) loses: the corners come in, not just the gap opens."""
UPPER_SHARE_OF_CLOSING = 0.45
"""When a photo's open mouth is closed, the upper lip covers this share of the gap, the lower lip the rest."""
UPPER_SHARE_OF_OPENING = 0.18
"""When the mouth opens the upper lip lifts a little; the jaw carries the rest."""
SPREAD_WIDENING = 0.15
"""How much of its width a fully spread mouth (ee, s) gains: the corners pull back."""
PRESS_WIDENING = 0.16
"""Width gained per unit of press: pressed lips (m, b, p) stretch sideways as they roll in."""
PRESS_ROLL = 0.2
"""How far pressed lips roll in per unit of press (face units): less red shows."""
PUCKER = 0.07
"""How far rounded lips push out (face units): the red of both lips grows, seen from the front."""
SMILE_LIFT = 0.12
"""How far a full smile raises the mouth corners above a neutral mouth's (face units)."""
SMILE_WIDENING = 0.075
"""How far a full smile pulls each mouth corner outwards (face units)."""
NEUTRAL_CORNER_LIFT = 0.0
FULL_SMILE_CORNER_LIFT = 0.12
"""Inner mouth corners this far above the middle of the lips (face units) read as a full smile; level with it
as neutral. Measured on the test portraits: 0.10-0.14 on broad smiles, -0.03-0.01 on closed neutral mouths."""
BROW_RAISE = 0.08
NOSE_BRIDGE = (168, 6, 197, 195, 5, 4, 1, 2, 94, 19)
IRIS = set(range(468, 478))


@dataclass(frozen=True)
class FaceFrame:
    origin: np.ndarray
    ex: np.ndarray
    ey: np.ndarray
    iod: float

    def to_face(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = np.asarray(xy, dtype=np.float64) - self.origin
        return d @ self.ex, d @ self.ey

    def to_image(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self.origin + np.multiply.outer(u, self.ex) + np.multiply.outer(v, self.ey)

    def vector(self, du: np.ndarray, dv: np.ndarray) -> np.ndarray:
        return np.multiply.outer(du, self.ex) + np.multiply.outer(dv, self.ey)


def face_frame(xy: np.ndarray) -> FaceFrame:
    right_eye = xy[lm.RIGHT_EYE].mean(axis=0)  # image left
    left_eye = xy[lm.LEFT_EYE].mean(axis=0)
    across = (left_eye - right_eye).astype(np.float64)
    iod = float(np.linalg.norm(across))
    ex = across / iod
    ey = np.array([-ex[1], ex[0]])
    origin = xy[lm.INNER_MOUTH_CORNERS].mean(axis=0).astype(np.float64)
    return FaceFrame(origin, ex, ey, iod)


def _sorted_curve(frame: FaceFrame, xy: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u, v = frame.to_face(xy[ids])
    order = np.argsort(u)
    return u[order], v[order]


@dataclass(frozen=True)
class LipTargets:
    """Where the inner lip contours go, for painting the mouth interior (face coordinates, sorted by u)."""

    upper_u: np.ndarray
    upper_v: np.ndarray
    lower_u: np.ndarray
    lower_v: np.ndarray
    width_scale: float
    upper_shift: float
    """How far the upper lip's centre moved down (face px): the upper teeth move with it."""


class MouthRig:
    """Lip and jaw control displacements for an opening `o` (-1 pressed … 0 closed … 1 wide) and shape `s`
    (-1 rounded … +1 spread), starting from whatever the photo's mouth does (a smile with parted lips
    is closed first, so that zero means a closed mouth)."""

    def __init__(self, xy: np.ndarray, frame: FaceFrame) -> None:
        self.frame = frame
        self.xy = xy
        self.iod = frame.iod
        self.upper_u, self.upper_v = _sorted_curve(frame, xy, lm.LIPS_INNER_UPPER)
        self.lower_u, self.lower_v = _sorted_curve(frame, xy, lm.LIPS_INNER_LOWER)
        u_corners, _ = frame.to_face(xy[lm.INNER_MOUTH_CORNERS])
        self.half_width = float(max(abs(u_corners).max(), 0.2 * self.iod))
        self.source_gap = np.maximum(self._interp_lower(self.upper_u) - self.upper_v, 0.0)
        _, v_chin = frame.to_face(xy[lm.CHIN])
        self.chin_v = float(max(v_chin, 0.3 * self.iod))
        _, v_nose = frame.to_face(xy[2])
        self.nose_v = float(v_nose)
        _, v_mid = frame.to_face(xy[[13, 14]])
        _, v_inner = frame.to_face(xy[lm.INNER_MOUTH_CORNERS])
        lift = (float(v_mid.mean()) - float(v_inner.mean())) / self.iod
        self.photo_smile = float(
            np.clip((lift - NEUTRAL_CORNER_LIFT) / (FULL_SMILE_CORNER_LIFT - NEUTRAL_CORNER_LIFT), 0.0, 1.0)
        )
        """How much the photo smiles: 0 neutral … 1 a full smile, from how far its mouth corners are raised."""

    def _interp_upper(self, u: np.ndarray) -> np.ndarray:
        return np.interp(u, self.upper_u, self.upper_v)

    def _interp_lower(self, u: np.ndarray) -> np.ndarray:
        return np.interp(u, self.lower_u, self.lower_v)

    def gap_at(self, u: np.ndarray) -> np.ndarray:
        return np.maximum(self._interp_lower(u) - self._interp_upper(u), 0.0)

    @property
    def centre_gap(self) -> float:
        return float(self.gap_at(np.array([0.0]))[0])

    def _profile(self, u: np.ndarray) -> np.ndarray:
        return np.clip(np.abs(u) / self.half_width, 0.0, 1.0)

    def controls(
        self, opening: float, shape: float, smile: float | None = None
    ) -> tuple[dict[int, np.ndarray], set[int], LipTargets]:
        """(displacements of control landmarks in image px, landmarks pinned at zero, inner-lip targets).

        `smile` is the smile amount to draw (0 neutral … 1 full; None: the photo's own): the corners rise and
        pull out along the lips, and the cheeks follow them through the harmonic fill.
        """
        iod = self.iod
        op, press = max(opening, 0.0), max(-opening, 0.0)
        spread, rnd = max(shape, 0.0), max(-shape, 0.0)
        change = 0.0 if smile is None else smile - self.photo_smile
        k = (
            1.0
            + SPREAD_WIDENING * spread
            - ROUND_NARROWING * rnd
            + PRESS_WIDENING * press
            + SMILE_WIDENING * iod * change / self.half_width
        )
        gmax = OPEN_MAX * iod * op * (1.0 - 0.3 * spread - 0.1 * rnd)
        exponent = 0.5 + 0.3 * spread - 0.1 * rnd

        def gap(u: np.ndarray) -> np.ndarray:
            return gmax * (1.0 - self._profile(u) ** 2) ** exponent

        def drop(u: np.ndarray) -> np.ndarray:
            # Rounding also takes the smile out of the corners: they come down towards the lip line.
            corner = 0.25 * gmax - 0.05 * iod * spread + 0.05 * iod * rnd - SMILE_LIFT * iod * change
            return corner * self._profile(u) ** 2

        def mid(u: np.ndarray) -> np.ndarray:
            return self._interp_upper(u) + UPPER_SHARE_OF_CLOSING * self.gap_at(u)

        def upper_dv(u: np.ndarray) -> np.ndarray:
            return mid(u) - UPPER_SHARE_OF_OPENING * gap(u) + drop(u) - self._interp_upper(u)

        def lower_dv(u: np.ndarray) -> np.ndarray:
            return mid(u) + (1.0 - UPPER_SHARE_OF_OPENING) * gap(u) + drop(u) - self._interp_lower(u)

        moves: dict[int, np.ndarray] = {}

        def put(ids: np.ndarray, dv_fn: Callable[[np.ndarray], np.ndarray], extra: float = 0.0) -> None:
            u, _ = self.frame.to_face(self.xy[ids])
            bulge = 1.0 - self._profile(u) ** 2
            dv = dv_fn(u) + extra * bulge
            du = u * (k - 1.0)
            for i, d in zip(ids.tolist(), self.frame.vector(du, dv), strict=True):
                moves[i] = d

        lip_press = PRESS_ROLL * iod * press
        pucker = PUCKER * iod * rnd
        put(lm.LIPS_INNER_UPPER, upper_dv)
        put(lm.LIPS_INNER_LOWER[1:-1], lower_dv)
        # The upper lip's outer edge follows its inner edge only partly, so closing a smile rolls more of the
        # red of the lip into view instead of sliding the skin above it down (a closed smile keeps its upper lip).
        put(lm.LIPS_OUTER_UPPER, lambda u: 0.8 * upper_dv(u) - 0.35 * (mid(u) - self._interp_upper(u)),
            extra=lip_press - pucker)  # fmt: skip
        put(lm.LIPS_OUTER_LOWER[1:-1], lower_dv, extra=-lip_press + pucker)
        for outer, inner in zip(lm.MOUTH_CORNERS.tolist(), lm.INNER_MOUTH_CORNERS.tolist(), strict=True):
            moves[outer] = moves[inner]

        jaw = 1.1 * (1.0 - UPPER_SHARE_OF_OPENING) * gmax
        _, oval_v = self.frame.to_face(self.xy[lm.FACE_OVAL])
        pinned: set[int] = set()
        for i, v in zip(lm.FACE_OVAL.tolist(), oval_v, strict=True):
            if v <= 0.0:
                pinned.add(i)
            else:
                w = float(np.clip(v / self.chin_v, 0.0, 1.0) ** 1.5)
                moves[i] = self.frame.vector(np.array(0.0), np.array(jaw * w))
        _, all_v = self.frame.to_face(self.xy)
        pinned |= {int(i) for i in np.flatnonzero(all_v < self.nose_v)} - set(moves)
        pinned |= set(NOSE_BRIDGE) - set(moves)

        uu = np.linspace(-self.half_width * k, self.half_width * k, 41)
        targets = LipTargets(
            upper_u=uu,
            upper_v=self._interp_upper(uu / k) + upper_dv(uu / k),
            lower_u=uu,
            lower_v=self._interp_lower(uu / k) + lower_dv(uu / k),
            width_scale=k,
            upper_shift=float(upper_dv(np.array([0.0]))[0]),
        )
        return moves, pinned, targets


class EyeRig:
    """Brow control displacements: brow 0 (rest) … 1 (raised). The lids stay where they are (blinks are
    painted over them, see `eyelids`), so a raised brow never tugs at the eyes."""

    def __init__(self, xy: np.ndarray, frame: FaceFrame) -> None:
        self.frame = frame
        self.xy = xy

    def controls(self, brow: float) -> tuple[dict[int, np.ndarray], set[int]]:
        moves: dict[int, np.ndarray] = {}
        iod = self.frame.iod
        for ids in (lm.RIGHT_EYE, lm.LEFT_EYE):
            for i in ids.tolist():
                moves[i] = np.zeros(2)
        for ids in (lm.RIGHT_BROW, lm.LEFT_BROW):
            for i in ids.tolist():
                moves[i] = self.frame.vector(np.array(0.0), np.array(-BROW_RAISE * iod * brow))
        return moves, set(NOSE_BRIDGE)


def eye_region(xy: np.ndarray, iod: float) -> tuple[float, float, float, float]:
    ids = np.concatenate([lm.RIGHT_EYE, lm.LEFT_EYE, lm.RIGHT_BROW, lm.LEFT_BROW])
    lo, hi = xy[ids].min(axis=0), xy[ids].max(axis=0)
    return lo[0] - 0.35 * iod, lo[1] - 0.4 * iod, hi[0] + 0.35 * iod, hi[1] + 0.3 * iod


def mouth_region(xy: np.ndarray, frame: FaceFrame) -> tuple[float, float, float, float]:
    iod = frame.iod
    corners = frame.to_image(np.array([-1.25 * iod, 1.25 * iod]), np.array([0.0, 0.0]))
    chin = xy[lm.CHIN]
    top = xy[lm.NOSE_TIP][1] + 0.05 * iod
    return corners[:, 0].min(), top, corners[:, 0].max(), chin[1] + 0.55 * iod
