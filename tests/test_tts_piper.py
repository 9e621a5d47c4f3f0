"""piper with the packaged en_US-joe-medium voice: streaming, visemes, alignment, round trip through Whisper."""

from __future__ import annotations

import asyncio
import itertools
import re

import numpy as np
import pytest
from tts_helpers import after_cancel, cancel_after_first_chunk, collect, envelope_lag, logged

from core.audio import resample
from core.events import CANONICAL_SAMPLE_RATE, SpeechChunk, Viseme
from speech.tts_piper import PiperTTS, split_phonemes, text_blocks
from speech.visemes import TimedPhoneme

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def piper() -> PiperTTS:
    return PiperTTS()


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref = re.findall(r"[a-z0-9']+", reference.lower())
    hyp = re.findall(r"[a-z0-9']+", hypothesis.lower())
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / len(ref)


def test_streams_speech_of_plausible_length_with_visemes_and_words(piper: PiperTTS) -> None:
    text = "Today I would like to tell you about the quick brown fox and the lazy dog."
    pcm, visemes, words, chunks = collect(piper, text)
    seconds = len(pcm) / CANONICAL_SAMPLE_RATE
    assert 2.5 < seconds < 8.0  # 16 words at 2-6 words per second
    assert len(chunks) >= 2  # the first clause comes on its own
    assert all(c.pcm.dtype == np.int16 and c.sample_rate == CANONICAL_SAMPLE_RATE for c in chunks)
    assert np.abs(pcm.astype(np.float32)).max() > 8000  # speech, not silence
    assert len({v.viseme for v in visemes}) >= 8
    assert [w.text for w in words] == text.rstrip(".").split()
    for c in chunks:  # the SpeechChunk contract: events start inside their chunk
        for e in (*c.visemes, *c.words):
            assert 0.0 <= e.start <= c.duration + 1e-6 and e.end >= e.start
    for a, b in itertools.pairwise(visemes):
        assert b.start == pytest.approx(a.end, abs=1e-6)  # no holes, no overlaps
    assert visemes[-1].end == pytest.approx(seconds, abs=0.03)


def test_visemes_sit_on_the_audio(piper: PiperTTS) -> None:
    text = "The weather is lovely today. I would like to walk to the park, and then we can have a picnic by the lake."
    pcm, visemes, _, _ = collect(piper, text)
    lag, correlation = envelope_lag(pcm, visemes)
    assert abs(lag) <= 0.03 and correlation > 0.3, (lag, correlation)


def test_lips_close_for_m_p_b_inside_each_word(piper: PiperTTS) -> None:
    _, visemes, words, _ = collect(piper, "mama papa bob")
    assert [w.text for w in words] == ["mama", "papa", "bob"]
    for word in words:
        inside = [v.viseme for v in visemes if word.start - 1e-6 <= v.start < word.end]
        assert inside[0] == Viseme.PP and inside[1] == Viseme.AA, (word.text, inside)
        assert Viseme.PP in inside[2:], (word.text, inside)
    gaps = [v for v in visemes if v.viseme == Viseme.SIL]
    assert len(gaps) >= 2  # between the words


