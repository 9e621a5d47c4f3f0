"""The cue track: expressions an agent asked for, blended in and out over the frames they cover.

A cue is an expression, the frame it starts on, an intensity 0..1 and how long it lasts. Held expressions
(smile, neutral, raised brows, concern, thinking) ease in, hold and ease out; gestures (nod yes, shake no)
are a few swings of the head inside a smooth window. Overlapping cues add up, each channel clipped to its range.
The track knows nothing of pixels: it hands the renderer a smile weight for the mouth bank, a brow level for
the eye bank, head angles and a gaze for the one remap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import UserError
from core.events import Expression


@dataclass(frozen=True)
class Timing:
    attack: float
    """Seconds to blend in."""
    hold: float
    """Default seconds at full strength (the whole length, for a gesture)."""
    release: float
    """Seconds to blend out."""


TIMINGS: dict[Expression, Timing] = {
    Expression.SMILE: Timing(0.35, 2.5, 0.7),
    Expression.NEUTRAL: Timing(0.35, 2.5, 0.7),
    Expression.RAISED_BROWS: Timing(0.15, 0.8, 0.4),
    Expression.CONCERN: Timing(0.4, 2.5, 0.7),
    Expression.THINKING: Timing(0.3, 1.8, 0.5),
    Expression.NOD_YES: Timing(0.0, 1.2, 0.0),
    Expression.SHAKE_NO: Timing(0.0, 1.4, 0.0),
}
NOD_DEGREES, NOD_HZ = 6.0, 2.2
"""A full-intensity 'yes': the chin dips this far (commanded degrees), this many times a second."""
SHAKE_DEGREES, SHAKE_HZ = 7.0, 1.8
"""A full-intensity 'no': the head turns this far to each side, this many swings a second."""
THINK_GAZE = (0.7, -0.6)
"""Thinking: the eyes go this far sideways and up (iris radii)."""
THINK_YAW, THINK_PITCH = 4.0, -3.0
"""Thinking: the head follows the eyes a little, turned and lifted (degrees)."""
CONCERN_TILT, CONCERN_PITCH = 2.0, 1.0
"""Concern: a slight sideways tilt of the head and a lowered chin (degrees)."""
MAX_SECONDS = 60.0
"""The longest hold a cue may ask for: an expression held longer stops reading as one."""


@dataclass(frozen=True)
class ExpressionState:
    smile: float = 0.0
    """-1 neutral (from a smiling photo) … 0 the photo's own … +1 full smile: for the mouth bank."""
    brow: float = 0.0
    """-1 concerned (inner brows up and together) … 0 rest … +1 raised."""
    yaw: float = 0.0
    """Degrees added to the head's turn (positive: the face turns to the image's right)."""
    pitch: float = 0.0
    """Degrees added to the head's nod (positive: chin down)."""
    roll: float = 0.0
    """Degrees added to the head's tilt (positive: clockwise on the image)."""
    gaze_x: float = 0.0
    """Iris shift in iris radii (positive: to the image's right)."""
    gaze_y: float = 0.0
    """Iris shift in iris radii (positive: down)."""


@dataclass(frozen=True)
class Cue:
    expression: Expression
    start: int
    """Frame index the expression starts blending in."""
    intensity: float
    seconds: float
    """Hold (or gesture) length in seconds."""
    side: float
    """+1 or -1: which way a thinking glance or a concerned tilt goes."""


def check_cue(expression: object, intensity: float, duration: float | None) -> Expression:
    """The expression named or given, or a UserError saying what is accepted."""
    try:
        chosen = Expression(expression)
    except ValueError:
        names = ", ".join(e.value for e in Expression)
        raise UserError(f"unknown expression {expression!r}: use one of {names}") from None
    if not 0.0 <= float(intensity) <= 1.0:
        raise UserError(f"expression intensity {intensity} is out of range: use 0.0 to 1.0")
    if duration is not None and not 0.0 < float(duration) <= MAX_SECONDS:
        raise UserError(
            f"expression duration {duration} s is out of range: use more than 0 and at most {MAX_SECONDS:.0f}"
        )
    return chosen


def _smooth(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


class ExpressionTrack:
    """The cued expressions of one renderer, evaluated frame by frame."""

    def __init__(self, fps: int, seed: int | None = None) -> None:
        self.fps = fps
        self._cues: list[Cue] = []
        self._rng = np.random.default_rng(seed)

    def add(self, expression: Expression, start: int, intensity: float, duration: float | None) -> None:
        seconds = TIMINGS[expression].hold if duration is None else float(duration)
        side = 1.0 if self._rng.random() < 0.5 else -1.0
        self._cues.append(Cue(expression, int(start), float(intensity), seconds, side))

    def drop_after(self, frame: int) -> None:
        """Forget cues that have not started by `frame` (they went with the speech an interrupt dropped)."""
        self._cues = [c for c in self._cues if c.start <= frame]

    def _envelope(self, cue: Cue, t: float) -> float:
        timing = TIMINGS[cue.expression]
        if t < 0.0:
            return 0.0
        if timing.attack == 0.0:  # a gesture: a smooth window over its whole length
            return float(np.sin(np.pi * min(t / cue.seconds, 1.0)) ** 2) if t < cue.seconds else 0.0
        rise = _smooth(t / timing.attack)
        fall = 1.0 - _smooth((t - timing.attack - cue.seconds) / timing.release)
        return rise * fall

    def _over(self, cue: Cue, t: float) -> bool:
        timing = TIMINGS[cue.expression]
        return t > timing.attack + cue.seconds + timing.release

    def state(self, frame: int) -> ExpressionState:
        """The expression channels at `frame`; finished cues are forgotten."""
        smile = brow = yaw = pitch = roll = gx = gy = 0.0
        kept = []
        for cue in self._cues:
            t = (frame - cue.start) / self.fps
            if self._over(cue, t):
                continue
            kept.append(cue)
            w = self._envelope(cue, t) * cue.intensity
            if w == 0.0:
                continue
            e = cue.expression
            if e is Expression.SMILE:
                smile += w
            elif e is Expression.NEUTRAL:
                smile -= w
            elif e is Expression.RAISED_BROWS:
                brow += w
            elif e is Expression.CONCERN:
                brow -= w
                smile -= 0.3 * w
                roll += CONCERN_TILT * cue.side * w
                pitch += CONCERN_PITCH * w
            elif e is Expression.THINKING:
                gx += THINK_GAZE[0] * cue.side * w
                gy += THINK_GAZE[1] * w
                yaw += THINK_YAW * cue.side * w
                pitch += THINK_PITCH * w
            elif e is Expression.NOD_YES:
                pitch += NOD_DEGREES * w * float(np.sin(np.pi * NOD_HZ * t)) ** 2
            elif e is Expression.SHAKE_NO:
                yaw += SHAKE_DEGREES * w * float(np.sin(2 * np.pi * SHAKE_HZ * t))
        self._cues = kept
        return ExpressionState(
            smile=float(np.clip(smile, -1.0, 1.0)),
            brow=float(np.clip(brow, -1.0, 1.0)),
            yaw=yaw,
            pitch=pitch,
            roll=roll,
            gaze_x=float(np.clip(gx, -1.0, 1.0)),
            gaze_y=float(np.clip(gy, -1.0, 1.0)),
        )
