"""Recorded replies: text, a script or an audio file spoken by the avatar into an MP4.

The same renderer object that drives live sessions draws the frames; each frame carries exactly
its own audio, and the MP4 writer muxes both from it, so the recording is in sync by construction.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avatar.base import Renderer
from core.audio import iter_audio_file
from core.errors import UserError
from core.events import Notice
from speech.tts import TTSEngine
from streaming.recording import Mp4Writer

LEAD_IN_SECONDS = 0.2
PARAGRAPH_PAUSE_SECONDS = 0.35
TAIL_SECONDS = 0.3

Progress = Callable[[float], None]
"""Called with the seconds of speech rendered so far."""


@dataclass
class RenderReport:
    path: Path
    frames: int
    seconds: float
    elapsed: float
    notices: list[str] = field(default_factory=list)

    @property
    def speed(self) -> float:
        """How many times faster than real time the render ran."""
        return self.seconds / self.elapsed if self.elapsed > 0 else float("inf")


class _FrameSink:
    """Pulls every complete frame out of the renderer into the writer."""

    def __init__(self, renderer: Renderer, writer: Mp4Writer, progress: Progress | None) -> None:
        self.renderer = renderer
        self.writer = writer
        self.progress = progress
        self.frames = 0

    def _write_one(self) -> None:
        self.writer.write(self.renderer.render_next())
        self.frames += 1

    def drain(self, final: bool = False) -> None:
        spf = self.renderer.samples_per_frame
        while self.renderer.queued_samples >= spf or (final and self.renderer.queued_samples > 0):
            self._write_one()
        if self.progress:
            self.progress(self.frames / self.renderer.fps)

    def silence(self, seconds: float) -> None:
        self.renderer.feed(np.zeros(int(seconds * self.renderer.sample_rate), np.int16))
        self.drain()

    def finish(self) -> None:
        """Add a short idle tail so the reply does not end mid-breath, and flush every queued sample.

        No padding to AAC's 1024-sample blocks is needed: the MP4 edit list trims the encoder's
        padding, so audio and video durations agree to the sample.
        """
        self.silence(TAIL_SECONDS)
        self.drain(final=True)


async def _off_loop(fn: Callable[..., None], *args: float) -> None:
    """Run encoding work in a thread; if the task is cancelled (Ctrl-C), let the thread finish first.

    The writer is aborted after a cancellation, and closing a PyAV container while another thread is
    inside its encoder crashes the process.
    """
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise


def _open_writer(renderer: Renderer, out: Path) -> Mp4Writer:
    return Mp4Writer(out, renderer.fps, renderer.frame_size, renderer.sample_rate)


async def render_speech(
    renderer: Renderer,
    tts: TTSEngine,
    paragraphs: Iterable[list[str]],
    out: Path,
    progress: Progress | None = None,
) -> RenderReport:
    """Speak paragraphs (each a list of sentences) with `tts` and record the avatar saying them."""
    started = time.perf_counter()
    notices: list[str] = []
    writer = _open_writer(renderer, out)
    sink = _FrameSink(renderer, writer, progress)
    try:
        await _off_loop(sink.silence, LEAD_IN_SECONDS)
        for i, sentences in enumerate(paragraphs):
            if i:
                await _off_loop(sink.silence, PARAGRAPH_PAUSE_SECONDS)
            for sentence in sentences:
                async for item in tts.stream(sentence):
                    if isinstance(item, Notice):
                        notices.append(item.message)
                        continue
                    renderer.feed(item.pcm, item.visemes)
                    await _off_loop(sink.drain)
        await _off_loop(sink.finish)
        path = writer.close()
    except BaseException:
        writer.abort()
        raise
    return RenderReport(path, sink.frames, sink.frames / renderer.fps, time.perf_counter() - started, notices)


def render_audio(renderer: Renderer, audio: Path, out: Path, progress: Progress | None = None) -> RenderReport:
    """Lip-sync the avatar to a recorded audio file (visemes come from the audio itself)."""
    started = time.perf_counter()
    chunks = iter_audio_file(audio, renderer.sample_rate)
    first = next(chunks, None)
    if first is None or not len(first):
        raise UserError(f"{audio} contains no audio samples")
    writer = _open_writer(renderer, out)
    sink = _FrameSink(renderer, writer, progress)
    try:
        sink.silence(LEAD_IN_SECONDS)
        for pcm in itertools.chain([first], chunks):
            renderer.feed(pcm)
            sink.drain()
        sink.finish()
        path = writer.close()
    except BaseException:
        writer.abort()
        raise
    return RenderReport(path, sink.frames, sink.frames / renderer.fps, time.perf_counter() - started)
