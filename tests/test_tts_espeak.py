"""espeak-ng 1.52 (from espeakng-loader) through ctypes: English and Mandarin, events, visemes, thread safety."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from tts_helpers import after_cancel, cancel_after_first_chunk, collect, envelope_lag, logged

from core.audio import resample
from core.errors import UserError
from core.events import CANONICAL_SAMPLE_RATE, Viseme
from speech import tts_espeak
from speech.tts_espeak import EspeakTTS, installed_voices, synthesize

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def english() -> EspeakTTS:
    return EspeakTTS("en-us")


@pytest.fixture(scope="module")
def mandarin() -> EspeakTTS:
    return EspeakTTS("cmn")


def test_voices_include_english_and_mandarin() -> None:
    voices = installed_voices()
    assert {"en-us", "cmn", "fr", "de"} <= set(voices)


def test_unknown_voice_lists_close_matches() -> None:
    with pytest.raises(UserError, match="en-us"):
        EspeakTTS("en-uss")


def test_english_streams_with_words_and_visemes(english: EspeakTTS) -> None:
    text = "Hello mama, papa bob. The quick brown fox jumps over the lazy dog."
    pcm, visemes, words, chunks = collect(english, text)
    seconds = len(pcm) / CANONICAL_SAMPLE_RATE
    assert 2.5 < seconds < 8.0
    assert len(chunks) >= 4
    assert [w.text for w in words] == [
        "Hello",
        "mama",
        "papa",
        "bob",
        "The",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "the",
        "lazy",
        "dog",
    ]
    assert len({v.viseme for v in visemes}) >= 8
    assert visemes[-1].end == pytest.approx(seconds, abs=0.03)
    for c in chunks:
        for e in (*c.visemes, *c.words):
            assert 0.0 <= e.start <= c.duration + 1e-6


def test_lips_close_for_m_p_b(english: EspeakTTS) -> None:
    _, visemes, words, _ = collect(english, "mama papa bob")
    for word in words:
        inside = [v.viseme for v in visemes if word.start - 1e-6 <= v.start < word.end]
        assert inside[0] == Viseme.PP and inside[1] == Viseme.AA, (word.text, inside)
        assert Viseme.PP in inside[2:], (word.text, inside)


def test_visemes_keep_espeaks_phoneme_positions(english: EspeakTTS) -> None:
    """Viseme boundaries lie within 20 ms of the phoneme events espeak reports for the same text."""
    text = "The quick brown fox jumps over the lazy dog, and then it sleeps."
    direct = synthesize(text, "en-us")
    model = np.array([t.start for t in direct.timed_phonemes()] + [direct.samples / direct.sample_rate])
    pcm, visemes, _, _ = collect(english, text)
    # espeak-ng's output length drifts by a few ms from one call to the next (state carried between
    # utterances: 85427, 85454, 85461 samples for the same sentence in one process), so two separate
    # syntheses agree to the same 20 ms bound the viseme positions are held to, not to the sample.
    assert len(pcm) / CANONICAL_SAMPLE_RATE == pytest.approx(direct.samples / direct.sample_rate, abs=0.020)
    for v in visemes:
        if v.viseme in (Viseme.AA, Viseme.E, Viseme.IH, Viseme.OH, Viseme.OU, Viseme.RR) and v.end - v.start < 0.06:
            continue  # the second half of a split diphthong ends mid-phoneme by design
        assert np.abs(model - v.start).min() < 0.020, v


def test_visemes_sit_on_the_audio(english: EspeakTTS) -> None:
    """espeak stamps a phoneme event a little after its sound begins: up to 40 ms late is accepted."""
    text = "The weather is lovely today. I would like to walk to the park, and then we can have a picnic by the lake."
    pcm, visemes, _, _ = collect(english, text)
    lag, correlation = envelope_lag(pcm, visemes)
    assert -0.04 <= lag <= 0.02 and correlation > 0.3, (lag, correlation)


def test_mandarin_speaks_recognisable_chinese(mandarin: EspeakTTS, whisper) -> None:
    """espeak's Mandarin is robotic, so the check is loose: most characters come back."""
    from opencc import OpenCC

    text = "我们一起去公园散步吧。"
    pcm, visemes, words, _ = collect(mandarin, text)
    audio = resample(pcm, CANONICAL_SAMPLE_RATE, 16000).astype(np.float32) / 32768.0
    segments, _ = whisper.transcribe(audio, language="zh", beam_size=1)
    heard = OpenCC("t2s").convert("".join(s.text for s in segments))
    expected = text.rstrip("。")
    recall = sum(ch in heard for ch in expected) / len(expected)
    assert recall >= 0.5, heard
    assert "".join(w.text for w in words) == expected
    assert Viseme.PP in {v.viseme for v in visemes}  # 们 and 步


def test_cancelling_stops_the_synthesis(english: EspeakTTS, monkeypatch: pytest.MonkeyPatch) -> None:
    """3000 characters are several blocks for espeak: after the cancel no further block is synthesised, and
    the stream's cancel flag is raised (it stops a synthesis still running in its thread)."""
    text = "A sentence to be interrupted. " * 100
    work: list[str] = []
    flags: list[threading.Event] = []

    def synthesize_block(*args: object) -> object:
        flags.append(args[-1])
        return synthesize(*args)

    monkeypatch.setattr(tts_espeak, "synthesize", logged(synthesize_block, "synthesize", work))
    count = cancel_after_first_chunk(english, text, work, pause=0.01)
    assert count == 1
    assert work[0] == "synthesize" and len(after_cancel(work)) <= 1
    assert all(flag.is_set() for flag in flags)


def test_ten_thousand_characters_stream_in_bounded_chunks(english: EspeakTTS) -> None:
    text = ("The rain in Spain stays mainly in the plain, as everybody knows by now. " * 150)[:10_000]

    async def run() -> tuple[int, float, float]:
        count, longest, total = 0, 0.0, 0.0
        async for c in english.stream(text):
            count += 1
            longest = max(longest, c.duration)
            total += c.duration
        return count, longest, total

    count, longest, total = asyncio.run(run())
    assert total > 400  # ten minutes or so of speech: all of it came out
    assert longest <= 0.6
    assert count > 600


def test_concurrent_streams_do_not_mix(english: EspeakTTS, mandarin: EspeakTTS) -> None:
    """espeak-ng is one global C state: parallel requests must be serialised, not interleaved."""
    en_text, zh_text = "Good morning, everyone.", "早上好，大家。"
    alone_en = synthesize(en_text, "en-us").samples
    alone_zh = synthesize(zh_text, "cmn").samples
    results: dict[str, int] = {}

    def worker(name: str, text: str, voice: str) -> None:
        for _ in range(5):
            results[f"{name}{_}"] = synthesize(text, voice).samples

    threads = [
        threading.Thread(target=worker, args=("en", en_text, "en-us")),
        threading.Thread(target=worker, args=("zh", zh_text, "cmn")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # espeak's output length varies by a few samples from call to call; mixed-up calls would differ by far more.
    assert all(abs(v - alone_en) < 50 for k, v in results.items() if k.startswith("en"))
    assert all(abs(v - alone_zh) < 50 for k, v in results.items() if k.startswith("zh"))
    assert len(results) == 10


@pytest.mark.parametrize("text", ["", "  ", "😀", "Hello 👋 world ✨!", "§±∆"])
def test_odd_input_does_not_crash(english: EspeakTTS, text: str) -> None:
    pcm, _, _, _ = collect(english, text)
    if not text.strip():
        assert len(pcm) == 0
    if "world" in text:
        assert len(pcm) > 0.3 * CANONICAL_SAMPLE_RATE