def test_visemes_keep_the_model_alignment_through_pieces_and_resampling(
    piper: PiperTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every viseme boundary lies within 20 ms of a phoneme boundary of the model's own alignment."""
    recorded: list[tuple[float, list[TimedPhoneme]]] = []
    real = piper.encode

    def spy(piece):  # records what the real model produced for each piece
        encoded = real(piece)
        frames = encoded.end_frame - encoded.first_frame
        recorded.append((frames * piper._hop / piper._rate, encoded.phonemes))
        return encoded

    monkeypatch.setattr(piper, "encode", spy)
    text = "Hello there my good friend, how are you today? This second sentence is rendered as its own piece."
    pcm, visemes, _, _ = collect(piper, text)
    boundaries: list[float] = []
    offset = 0.0
    for duration, timed in recorded:
        boundaries += [offset + t.start for t in timed] + [offset + t.end for t in timed]
        offset += duration
    assert len(recorded) >= 3  # a cut after the first words, then the rest of each sentence
    assert offset == pytest.approx(len(pcm) / CANONICAL_SAMPLE_RATE, abs=0.002)
    model = np.array(sorted(boundaries))
    for v in visemes:
        if v.viseme in (Viseme.AA, Viseme.E, Viseme.IH, Viseme.OH, Viseme.OU) and v.end - v.start < 0.03:
            continue  # the second half of a split diphthong ends mid-phoneme by design
        assert np.abs(model - v.start).min() < 0.020, v


def test_round_trip_through_whisper(piper: PiperTTS, whisper) -> None:
    text = (
        "The weather is lovely today. I would like to walk to the park with my family. "
        "Please remember to bring an umbrella, because it might rain this evening."
    )
    pcm, _, _, _ = collect(piper, text)
    audio = resample(pcm, CANONICAL_SAMPLE_RATE, 16000).astype(np.float32) / 32768.0
    segments, _ = whisper.transcribe(audio, language="en", beam_size=1)
    heard = " ".join(s.text for s in segments)
    assert word_error_rate(text, heard) <= 0.10, heard


def test_cancelling_mid_sentence_stops_the_synthesis(piper: PiperTTS, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the consumer cancels, the engine starts no more encoder or decoder work for the rest of the text."""
    text = "This is a long sentence that keeps going on and on so that cancelling it in the middle matters a lot. " * 3
    work: list[str] = []
    for name in ("plan", "encode", "decode"):
        monkeypatch.setattr(piper, name, logged(getattr(piper, name), name, work))

    count = cancel_after_first_chunk(piper, text, work)
    assert count == 1
    assert work[:3] == ["plan", "encode", "decode"]
    assert len(after_cancel(work)) <= 1  # the next window's decode may have been under way already
    pcm, _, _, _ = collect(piper, "Still working.")  # the engine is usable afterwards
    assert len(pcm) > 0.3 * CANONICAL_SAMPLE_RATE


def test_ten_thousand_characters_stream_in_bounded_pieces(piper: PiperTTS) -> None:
    words = [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "foxtrot",
        "golf",
        "hotel",
        "india",
        "juliet",
        "kilo",
        "lima",
    ]
    text = " ".join(words[i % len(words)] for i in range(1700))[:10_000]  # no punctuation at all
    blocks = list(text_blocks(text))
    assert "".join(b.replace(" ", "") for b in blocks) == text.replace(" ", "")
    assert max(len(b) for b in blocks) <= 400

    async def first_chunks(n: int) -> list[SpeechChunk]:
        out = []
        async for c in piper.stream(text):
            out.append(c)
            if len(out) == n:
                break
        return out

    chunks = asyncio.run(first_chunks(4))
    assert len(chunks) == 4
    assert all(0 < c.duration < 8.0 for c in chunks)  # one decoder window at a time


def test_split_phonemes_cuts_early_then_at_clauses() -> None:
    sentence = list("a b c d e f, g h i j k l m n o.")
    pieces = split_phonemes(sentence, first_words=3, max_words=6)
    spoken = ["".join(p).split() for p, _, _ in pieces]
    assert spoken[0] == ["a", "b", "c"]
    assert spoken[1] == ["d", "e", "f,"]  # ends at the comma rather than after six words
    assert [p[1:] for p in pieces] == [(False, True), (True, True), (True, True), (True, False)][: len(pieces)]
    assert sum(len(s) for s in spoken) == 15
    assert split_phonemes(list("a b c."), first_words=3, max_words=6) == [(list("a b c."), False, False)]


@pytest.mark.parametrize("text", ["", "   \n\t", "😀😀", "Hello 👋 world ✨!", "§±∆ ≠ ∞"])
def test_odd_input_does_not_crash(piper: PiperTTS, text: str) -> None:
    pcm, visemes, _, _ = collect(piper, text)
    if not text.strip():
        assert len(pcm) == 0 and not visemes
    if "world" in text:
        assert len(pcm) > 0.3 * CANONICAL_SAMPLE_RATE


def test_windowed_decoding_matches_decoding_the_whole_piece(piper: PiperTTS) -> None:
    """The decoder's context makes window borders inaudible: the samples equal a one-shot decode."""
    piece = piper.plan("The weather will be lovely for our walk this afternoon.", first=False).pieces[0]
    encoded = piper.encode(piece)
    whole = piper.decode(encoded, encoded.first_frame, encoded.end_frame)
    borders = [*range(encoded.first_frame, encoded.end_frame, 16), encoded.end_frame]
    windows = np.concatenate([piper.decode(encoded, lo, hi) for lo, hi in itertools.pairwise(borders)])
    assert len(windows) == len(whole) == (encoded.end_frame - encoded.first_frame) * piper._hop
    assert np.abs(windows - whole).max() < 1e-3
