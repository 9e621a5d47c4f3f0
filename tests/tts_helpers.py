"""Helpers shared by the TTS engine tests."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pytest

from core.events import CANONICAL_SAMPLE_RATE, Notice, SpeechChunk, Viseme, VisemeEvent, WordTiming
from speech import tts_piper
from speech.text import SentenceSegmenter, clean_for_speech
from speech.tts import TTSEngine
from speech.tts_piper import Piece, PiperTTS
from speech.visemes import TimedPhoneme

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


def cancel_after_first_chunk(
    engine: TTSEngine, text: str, work: list[str], pause: float = 0.0, drafts: list[str] | None = None
) -> int:
    """Start streaming `text` (or speaking `drafts` progressively, the last one never handed over: the LLM is
    still writing) and cancel as soon as the first chunk arrives (the consumer waiting `pause` after each
    chunk); return how many chunks arrived.

    `work` is the log the test's spies on the engine's synthesis calls append to when a call starts;
    "cancel" is appended just before the cancel, and every worker thread has finished by the time this
    returns (asyncio.run waits for them). The engines await one call at a time, so at most one entry may
    follow "cancel" (the call that was already under way); more is synthesis that went on for a reply
    nobody will hear. With `drafts`, "drafts closed" is logged when the engine stops reading them. A count,
    where a time bound would flake on a loaded machine.
    """

    async def writing() -> AsyncIterator[str]:
        try:
            for draft in (drafts or [])[:-1]:
                yield draft
            await asyncio.Event().wait()
        finally:
            work.append("drafts closed")

    async def run() -> int:
        got: list[SpeechChunk | Notice] = []
        first = asyncio.Event()

        async def consume() -> None:
            async for c in engine.stream(text) if drafts is None else engine.stream_progressive(writing()):
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


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference's length, ignoring case and punctuation."""
    ref = re.findall(r"[a-z0-9']+", reference.lower())
    hyp = re.findall(r"[a-z0-9']+", hypothesis.lower())
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / len(ref)


def llm_tokens(text: str) -> list[str]:
    """LLM-like tokens: each word with its leading space, in pieces of at most four characters (about the
    English average of GPT-style tokenizers), and each punctuation mark on its own."""
    out: list[str] = []
    for word in re.findall(r"\s*[\w']+|\s*[^\w\s']", text):
        out += [word[k : k + 4] for k in range(0, len(word), 4)]
    return out


def unit_drafts(reply: str) -> list[str]:
    """The drafts a live reply hands the voice for its first unit: the cleaned text after each token until the
    segmenter completes the unit, which is the last draft."""
    segmenter = SentenceSegmenter()
    written = ""
    drafts: list[str] = []
    for token in llm_tokens(reply):
        if units := segmenter.feed(token):
            return [*drafts, units[0]]
        written += token
        drafts.append(clean_for_speech(written))
    return [*drafts, *segmenter.flush()[:1]]


