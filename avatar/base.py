"""The contract every renderer (CPU realtime, MuseTalk, LatentSync) honours.

A renderer is a per-session object that owns an audio queue. Each `render_next()` takes exactly
`samples_per_frame` samples from that queue (or silence when it is empty) and returns the frame
drawn for them, so audio and video cannot drift: they are produced in the same call.

Every renderer also takes expression cues (`cue`): the CPU renderer draws them; an engine that cannot show
one (a lip-sync network that only redraws the mouth) accepts it, checks it and lets it pass, so an agent
can cue without knowing which engine is drawing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from avatar.expressions import check_cue
from core.errors import UserError
from core.events import CANONICAL_SAMPLE_RATE, Expression, Frame, VisemeEvent


def mono_pcm(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
    """The speech a renderer is fed as one flat int16 array; anything else is one line naming what to fix."""
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16:
        raise UserError(f"renderer audio must be int16 PCM at {sample_rate} Hz, got {pcm.dtype}")
    if pcm.ndim == 2 and 1 in pcm.shape:
        pcm = pcm.reshape(-1)
    if pcm.ndim != 1:
        raise UserError(f"renderer audio must be mono (one channel), got shape {pcm.shape}: downmix it first")
    return pcm


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

    def cue(
        self,
        expression: Expression | str,
        intensity: float = 1.0,
        at: float | None = None,
        duration: float | None = None,
    ) -> None:
        """Show `expression` at `intensity` (0..1), blended in and out.

        `at` is in seconds on the audio timeline, counted from the end of the audio queued so far, like the
        viseme times of the next `feed`: 0 starts it with the next speech fed, -0.5 half a second before the
        queued speech ends; None starts it on the next frame. `duration` is how long it holds (seconds; each
        expression has its own default). A cue that has not started when `reset` interrupts is dropped.
        This default checks the cue (UserError on a bad one) and does not show it: engines that can override it.
        """
        check_cue(expression, intensity, duration)

    @abstractmethod
    def reset(self) -> None:
        """Interrupt: drop all queued audio and visemes at once; the next frame is idle."""

    @property
    @abstractmethod
    def queued_samples(self) -> int:
        """Speech samples waiting to be rendered."""
