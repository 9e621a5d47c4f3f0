"""edge-tts engine: contract tests.

The Microsoft service cannot be reached from the test machines, so `FakeCommunicate` stands in for
`edge_tts.Communicate` and honours its 7.x contract: `stream()` is an async generator of
`{"type": "audio", "data": <MP3 bytes>}` (24 kHz mono MP3 frames, no container) interleaved with
`{"type": "WordBoundary", "offset": <100-ns ticks>, "duration": <ticks>, "text": <word>}` messages.
The MP3 is real speech (espeak-ng, encoded with LAME through PyAV) and the boundaries are the real
word positions espeak reported for it, so decoding, timing and g2p all run on real material.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from core.audio import resample
from core.events import CANONICAL_SAMPLE_RATE, SpeechChunk, Viseme, VisemeEvent, WordTiming
from speech.tts_edge import TICKS_PER_SECOND, EdgeTTS, EdgeUnavailable
from speech.tts_espeak import synthesize

SENTENCE = "Hello mama, papa bob. The quick brown fox jumps over the lazy dog."
MESSAGE_BYTES = 1440
"""Roughly what one websocket message of 48 kbit/s MP3 carries."""


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
                await asyncio.sleep(3600)
            await asyncio.sleep(0.001)  # the network: messages arrive one by one
            if isinstance(message, BaseException):
                raise message
            self.sent += 1
            yield message


@pytest.fixture(scope="module")
def recording() -> Recording:
    return record(SENTENCE)


def collect(engine: EdgeTTS, text: str, on_first: Any = None) -> tuple[np.ndarray, list[VisemeEvent], list[WordTiming]]:
    async def run() -> list[SpeechChunk]:
        out = []
        async for c in engine.stream(text):
            if not out and on_first is not None:
                on_first()
            out.append(c)
        return out

    chunks = asyncio.run(run())
    visemes: list[VisemeEvent] = []
    words: list[WordTiming] = []
    offset = 0.0
    for c in chunks:
        assert c.sample_rate == CANONICAL_SAMPLE_RATE and c.pcm.dtype == np.int16
        for e in (*c.visemes, *c.words):
            assert 0.0 <= e.start <= c.duration + 1e-6
        visemes += [VisemeEvent(v.viseme, v.start + offset, v.end + offset) for v in c.visemes]
        words += [WordTiming(w.text, w.start + offset, w.end + offset) for w in c.words]
        offset += c.duration
    pcm = np.concatenate([c.pcm for c in chunks]) if chunks else np.zeros(0, np.int16)
    return pcm, visemes, words


def test_asks_for_word_boundaries_with_the_configured_voice(recording: Recording) -> None:
    fake = FakeCommunicate(script(recording))
    engine = EdgeTTS("en-GB-SoniaNeural", rate="+10%", volume="-5%", pitch="+2Hz", communicate=fake)
    collect(engine, SENTENCE)
    assert fake.calls == [
        {
            "text": SENTENCE,
            "voice": "en-GB-SoniaNeural",
            "boundary": "WordBoundary",
            "rate": "+10%",
            "volume": "-5%",
            "pitch": "+2Hz",
        }
    ]


def test_decodes_mp3_as_it_arrives_and_keeps_it_aligned(recording: Recording) -> None:
    fake = FakeCommunicate(script(recording))
    sent_at_first: list[int] = []
    pcm, _, _ = collect(EdgeTTS(communicate=fake), SENTENCE, on_first=lambda: sent_at_first.append(fake.sent))
    assert sent_at_first[0] < len(fake.messages) / 3  # audio flowed long before the sentence was complete
    original = recording.pcm.astype(np.float32)
    assert abs(len(pcm) - len(original)) < 1152 + 1105  # at most the final frame's padding
    n = min(len(pcm), len(original)) - 2400
    decoded = pcm[:n].astype(np.float32)
    lags = range(-240, 241)
    scores = [np.dot(decoded[1200 + lag : n - 1200 + lag], original[1200 : n - 1200]) for lag in lags]
    assert abs(lags[int(np.argmax(scores))]) <= 24  # within 1 ms: the codec's priming samples are removed


def test_word_boundaries_become_word_timings_and_visemes(recording: Recording) -> None:
    _, visemes, words = collect(EdgeTTS(communicate=FakeCommunicate(script(recording))), SENTENCE)
    assert [w.text for w in words] == [w.text for w in recording.words]
    for got, sent in zip(words, recording.words, strict=True):
        assert got.start == pytest.approx(sent.start, abs=1e-3) and got.end == pytest.approx(sent.end, abs=1e-3)
    for word in words[1:4]:  # mama papa bob: closed lips first and again inside the word
        inside = [v.viseme for v in visemes if word.start - 1e-6 <= v.start < word.end]
        assert inside[0] == Viseme.PP and Viseme.PP in inside[2:], (word.text, inside)
    assert any(v.viseme == Viseme.SIL for v in visemes)


def test_mandarin_word_boundaries_get_pinyin_visemes() -> None:
    text = "爸爸妈妈。"
    rec = record(text, "cmn")
    _, visemes, words = collect(EdgeTTS("zh-CN-XiaoxiaoNeural", communicate=FakeCommunicate(script(rec))), text)
    assert "".join(w.text for w in words) == "爸爸妈妈"
    assert [v.viseme for v in visemes if v.viseme != Viseme.SIL] == [Viseme.PP, Viseme.AA] * 4


def test_network_failure_mid_sentence_raises_edge_unavailable(recording: Recording) -> None:
    fake = FakeCommunicate(script(recording, fail_after=1.0))
    got: list[SpeechChunk] = []

    async def run() -> None:
        async for c in EdgeTTS(communicate=fake).stream(SENTENCE):
            got.append(c)

    with pytest.raises(EdgeUnavailable, match="ClientConnectionError"):
        asyncio.run(run())
    assert got  # what arrived before the failure was already spoken


def test_a_stalled_service_times_out(recording: Recording) -> None:
    fake = FakeCommunicate(script(recording), stall_after=5)

    async def run() -> None:
        async for _ in EdgeTTS(timeout=0.3, communicate=fake).stream(SENTENCE):
            pass

    started = time.perf_counter()
    with pytest.raises(EdgeUnavailable, match=r"nothing for 0\.3 s"):
        asyncio.run(run())
    assert time.perf_counter() - started < 1.5


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_sends_nothing(text: str) -> None:
    fake = FakeCommunicate([])
    pcm, _, _ = collect(EdgeTTS(communicate=fake), text)
    assert len(pcm) == 0 and fake.calls == []
