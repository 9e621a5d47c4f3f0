"""What keeps a still portrait alive: blinks at natural random intervals, breathing, and head motion in 3-D
(turn, nod, tilt) that drifts slowly when idle and follows the speech when talking.

Speech moves the head the way it moves people's: a nod on each stressed syllable, the head rising with the
voice's pitch, a new posture (a little turned and tilted) at the start of each phrase and a settling nod at
its end, and a livelier drift while the voice is loud. The drift is filtered random noise, never a sum of
sines, so it does not repeat. Everything passes through a critically damped spring, so the head has mass:
smooth from frame to frame whatever drives it. Seeded, so tests and recordings are reproducible; `amount` 0
freezes everything (cued expressions still play).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar.expressions import ExpressionState
from avatar.prosody import Prosody

LIMITS = {"yaw": 6.5, "pitch": 6.0, "roll": 3.0}
"""Commanded degrees the head approaches softly but never passes. The face-mesh detector reads about 0.5-0.9
of a commanded turn (the warp keeps the head's outline), so these read as up to ~±5°; further, the face drifts
from the photo's identity (dlib distance +0.05 at 8°)."""
DRIFT = {"yaw": 1.2, "pitch": 0.8, "roll": 0.6}
"""Typical idle drift (degrees, standard deviation): a listener holds fairly still."""
DRIFT_SECONDS = {"yaw": 3.0, "pitch": 2.2, "roll": 3.5}
"""Correlation time of each axis' drift: slow wandering, not trembling."""
GESTURE = {"yaw": 1.8, "pitch": 1.2, "roll": 0.7}
"""Typical extra motion while talking (degrees, standard deviation), quicker than the idle drift."""
GESTURE_SECONDS = 0.8
STRESS_NOD = 3.5
"""Degrees the chin dips on a fully stressed syllable."""
PITCH_LIFT = 0.3
"""Degrees the head rises per semitone the voice goes up."""
PHRASE_TURN, PHRASE_TILT, PHRASE_NOD = 3.5, 1.5, 1.2
"""Typical new posture at a phrase start (degrees, standard deviation), and the settling nod at its end."""
TURNED_PHOTO = 15.0
"""A photo whose face is turned this many degrees (or more) turns further away by 0.3 of the usual limit."""
POSTURE_SECONDS = 0.25
"""Time constant of taking up a new posture (before the spring, which adds its own inertia)."""
SPRING_HZ = 1.6
"""Natural frequency of the head's spring: the head follows its targets within ~0.2 s, without overshoot."""
NOD_HZ = 1.2
"""A kicked nod spring is deepest 1/(2π·NOD_HZ) s after the kick (~0.13 s) and back within ~0.6 s."""


@dataclass(frozen=True)
class Pose:
    blink: float
    brow: float
    """-1 concerned … 0 rest … +1 raised."""
    dx: float
    dy: float
    angle: float
    """Head roll in radians."""
    yaw: float = 0.0
    """Head turn in radians (positive: the face turns to the image's right)."""
    pitch: float = 0.0
    """Head nod in radians (positive: chin down)."""
    gaze_x: float = 0.0
    """Iris shift in iris radii."""
    gaze_y: float = 0.0
    smile: float = 0.0
    """The expression's smile weight for the mouth bank (-1 … 1)."""


class _Drift:
    """Smooth, non-repeating random wander: white noise through two first-order low-passes, unit variance."""

    def __init__(self, rng: np.random.Generator, seconds: float, fps: int) -> None:
        self.rng = rng
        a = float(np.exp(-1.0 / (seconds * fps)))
        self.a = a
        # Two cascaded one-pole low-passes leave (1-a)^4 (1+a^2) / (1-a^2)^3 of the input variance.
        self.gain = float(np.sqrt((1 - a * a) ** 3 / ((1 - a) ** 4 * (1 + a * a))))
        self.x = 0.0
        self.y = 0.0

    def step(self) -> float:
        a = self.a
        self.x = a * self.x + (1 - a) * self.rng.standard_normal() * self.gain
        self.y = a * self.y + (1 - a) * self.x
        return self.y


class _Spring:
    """Critically damped second-order follower: position chases a target with no overshoot and no jumps."""

    def __init__(self, hz: float, fps: int) -> None:
        self.w = 2 * np.pi * hz
        self.dt = 1.0 / fps
        self.x = 0.0
        self.v = 0.0

    def step(self, target: float) -> float:
        # Two half steps of semi-implicit Euler keep it stable and accurate at 20-40 fps.
        for _ in range(2):
            h = self.dt / 2
            self.v += h * (self.w * self.w * (target - self.x) - 2 * self.w * self.v)
            self.x += h * self.v
        return self.x


def _soft(x: float, limit: float, upper: float | None = None) -> float:
    """`x` eased into (-limit, limit), or into (-limit, upper) when `upper` is given."""
    top = limit if upper is None or x < 0 else upper
    return float(top * np.tanh(x / top))


class Liveliness:
    def __init__(
        self, fps: int, iod: float, amount: float = 1.0, seed: int | None = None, photo_yaw: float = 0.0
    ) -> None:
        self.fps = fps
        self.amount = max(0.0, float(amount))
        self.rng = np.random.default_rng(seed)
        self.scale = iod / 43.0
        # A face already turned in the photo turns further away only a little: the warp cannot show the far
        # side of the face it would bring into view, and the face stops looking like the same person.
        away = LIMITS["yaw"] * float(np.clip(1.0 - abs(photo_yaw) / TURNED_PHOTO, 0.3, 1.0))
        self._yaw_limits = (LIMITS["yaw"], away) if photo_yaw >= 0 else (away, LIMITS["yaw"])
        """(towards the image's left, towards its right) limits of the commanded yaw."""
        """Motion in pixels is specified for the sample portrait (43 px between the eyes) and scaled."""
        self.t = 0.0
        self._next_blink = self.rng.uniform(1.0, 4.0)
        self._blink_frames: list[float] = []
        self._energy = 0.0
        self._emphasis = 0.0
        self._lift = 0.0
        self._posture = dict.fromkeys(LIMITS, 0.0)
        self._held = dict.fromkeys(LIMITS, 0.0)
        """The posture eased towards: a new one is taken up over ~0.4 s, never in a jump."""
        self._nod = _Spring(NOD_HZ, fps)
        self._drift = {axis: _Drift(self.rng, DRIFT_SECONDS[axis], fps) for axis in LIMITS}
        self._gesture = {axis: _Drift(self.rng, GESTURE_SECONDS, fps) for axis in LIMITS}
        self._talking = 0.0
        """0..1: how much the head is in talking mode (eases in over ~0.3 s, out over ~0.8 s)."""
        self._sway = {axis: _Drift(self.rng, 3.0, fps) for axis in ("dx", "dy")}
        self._springs = {axis: _Spring(SPRING_HZ, fps) for axis in LIMITS}

    def _blink(self) -> float:
        """Lid closure for this frame: a quick close, one fully shut frame, a slower opening."""
        if not self._blink_frames and self.t >= self._next_blink:
            seconds = self.rng.uniform(0.1, 0.25)
            frames = max(3, round(seconds * self.fps))
            closing = max(1, round(0.3 * frames))
            opening = max(1, frames - closing - 1)
            # At least one half-closed frame on the way down: a lid that jumps from open to shut reads as a flicker.
            shut = [float(x) for x in np.linspace(0.0, 1.0, closing + 2)[1:]]
            reopen = [float(1.0 - np.sin(0.5 * np.pi * x)) for x in np.linspace(0.0, 1.0, opening + 2)[1:-1]]
            self._blink_frames = [*shut, *reopen]
            double = self.rng.random() < 0.1
            self._next_blink = self.t + (self.rng.uniform(0.3, 0.45) if double else self.rng.uniform(2.0, 6.0))
        return self._blink_frames.pop(0) if self._blink_frames else 0.0

    def _speech_targets(self, prosody: Prosody, speaking: bool) -> dict[str, float]:
        """Degrees the speech asks of each axis this frame (before the spring)."""
        dt = 1.0 / self.fps
        energy = prosody.energy
        self._energy += (energy - self._energy) * (1.0 - np.exp(-dt / 0.25))
        fast = energy - self._energy
        self._emphasis += (max(fast, 0.0) * (1.0 if speaking else 0.0) - self._emphasis) * (1.0 - np.exp(-dt / 0.12))
        if prosody.phrase_start:
            self._posture = {
                "yaw": float(self.rng.normal(0.0, PHRASE_TURN)),
                "pitch": float(self.rng.normal(0.0, 0.5 * PHRASE_NOD)),
                "roll": float(self.rng.normal(0.0, PHRASE_TILT)),
            }
        if prosody.phrase_end:
            self._posture = {axis: 0.3 * value for axis, value in self._posture.items()}
            self._nod.v += PHRASE_NOD * self._nod.w * np.e
        if prosody.stress > 0.0:
            # A kick of w·e·A peaks at A: the chin dips and comes back up.
            self._nod.v += STRESS_NOD * prosody.stress * self._nod.w * np.e
        lift = prosody.pitch if prosody.voiced else 0.0
        self._lift += (lift - self._lift) * (1.0 - np.exp(-dt / (0.15 if prosody.voiced else 0.6)))
        nod = self._nod.step(0.0)
        ease = 1.0 - np.exp(-dt / POSTURE_SECONDS)
        for axis, value in self._posture.items():
            self._held[axis] += (value - self._held[axis]) * ease
        return {
            "yaw": self._held["yaw"],
            "pitch": self._held["pitch"] + nod - PITCH_LIFT * self._lift,
            "roll": self._held["roll"],
        }

    def _limited(self, yaw: float, pitch: float, roll: float) -> tuple[float, float, float]:
        """Commanded degrees eased into the limits: a cued gesture on top of the drift never overshoots them."""
        return (
            _soft(yaw, *self._yaw_limits),
            _soft(pitch, LIMITS["pitch"]),
            _soft(roll, LIMITS["roll"]),
        )

    def step(self, prosody: Prosody, speaking: bool, cue: ExpressionState | None = None) -> Pose:
        cue = cue or ExpressionState()
        rad = np.radians
        if self.amount == 0.0:
            self.t += 1.0 / self.fps
            yaw, pitch, roll = self._limited(cue.yaw, cue.pitch, cue.roll)
            return Pose(
                0.0, cue.brow, 0.0, 0.0, float(rad(roll)), float(rad(yaw)), float(rad(pitch)),
                cue.gaze_x, cue.gaze_y, cue.smile,
            )  # fmt: skip
        speech = self._speech_targets(prosody, speaking)
        talk = 1.0 + self._energy
        voiced = 1.0 if speaking and prosody.energy > 0.05 else 0.0
        self._talking += (voiced - self._talking) * (1.0 - np.exp(-1.0 / ((0.3 if voiced else 0.8) * self.fps)))
        angles = {}
        for axis in LIMITS:
            drift = DRIFT[axis] * self._drift[axis].step() * talk
            gesture = GESTURE[axis] * self._gesture[axis].step() * self._talking
            angles[axis] = self._springs[axis].step(self.amount * (drift + gesture + speech[axis]))
        yaw, pitch, roll = self._limited(
            angles["yaw"] + cue.yaw, angles["pitch"] + cue.pitch, angles["roll"] + cue.roll
        )
        s = self.scale * self.amount
        breath = 0.35 * np.sin(2 * np.pi * self.t / 4.2)
        dx = 0.6 * self._sway["dx"].step() * s
        dy = (0.4 * self._sway["dy"].step() + breath + 0.8 * self._emphasis) * s
        speech_brow = float(np.clip(2.2 * self._emphasis + 0.25 * self._energy, 0.0, 1.0)) * min(self.amount, 1.0)
        brow = float(np.clip(cue.brow + speech_brow * (1.0 - max(-cue.brow, 0.0)), -1.0, 1.0))
        blink = self._blink()
        self.t += 1.0 / self.fps
        return Pose(
            blink, brow, float(dx), float(dy), float(rad(roll)), float(rad(yaw)), float(rad(pitch)),
            cue.gaze_x, cue.gaze_y, cue.smile,
        )  # fmt: skip
