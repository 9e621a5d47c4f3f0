"""Engine selection from the config, Chinese routing, voice errors and the online → offline fallback.

The fallback tests drive the real edge engine with the contract-test stand-in for the service from
edge_fake (real MP3 speech that breaks off or stalls) and real offline engines behind it.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from edge_fake import FakeCommunicate, record, script

from core.config import TTSConfig
from core.errors import UserError
from core.events import CANONICAL_SAMPLE_RATE, Notice, SpeechChunk, WordTiming
from speech.tts import TTSEngine
from speech.tts_edge import EdgeTTS
from speech.tts_espeak import EspeakTTS
from speech.tts_piper import PiperTTS
from speech.tts_select import (
    ChineseRouter,
    FallbackTTS,
    create_tts,
    has_chinese,
    list_voices,
    parse_percent,
    remaining_text,
)

pytestmark = pytest.mark.slow

SENTENCE = "Hello mama, papa bob. The quick brown fox jumps over the lazy dog."


def run(engine: TTSEngine, text: str) -> list[SpeechChunk | Notice]:
    async def go() -> list[SpeechChunk | Notice]:
        return [item async for item in engine.stream(text)]

    return asyncio.run(go())


def words_of(items: list[SpeechChunk | Notice]) -> list[str]:
    return [w.text for item in items if isinstance(item, SpeechChunk) for w in item.words]


@pytest.fixture(scope="module")
def piper_engine() -> TTSEngine:
    return create_tts(TTSConfig(engine="piper", chinese_voice="cmn"))


def test_piper_config_builds_piper_and_sends_chinese_to_espeak_mandarin(piper_engine: TTSEngine) -> None:
    assert isinstance(piper_engine, ChineseRouter) and isinstance(piper_engine.main, PiperTTS)
    english = run(piper_engine, "Good morning.")
    assert sum(c.duration for c in english) > 0.4
    chinese_engine = piper_engine.engine_for("你好，世界。")
    assert isinstance(chinese_engine, EspeakTTS) and chinese_engine.voice == "cmn"
    chinese = run(piper_engine, "你好，世界。")
    assert sum(c.duration for c in chinese) > 0.8
    assert "".join(words_of(chinese)) == "你好世界"


def test_espeak_config_with_a_mandarin_voice_needs_no_router() -> None:
    engine = create_tts(TTSConfig(engine="espeak", voice="cmn"))
    assert isinstance(engine, EspeakTTS)
    assert has_chinese("AI助手") and not has_chinese("plain English, 123")


def test_rate_and_volume_reach_the_offline_engines() -> None:
    slow = create_tts(TTSConfig(engine="espeak", rate="-30%"))
    fast = create_tts(TTSConfig(engine="espeak", rate="+30%"))
    text = "Counting one two three four five six seven."
    assert sum(c.duration for c in run(slow, text)) > 1.3 * sum(c.duration for c in run(fast, text))
    assert parse_percent("+10%", "rate") == pytest.approx(1.1)
    with pytest.raises(UserError, match=r"tts\.volume"):
        parse_percent("loud", "volume")


@pytest.mark.parametrize(
    ("engine", "voice", "suggestion"),
    [("piper", "en_US-joe-mediun", "en_US-joe-medium"), ("espeak", "cmnn", "cmn"), ("espeak", "en_us", "en-us")],
)
def test_unknown_voice_names_close_matches(engine: str, voice: str, suggestion: str) -> None:
    with pytest.raises(UserError) as info:
        create_tts(TTSConfig(engine=engine, voice=voice))
    message = str(info.value)
    assert suggestion in message and "\n" not in message and "digital-human voices" in message


def test_unknown_chinese_voice_is_refused_at_start() -> None:
    with pytest.raises(UserError, match="cmn"):
        create_tts(TTSConfig(engine="espeak", chinese_voice="cmm"))


def test_malformed_edge_voice_is_refused_before_any_network_call() -> None:
    with pytest.raises(UserError, match="en-US-AriaNeural"):
        create_tts(TTSConfig(engine="edge", voice="Aria"))


def test_list_voices() -> None:
    assert list_voices("piper") == ["en_US-joe-medium  (offline, English)"]
    espeak = list_voices("espeak")
    assert any(line.startswith("cmn ") for line in espeak) and len(espeak) > 100
    try:
        edge = list_voices("edge")
    except UserError as exc:  # no network: one clear line
        assert "offline engines" in str(exc)
    else:
        assert any("zh-CN-XiaoxiaoNeural" in line for line in edge)


def test_remaining_text_skips_the_words_already_heard() -> None:
    assert remaining_text(SENTENCE, ["Hello", "mama", "papa"]) == "bob. The quick brown fox jumps over the lazy dog."
    assert remaining_text(SENTENCE, []) == SENTENCE
    assert remaining_text("你好，世界。", ["你好"]) == "世界。"


def test_fallback_mid_sentence_tells_the_user_once_and_finishes_offline(caplog: pytest.LogCaptureFixture) -> None:
    rec = record(SENTENCE)
    fake = FakeCommunicate(script(rec, fail_after=1.5))
    engine = FallbackTTS(EdgeTTS(communicate=fake), EspeakTTS("en-us"))
    with caplog.at_level(logging.WARNING, logger="speech.tts_select"):
        first = run(engine, SENTENCE)
        second = run(engine, "And this sentence goes straight to the offline voice.")
    notices = [i for i in first if isinstance(i, Notice)]
    assert len(notices) == 1 and "offline" in notices[0].message
    assert len([r for r in caplog.records if "offline voice" in r.getMessage()]) == 1
    position = first.index(notices[0])
    online_words = words_of(first[:position])
    offline_words = words_of(first[position:])
    heard = [w.text for w in rec.words if w.end <= 1.5]
    assert online_words[: len(heard) - 1] == heard[: len(heard) - 1]
    assert offline_words[-3:] == ["the", "lazy", "dog"]
    spoken = set(online_words) | set(offline_words)
    assert {"Hello", "mama", "papa", "bob", "quick", "fox"} <= spoken
    assert len(fake.calls) == 1  # the second sentence did not try the dead service again
    assert not any(isinstance(i, Notice) for i in second)
    assert sum(c.duration for c in second if isinstance(c, SpeechChunk)) > 1.0


def test_fallback_on_a_stalled_service_within_the_timeout() -> None:
    fake = FakeCommunicate(script(record("Good evening.")), stall_after=0)
    engine = FallbackTTS(EdgeTTS(timeout=0.3, communicate=fake), EspeakTTS("en-us"))
    items = run(engine, "Good evening.")
    assert isinstance(items[0], Notice)
    assert words_of(items) == ["Good", "evening"]


def test_edge_config_without_network_still_speaks() -> None:
    """With the real edge-tts client: here the service is unreachable, so the offline voice takes over."""
    engine = create_tts(TTSConfig(engine="edge", timeout=3.0))
    assert isinstance(engine, FallbackTTS) and engine.name == "edge"
    items = run(engine, "Testing the fallback.")
    pcm = np.concatenate([i.pcm for i in items if isinstance(i, SpeechChunk)])
    assert len(pcm) > 0.5 * CANONICAL_SAMPLE_RATE
    assert isinstance(items[0], Notice) or words_of(items)  # told about the switch, or it was online after all
    assert all(isinstance(w, WordTiming) for i in items if isinstance(i, SpeechChunk) for w in i.words)
