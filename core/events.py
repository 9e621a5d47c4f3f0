"""Typed values that travel between the speech stack, the renderers and the server.

Times are seconds. Audio is mono PCM16 (`numpy.int16`) at `CANONICAL_SAMPLE_RATE` unless a
field says otherwise; one rate everywhere means resampling happens once, at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

import numpy as np

CANONICAL_SAMPLE_RATE = 24_000
"""24 kHz divides evenly by 20, 24, 25, 30 and 40 FPS, so every video frame owns a whole number of samples."""


class Viseme(IntEnum):
    """Mouth-shape classes (the 15-class MPEG-4 / Oculus set).

    SIL is the closed, relaxed mouth; PP is pressed lips (p, b, m). The vowels run from
    wide open (AA) through spread (E, IH) to rounded (OH, OU).
    """

    SIL = 0
    PP = 1
    FF = 2
    TH = 3
    DD = 4
    KK = 5
    CH = 6
    SS = 7
    NN = 8
    RR = 9
    AA = 10
    E = 11
    IH = 12
    OH = 13
    OU = 14


@dataclass(frozen=True, slots=True)
class VisemeEvent:
    viseme: Viseme
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class WordTiming:
    text: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """A piece of synthesized speech.

    `visemes` and `words` are timed relative to the start of *this chunk's* `pcm`; an event may
    run past the chunk's end but never starts before it.
    """

    pcm: np.ndarray
    sample_rate: int = CANONICAL_SAMPLE_RATE
    visemes: tuple[VisemeEvent, ...] = ()
    words: tuple[WordTiming, ...] = ()

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.sample_rate


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should be told about mid-stream (e.g. a TTS fallback)."""

    message: str
    level: str = "warning"


@dataclass(slots=True)
class Frame:
    """One video frame and exactly its own slice of audio (`sample_rate / fps` samples)."""

    index: int
    image: np.ndarray
    """BGR uint8, shape (height, width, 3)."""
    audio: np.ndarray
    """int16, exactly `samples_per_frame` long (silence when idle)."""
    speaking: bool = False
    mouth_open: float = 0.0
    """The renderer's own lip opening for this frame, 0..1, for metrics and tests."""
    extras: dict[str, float] = field(default_factory=dict)


class Expression(StrEnum):
    """Expressions an agent can cue on a renderer (`Renderer.cue`), by name on the wire.

    SMILE and NEUTRAL move the mouth (NEUTRAL relaxes a smiling photo); RAISED_BROWS and CONCERN move the
    brows; NOD_YES and SHAKE_NO are head gestures; THINKING looks away and up for a moment.
    """

    SMILE = "smile"
    NEUTRAL = "neutral"
    RAISED_BROWS = "raised_brows"
    CONCERN = "concern"
    NOD_YES = "nod_yes"
    SHAKE_NO = "shake_no"
    THINKING = "thinking"
