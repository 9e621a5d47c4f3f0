"""`stream_progressive` through every engine and wrapper: engines that need the whole text wait for it, the
Chinese router sends each part to a voice that can read it, the fallback starts early only offline.

The edge tests use the contract-test stand-in for the service from edge_fake (real MP3 speech), as in
test_tts_select.
"""

from __future__ import annotations

import pytest
from edge_fake import FakeCommunicate, record, script
from tts_helpers import collect, speak_drafts, unit_drafts

from core.events import Notice, SpeechChunk
from speech.tts_edge import EdgeTTS
from speech.tts_espeak import EspeakTTS
from speech.tts_piper import PiperTTS
from speech.tts_select import ChineseRouter, FallbackTTS

pytestmark = pytest.mark.slow

REPLY = "Today I would like to tell you about the quick brown fox and the lazy dog. It runs."


@pytest.fixture(scope="module")
def piper() -> PiperTTS:
    return PiperTTS()


@pytest.fixture(scope="module")
def router(piper: PiperTTS) -> ChineseRouter:
    return ChineseRouter(piper, lambda: EspeakTTS("cmn"))


def words(items: list[SpeechChunk | Notice]) -> list[str]:
    return [w.text for i in items if isinstance(i, SpeechChunk) for w in i.words]


def test_an_engine_that_needs_the_whole_unit_speaks_the_last_draft() -> None:
    engine = EspeakTTS("en-us")
    drafts = unit_drafts(REPLY)
    spoken = speak_drafts(engine, drafts, hold=lambda: True)
    pcm, _, said, _ = collect(engine, drafts[-1])
    assert len(spoken.pcm) == pytest.approx(len(pcm), rel=0.02)  # espeak varies a little from call to call
    assert words(spoken.items) == [w.text for w in said] == drafts[-1].rstrip(".").split()


def test_the_router_lets_piper_start_on_english(router: ChineseRouter) -> None:
    spoken = speak_drafts(router, unit_drafts(REPLY))
    assert spoken.early
    assert words(spoken.items) == REPLY.split(".")[0].split()


def test_the_router_sends_chinese_from_the_first_words_to_the_chinese_voice(router: ChineseRouter) -> None:
    drafts = unit_drafts("我觉得今天下午的天气很适合我们一起去公园散步。好的。")
    spoken = speak_drafts(router, drafts, hold=lambda: True)
    assert "".join(words(spoken.items)).startswith("我觉得")


def test_chinese_after_english_words_goes_to_the_chinese_voice(router: ChineseRouter) -> None:
    """The English words before it are piper's; the unit's Chinese and whatever follows it, the Chinese voice's."""
    drafts = unit_drafts("The word for hello is 你好 in Mandarin. Next")
    assert drafts[-1] == "The word for hello is 你好 in Mandarin."
    spoken = speak_drafts(router, drafts, hold=lambda: True)
    said = words(spoken.items)
    assert said[:5] == ["The", "word", "for", "hello", "is"]
    assert "你好" in "".join(said[5:])


def test_the_fallback_waits_for_the_whole_unit_online() -> None:
    drafts = unit_drafts(REPLY)
    fake = FakeCommunicate(script(record(drafts[-1])))
    spoken = speak_drafts(FallbackTTS(EdgeTTS(communicate=fake), EspeakTTS("en-us")), drafts, hold=lambda: True)
    assert [c["text"] for c in fake.calls] == [drafts[-1]]
    assert words(spoken.items) == drafts[-1].rstrip(".").split()


def test_the_fallback_starts_early_with_the_offline_voice_once_online_failed(piper: PiperTTS) -> None:
    fake = FakeCommunicate(script(record("Good evening.")), stall_after=0)
    engine = FallbackTTS(EdgeTTS(timeout=0.3, communicate=fake), piper)
    first = speak_drafts(engine, ["Good evening."], hold=lambda: True)
    assert isinstance(first.items[0], Notice)
    spoken = speak_drafts(engine, unit_drafts(REPLY))
    assert spoken.early and len(fake.calls) == 1  # the offline voice, as the unit was written
    assert words(spoken.items) == REPLY.split(".")[0].split()
