"""The contract every renderer (CPU realtime, MuseTalk, LatentSync) honours.

A renderer is a per-session object that owns an audio queue. Each `render_next()` takes exactly
`samples_per_frame` samples from that queue (or silence when it is empty) and returns the frame
drawn for them, so audio and video cannot drift: they are produced in the same call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from core.events import CANONICAL_SAMPLE_RATE, Frame, VisemeEvent


class Renderer(ABC):
    fps: int
    sample_rate: int = CANONICAL_SAMPLE_RATE

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    @property
    @abstractmethod
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames this renderer emits."""

    @abstractmethod
    def feed(self, pcm: np.ndarray, visemes: Sequence[VisemeEvent] = ()) -> None:
        """Queue speech: mono int16 at `sample_rate`; viseme times are relative to the start of `pcm`."""

    @abstractmethod
    def render_next(self) -> Frame:
        """Consume one frame's worth of queued audio (silence if none) and draw its frame."""

    @abstractmethod
    def reset(self) -> None:
        """Interrupt: drop all queued audio and visemes at once; the next frame is idle."""

    @property
    @abstractmethod
    def queued_samples(self) -> int:
        """Speech samples waiting to be rendered."""
