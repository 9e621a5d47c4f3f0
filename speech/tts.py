"""The text-to-speech contract shared by every engine (piper, espeak-ng, edge-tts)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator

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

    async def stream_progressive(self, drafts: AsyncIterable[str]) -> AsyncIterator[SpeechChunk | Notice]:
        """Speak one unit while it is still being written: `drafts` yields its text so far, each draft a
        longer version of the one before, and the last draft is the whole unit.

        A live reply's first sentence can take the LLM a second to write; an engine that can speak its
        first words before the rest is known starts that much sooner, and must sound as if it had the
        whole unit (no pause where the text was not yet there). Engines that need the whole text, like
        this default, wait for the last draft. An error raised by `drafts` stops the speech and propagates.
        """
        async for item in self.stream(await last_draft(drafts)):
            yield item

    async def aclose(self) -> None:  # noqa: B027 - engines without resources need nothing
        """Release models or connections."""


async def last_draft(drafts: AsyncIterable[str]) -> str:
    """The whole unit: the last of its drafts ("" if there were none)."""
    text = ""
    async for draft in drafts:
        text = draft
    return text
