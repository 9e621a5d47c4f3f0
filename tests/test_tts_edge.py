"""edge-tts engine: contract tests against the service stand-in in edge_fake (real MP3 speech and word
boundaries in edge-tts 7.x's message format; the service itself cannot be reached from the test machines).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from edge_fake import FakeCommunicate, Recording, record, script

from core.events import CANONICAL_SAMPLE_RATE, SpeechChunk, Viseme, VisemeEvent, WordTiming
from speech.tts_edge import EdgeTTS, EdgeUnavailable

SENTENCE = "Hello mama, papa bob. The quick brown fox jumps over the lazy dog."


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
    # Raised at all means it did not sit out the stall (the stream would then have finished normally).
    assert fake.sent == 5
    assert time.perf_counter() - started >= 0.3  # nor gave up before the timeout


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_sends_nothing(text: str) -> None:
    fake = FakeCommunicate([])
    pcm, _, _ = collect(EdgeTTS(communicate=fake), text)
    assert len(pcm) == 0 and fake.calls == []
