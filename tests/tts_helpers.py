"""Helpers shared by the TTS engine tests."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from core.events import Notice, SpeechChunk, VisemeEvent, WordTiming
from speech.tts import TTSEngine


def collect(engine: TTSEngine, text: str) -> tuple[np.ndarray, list[VisemeEvent], list[WordTiming], list[SpeechChunk]]:
    """Stream `text`; return the audio and the events moved to absolute time."""

    async def run() -> list[SpeechChunk]:
        return [c async for c in engine.stream(text) if isinstance(c, SpeechChunk)]

    chunks = asyncio.run(run())
    visemes: list[VisemeEvent] = []
    words: list[WordTiming] = []
    offset = 0.0
    for c in chunks:
        visemes += [VisemeEvent(v.viseme, v.start + offset, v.end + offset) for v in c.visemes]
        words += [WordTiming(w.text, w.start + offset, w.end + offset) for w in c.words]
        offset += c.duration
    pcm = np.concatenate([c.pcm for c in chunks]) if chunks else np.zeros(0, np.int16)
    return pcm, visemes, words, chunks


def cancel_after_first_chunk(engine: TTSEngine, text: str, pause: float = 0.0) -> tuple[float, int]:
    """Start streaming `text`, cancel as soon as the first chunk arrives (the consumer waiting `pause`
    after each chunk); return how long cancelling took and how many chunks arrived."""

    async def run() -> tuple[float, int]:
        got: list[SpeechChunk | Notice] = []
        first = asyncio.Event()

        async def consume() -> None:
            async for c in engine.stream(text):
                got.append(c)
                first.set()
                if pause:
                    await asyncio.sleep(pause)

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        started = time.perf_counter()
        try:
            await task
        except asyncio.CancelledError:
            return time.perf_counter() - started, len(got)
        raise AssertionError("the stream finished instead of being cancelled")

    return asyncio.run(run())