class VirtualClock:
    """Stands in for the `time` module of an engine: `perf_counter()` returns `now`, which only the test moves
    (and which moves `step` seconds at each reading, if the test sets one)."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 0.0
        self.step = step

    def perf_counter(self) -> float:
        self.now += self.step
        return self.now


FIRST_AUDIO_WAIT = 60.0
"""How long `speak_drafts` holds the last draft back: reached only when the engine never gets to the state
the test waits for (the test then fails on what it checks), so it is no bound on speed."""


@dataclass
class Spoken:
    items: list[SpeechChunk | Notice]
    early: bool
    """The first audio came before the last draft was handed over."""

    @property
    def chunks(self) -> list[SpeechChunk]:
        return [i for i in self.items if isinstance(i, SpeechChunk)]

    @property
    def pcm(self) -> np.ndarray:
        return np.concatenate([c.pcm for c in self.chunks]) if self.chunks else np.zeros(0, np.int16)


def speak_drafts(engine: TTSEngine, drafts: list[str], hold: Callable[[], bool] | None = None) -> Spoken:
    """Speak `drafts` with `stream_progressive`, handing over the last one (the complete unit) only once
    `hold()` is true (polled; by default: the first audio has arrived, as when the LLM is far ahead of the
    voice)."""

    async def run() -> Spoken:
        items: list[SpeechChunk | Notice] = []
        ready = hold or (lambda: bool(items))
        early: list[bool] = []

        async def feed() -> AsyncIterator[str]:
            for draft in drafts[:-1]:
                yield draft
                await asyncio.sleep(0)
            waited = 0.0
            while not ready() and waited < FIRST_AUDIO_WAIT:
                await asyncio.sleep(0.01)
                waited += 0.01
            early.append(bool(items))
            yield drafts[-1]

        async for item in engine.stream_progressive(feed()):
            items.append(item)
        return Spoken(items, early[0])

    return asyncio.run(run())


@dataclass
class EncoderCall:
    """What one encoder call produced: its phonemes, seconds of audio and phoneme spans (from its start)."""

    phonemes: list[str]
    seconds: float
    timed: list[TimedPhoneme]


def record_encodes(
    engine: PiperTTS, monkeypatch: pytest.MonkeyPatch, started: Callable[[], None] = lambda: None
) -> list[EncoderCall]:
    """Spy on the engine's real encoder: the returned list fills as it runs; `started` is called (in the worker
    thread) as each call begins."""
    calls: list[EncoderCall] = []
    real = engine.encode

    def spy(piece: Piece) -> tts_piper.Encoded:  # the real model's output, recorded
        started()
        encoded = real(piece)
        seconds = (encoded.end_frame - encoded.first_frame) * engine._hop / engine._rate
        calls.append(EncoderCall(piece.phonemes, seconds, encoded.phonemes))
        return encoded

    monkeypatch.setattr(engine, "encode", spy)
    return calls


def word_ends(calls: list[EncoderCall]) -> list[float]:
    """When each phoneme word ends (at the space after it, or at its piece's end), in seconds of the joined
    audio: where word k of one rendering sits in another rendering of the same text."""
    ends: list[float] = []
    offset = 0.0
    for call in calls:
        spans = iter(call.timed)
        span = next(spans, None)
        at = 0.0
        for name in ["^", *call.phonemes]:  # phonemes the model gave no frames have no span: they sit at `at`
            if span is not None and span.phoneme == name:
                at, span = span.end, next(spans, None)
            if name == " ":
                ends.append(offset + at)
        if call.phonemes and call.phonemes[-1] != " ":
            ends.append(offset + call.seconds)
        offset += call.seconds
    return ends


def joins(calls: list[EncoderCall]) -> list[tuple[float, int]]:
    """(time, words before it) of each border between encoder calls in the joined audio."""
    out: list[tuple[float, int]] = []
    offset, words = 0.0, 0
    for call in calls[:-1]:
        offset += call.seconds
        words += call.phonemes.count(" ")
        out.append((offset, words))
    return out


def quiet_around(pcm: np.ndarray, at: float, reach: float = 0.03, floor_db: float = -35.0) -> float:
    """Seconds of the quiet run (5 ms frames below `floor_db` under the loudest frame) touching `at` ± `reach`:
    a pause heard at that point, stop-consonant closures included."""
    hop = CANONICAL_SAMPLE_RATE // 200
    n = len(pcm) // hop
    frames = pcm[: n * hop].astype(np.float64).reshape(n, hop)
    level = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
    quiet = level < level.max() + floor_db
    lo, hi = max(0, int((at - reach) * 200)), min(n, int((at + reach) * 200) + 1)
    longest = 0
    for k in range(lo, hi):
        if quiet[k]:
            a = b = k
            while a > 0 and quiet[a - 1]:
                a -= 1
            while b < n and quiet[b]:
                b += 1
            longest = max(longest, b - a)
    return longest * hop / CANONICAL_SAMPLE_RATE
