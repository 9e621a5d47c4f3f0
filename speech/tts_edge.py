"""Online speech with Microsoft's neural voices through edge-tts (needs the internet).

The service streams MP3 and word boundaries; we ask for word boundaries explicitly (edge-tts 7
defaults to sentence boundaries), decode the MP3 packet by packet with PyAV as bytes arrive, and
derive visemes from the timed words with `speech.g2p` because the service sends none. Any network
failure or a stall longer than the timeout raises `EdgeUnavailable`, which the selector turns into
a switch to the offline voice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import av
import numpy as np

from core.events import CANONICAL_SAMPLE_RATE, SpeechChunk, Viseme, VisemeEvent, WordTiming
from speech.g2p import load_dictionary, words_to_visemes
from speech.tts import TTSEngine
from speech.visemes import ChunkTimer

log = logging.getLogger(__name__)

DEFAULT_VOICE = "en-US-AriaNeural"
CHINESE_VOICE = "zh-CN-XiaoxiaoNeural"
TICKS_PER_SECOND = 10_000_000
"""Boundary offsets and durations are in 100-ns ticks."""
MP3_CODEC_DELAY = 576 + 529
"""Samples of priming an MP3 stream carries before its first real sample (encoder + decoder delay);
the service does not publish its encoder's, so the common LAME value is assumed."""
MIN_GAP_SECONDS = 0.001
"""Shorter gaps between word boundaries are tick rounding, not silence."""
HOLD_SECONDS = 0.2
"""Audio is held back at most this long waiting for the word boundaries that describe it."""


class EdgeUnavailable(Exception):
    """The online voice failed (network down, service error, or no data within the timeout)."""


class EdgeTTS(TTSEngine):
    """Streams an edge-tts voice at 24 kHz with word timings and visemes from grapheme-to-phoneme."""

    name = "edge"

    def __init__(
        self,
        voice: str | None = None,
        rate: str = "+0%",
        volume: str = "+0%",
        pitch: str = "+0Hz",
        timeout: float = 5.0,
        communicate: Callable[..., Any] | None = None,
    ) -> None:
        import edge_tts

        self.voice = voice or DEFAULT_VOICE
        self._options = {"rate": rate, "volume": volume, "pitch": pitch}
        self._timeout = timeout
        self._communicate = communicate or edge_tts.Communicate
        load_dictionary()

    async def stream(self, text: str) -> AsyncIterator[SpeechChunk]:
        if not text or not text.strip():
            return
        try:
            source = self._communicate(text, self.voice, boundary="WordBoundary", **self._options).stream()
        except ValueError as exc:
            raise EdgeUnavailable(f"edge-tts rejected the request: {exc}") from None
        decoder = _Mp3Decoder()
        timer = ChunkTimer()
        words_end = 0.0
        try:
            while True:
                item = await self._next(source)
                if item is None:
                    break
                if item.get("type") == "audio":
                    decoder.feed(item.get("data") or b"")
                elif item.get("type") == "WordBoundary":
                    word = _word(item)
                    visemes = words_to_visemes([word])
                    if visemes and visemes[0].start > words_end + MIN_GAP_SECONDS:
                        visemes.insert(0, VisemeEvent(Viseme.SIL, words_end, visemes[0].start))
                    timer.add(visemes, [word])
                    words_end = max(words_end, word.end)
                ready = max(words_end, decoder.decoded_seconds - HOLD_SECONDS)
                pcm = decoder.take_until(ready)
                if len(pcm):
                    visemes_now, words_now = timer.take(len(pcm) / CANONICAL_SAMPLE_RATE)
                    yield SpeechChunk(pcm, CANONICAL_SAMPLE_RATE, visemes_now, words_now)
            decoder.finish()
            pcm = decoder.take_until(float("inf"))
            visemes_now, words_now = timer.take(len(pcm) / CANONICAL_SAMPLE_RATE, last=True)
            if len(pcm) or visemes_now:
                yield SpeechChunk(pcm, CANONICAL_SAMPLE_RATE, visemes_now, words_now)
        finally:
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()

    async def _next(self, source: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
        """The next message from the service, None at the end; failures become `EdgeUnavailable`."""
        import aiohttp
        from edge_tts.exceptions import EdgeTTSException

        try:
            return await asyncio.wait_for(anext(source), self._timeout)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise EdgeUnavailable(f"edge-tts sent nothing for {self._timeout:g} s") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            # The exception text names hosts and SSL contexts: users need only "no connection".
            raise EdgeUnavailable(f"cannot reach the edge-tts service ({exc.__class__.__name__})") from None
        except (aiohttp.ClientError, EdgeTTSException) as exc:
            raise EdgeUnavailable(f"edge-tts failed ({exc.__class__.__name__}: {str(exc)[:80]})") from None


def _word(item: dict[str, Any]) -> WordTiming:
    start = item["offset"] / TICKS_PER_SECOND
    return WordTiming(str(item.get("text", "")), start, start + item["duration"] / TICKS_PER_SECOND)


class _Mp3Decoder:
    """Incremental MP3 → mono int16 at the canonical rate, with the codec's priming samples removed."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("mp3", "r")
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=CANONICAL_SAMPLE_RATE)
        self._pending: list[np.ndarray] = []
        self._skip = MP3_CODEC_DELAY
        self.decoded = 0
        self.taken = 0

    @property
    def decoded_seconds(self) -> float:
        return self.decoded / CANONICAL_SAMPLE_RATE

    def feed(self, data: bytes | None) -> None:
        try:
            for packet in self._codec.parse(data):
                self._decode(packet)
        except av.error.FFmpegError as exc:
            log.warning("skipping undecodable MP3 data from edge-tts: %s", exc)

    def finish(self) -> None:
        self.feed(None)
        self._decode(None)
        for frame in self._resampler.resample(None):
            self._keep(frame.to_ndarray().reshape(-1))

    def _decode(self, packet: av.Packet | None) -> None:
        try:
            frames = self._codec.decode(packet)
        except av.error.FFmpegError as exc:
            log.warning("skipping an undecodable MP3 frame from edge-tts: %s", exc)
            return
        for frame in frames:
            for out in self._resampler.resample(frame):
                self._keep(out.to_ndarray().reshape(-1))

    def _keep(self, pcm: np.ndarray) -> None:
        if self._skip:
            dropped = min(self._skip, len(pcm))
            pcm, self._skip = pcm[dropped:], self._skip - dropped
        if len(pcm):
            self._pending.append(pcm.astype(np.int16, copy=False))
            self.decoded += len(pcm)

    def take_until(self, seconds: float) -> np.ndarray:
        """Decoded audio up to `seconds` from the start that has not been taken yet."""
        limit = min(self.decoded, int(seconds * CANONICAL_SAMPLE_RATE)) if seconds != float("inf") else self.decoded
        count = limit - self.taken
        if count <= 0:
            return np.zeros(0, np.int16)
        data = np.concatenate(self._pending)
        out, rest = data[:count], data[count:]
        self._pending = [rest] if len(rest) else []
        self.taken += count
        return out
