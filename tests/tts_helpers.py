"""Helpers shared by the TTS engine tests."""

from __future__ import annotations

import asyncio

import numpy as np

from core.events import SpeechChunk, VisemeEvent, WordTiming
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
