"""The text-to-speech contract shared by every engine (piper, espeak-ng, edge-tts)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from core.events import CANONICAL_SAMPLE_RATE, Notice, SpeechChunk


class TTSEngine(ABC):
    """Speaks one sentence or clause at a time.

    `stream()` yields `SpeechChunk`s (mono int16 at `CANONICAL_SAMPLE_RATE`, visemes and word timings
    relative to each chunk's start) as soon as audio exists, and may yield a `Notice` (e.g. "online
    voice unreachable, using the offline voice"). Cancelling the consuming task stops synthesis
    mid-sentence.
    """

    sample_rate: int = CANONICAL_SAMPLE_RATE
    name: str = "tts"

    @abstractmethod
    def stream(self, text: str) -> AsyncIterator[SpeechChunk | Notice]: ...

    async def aclose(self) -> None:  # noqa: B027 - engines without resources need nothing
        """Release models or connections."""
