"""What keeps a still portrait alive: blinks at natural random intervals, breathing, small head motion,
and a little more motion and brow while speaking, following the speech energy.

Seeded, so tests and recordings are reproducible; `amount` 0 freezes everything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pose:
    blink: float
    brow: float
    dx: float
    dy: float
    angle: float
    """Head roll in radians."""


class Liveliness:
    def __init__(self, fps: int, iod: float, amount: float = 1.0, seed: int | None = None) -> None:
        self.fps = fps
        self.amount = max(0.0, float(amount))
        self.rng = np.random.default_rng(seed)
        self.scale = iod / 43.0
        """Motion in pixels is specified for the sample portrait (43 px between the eyes) and scaled."""
        self.t = 0.0
        self._next_blink = self.rng.uniform(1.0, 4.0)
        self._blink_frames: list[float] = []
        self._energy = 0.0
        self._emphasis = 0.0
        r = self.rng
        self._waves = {
            axis: (r.uniform(0.05, 0.35, 3), r.uniform(0, 2 * np.pi, 3), r.uniform(0.5, 1.0, 3))
            for axis in ("dx", "dy", "angle")
        }

    def _noise(self, axis: str) -> float:
        freqs, phases, weights = self._waves[axis]
        return float((weights * np.sin(2 * np.pi * freqs * self.t + phases)).sum() / weights.sum())

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

    def step(self, energy: float, speaking: bool) -> Pose:
        dt = 1.0 / self.fps
        if self.amount == 0.0:
            self.t += dt
            return Pose(0.0, 0.0, 0.0, 0.0, 0.0)
        self._energy += (energy - self._energy) * (1.0 - np.exp(-dt / 0.25))
        fast = energy - self._energy
        self._emphasis += (max(fast, 0.0) * (1.0 if speaking else 0.0) - self._emphasis) * (1.0 - np.exp(-dt / 0.12))
        talk = 1.0 + 0.8 * self._energy
        s = self.scale * self.amount
        dx = 1.3 * talk * self._noise("dx") * s
        breath = 0.35 * np.sin(2 * np.pi * self.t / 4.2)
        dy = (0.8 * talk * self._noise("dy") + breath + 1.2 * self._emphasis) * s
        angle = np.radians(0.8 * talk * self._noise("angle")) * self.amount
        brow = float(np.clip(2.2 * self._emphasis + 0.25 * self._energy, 0.0, 1.0)) * min(self.amount, 1.0)
        blink = self._blink()
        self.t += dt
        return Pose(blink, brow, float(dx), float(dy), float(angle))
