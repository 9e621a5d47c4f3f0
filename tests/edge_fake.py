"""A stand-in for the edge-tts service, shared by the edge engine and fallback tests (contract tests).

The Microsoft service cannot be reached from the test machines, so `FakeCommunicate` stands in for
`edge_tts.Communicate` and honours its 7.x contract: `stream()` is an async generator of
`{"type": "audio", "data": <MP3 bytes>}` (24 kHz mono MP3 frames, no container) interleaved with
`{"type": "WordBoundary", "offset": <100-ns ticks>, "duration": <ticks>, "text": <word>}` messages.
The MP3 is real speech (espeak-ng, encoded with LAME through PyAV) and the boundaries are the real
word positions espeak reported for it, so decoding, timing and g2p all run on real material.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np

from core.audio import resample
from core.events import CANONICAL_SAMPLE_RATE, WordTiming
from speech.tts_edge import TICKS_PER_SECOND
from speech.tts_espeak import synthesize

MESSAGE_BYTES = 1440
"""Roughly what one websocket message of 48 kbit/s MP3 carries."""
STALL_SECONDS = 60.0
"""How long a stalled service stays silent: far beyond any timeout under test, so a timeout that never
fires shows up as a stream that finishes normally (a failed test) after a minute, not as a hung run."""


@dataclass
class Recording:
    """Real speech as the service would send it."""

    pcm: np.ndarray
    mp3: bytes
    words: list[WordTiming]


def record(text: str, voice: str = "en-us") -> Recording:
    spoken = synthesize(text, voice)
    pcm = resample(np.concatenate(spoken.audio), spoken.sample_rate, CANONICAL_SAMPLE_RATE)
    encoder = av.CodecContext.create("libmp3lame", "w")
    encoder.sample_rate = CANONICAL_SAMPLE_RATE
    encoder.layout = "mono"
    encoder.format = "s16p"
    encoder.bit_rate = 48_000
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16p", layout="mono")
    frame.sample_rate = CANONICAL_SAMPLE_RATE
    frame.pts = 0
    packets = [*encoder.encode(frame), *encoder.encode(None)]
    return Recording(pcm, b"".join(bytes(p) for p in packets), spoken.word_timings(text))


def script(rec: Recording, fail_after: float | None = None) -> list[dict[str, Any] | BaseException]:
    """Messages in the service's order: each word boundary just before the audio it describes."""
    seconds_per_byte = (len(rec.pcm) / CANONICAL_SAMPLE_RATE) / len(rec.mp3)
    pending = list(rec.words)
    out: list[dict[str, Any] | BaseException] = []
    for start in range(0, len(rec.mp3), MESSAGE_BYTES):
        until = (start + MESSAGE_BYTES) * seconds_per_byte
        if fail_after is not None and start * seconds_per_byte >= fail_after:
            out.append(aiohttp.ClientConnectionError("Connection reset by peer"))
            return out
        while pending and pending[0].start < until:
            w = pending.pop(0)
            out.append(
                {
                    "type": "WordBoundary",
                    "offset": round(w.start * TICKS_PER_SECOND),
                    "duration": round((w.end - w.start) * TICKS_PER_SECOND),
                    "text": w.text,
                }
            )
        out.append({"type": "audio", "data": rec.mp3[start : start + MESSAGE_BYTES]})
    return out


@dataclass
class FakeCommunicate:
    """Stands in for `edge_tts.Communicate` (see the module docstring); records how it was called."""

    messages: list[dict[str, Any] | BaseException]
    stall_after: int | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0

    def __call__(self, text: str, voice: str, **options: Any) -> FakeCommunicate:
        self.calls.append({"text": text, "voice": voice, **options})
        return self

    async def stream(self) -> AsyncIterator[dict[str, Any]]:
        for k, message in enumerate(self.messages):
            if self.stall_after is not None and k >= self.stall_after:
                await asyncio.sleep(STALL_SECONDS)
            await asyncio.sleep(0.001)  # the network: messages arrive one by one
            if isinstance(message, BaseException):
                raise message
            self.sent += 1
            yield message
