"""Helpers shared by the TTS engine tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from core.events import CANONICAL_SAMPLE_RATE, Notice, SpeechChunk, Viseme, VisemeEvent, WordTiming
from speech.tts import TTSEngine

T = TypeVar("T")
VOWELS = frozenset({Viseme.AA, Viseme.E, Viseme.IH, Viseme.OH, Viseme.OU})


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


def logged(call: Callable[..., T], name: str, work: list[str]) -> Callable[..., T]:
    """`call`, appending `name` to the `work` log each time it starts."""

    def wrapper(*args: object) -> T:
        work.append(name)
        return call(*args)

    return wrapper


def cancel_after_first_chunk(engine: TTSEngine, text: str, work: list[str], pause: float = 0.0) -> int:
    """Start streaming `text` and cancel as soon as the first chunk arrives (the consumer waiting `pause`
    after each chunk); return how many chunks arrived.

    `work` is the log the test's spies on the engine's synthesis calls append to when a call starts;
    "cancel" is appended just before the cancel, and every worker thread has finished by the time this
    returns (asyncio.run waits for them). The engines await one call at a time, so at most one entry may
    follow "cancel" (the call that was already under way); more is synthesis that went on for a reply
    nobody will hear. A count, where a time bound would flake on a loaded machine.
    """

    async def run() -> int:
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
        work.append("cancel")
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return len(got)
        raise AssertionError("the stream finished instead of being cancelled")

    return asyncio.run(run())


def after_cancel(work: list[str]) -> list[str]:
    """The synthesis calls that started after the cancel in a `cancel_after_first_chunk` log."""
    return work[work.index("cancel") + 1 :]


def envelope_lag(pcm: np.ndarray, visemes: list[VisemeEvent]) -> tuple[float, float]:
    """(lag in seconds, correlation) that best matches the loudness envelope to the viseme timeline.

    Vowels are loud and silences / closed lips quiet, so a timeline that sits on its audio correlates
    best at lag 0; a positive lag means the audio comes later than its visemes.
    """
    hop = CANONICAL_SAMPLE_RATE // 100
    n = len(pcm) // hop
    frames = pcm[: n * hop].astype(np.float32).reshape(n, hop)
    loudness = np.log1p(np.sqrt((frames**2).mean(axis=1)))
    shape = np.zeros(n)
    for v in visemes:
        value = 1.0 if v.viseme in VOWELS else -1.0 if v.viseme in (Viseme.SIL, Viseme.PP) else 0.0
        shape[int(v.start * 100) : int(v.end * 100)] = value
    loudness = (loudness - loudness.mean()) / loudness.std()
    shape = (shape - shape.mean()) / shape.std()
    lags = range(-15, 16)
    scores = [float(np.mean(loudness[max(0, k) : n + min(0, k)] * shape[max(0, -k) : n - max(0, k)])) for k in lags]
    best = int(np.argmax(scores))
    return lags[best] / 100, scores[best]
