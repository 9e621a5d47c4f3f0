"""piper with the packaged en_US-joe-medium voice: streaming, visemes, alignment, round trip through Whisper,
joins between pieces, and speaking a unit while the LLM is still writing it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import numpy as np
import pytest
from tts_helpers import (
    VirtualClock,
    after_cancel,
    cancel_after_first_chunk,
    collect,
    envelope_lag,
    joins,
    logged,
    quiet_around,
    record_encodes,
    speak_drafts,
    unit_drafts,
    word_ends,
    word_error_rate,
)

from core.audio import resample
from core.events import CANONICAL_SAMPLE_RATE, SpeechChunk, Viseme
from speech import tts_piper
from speech.tts_piper import PiperTTS, split_phonemes, text_blocks
from speech.visemes import TimedPhoneme

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def piper() -> PiperTTS:
    return PiperTTS()


def transcribe(whisper, pcm: np.ndarray) -> str:
    audio = resample(pcm, CANONICAL_SAMPLE_RATE, 16000).astype(np.float32) / 32768.0
    segments, _ = whisper.transcribe(audio, language="en", beam_size=1)
    return " ".join(s.text for s in segments)


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
    heard = transcribe(whisper, pcm)
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


AMAZON = (
    "The Amazon rainforest produces a fifth of the oxygen made on land and is often called the lungs of the planet. "
    "Its trees store huge amounts of carbon."
)
REPLIES = [
    AMAZON,
    "Of course, I can help you plan a weekend in Lisbon on a small budget. Start with the old town.",
    "In 2024, the company sold 1,500 units at $29.99 each, which was a record for the team.",
    "Dr. Smith said the results from the 3rd trial were better than the ones we saw in the first two.",
    "I'd say it's the best option for a family of four who want to travel on a budget.",
    "The U.S. economy grew by 2.5 percent last year, according to the official figures released on Monday.",
    "You can visit www.example.com for more details about the program and how to apply for it.",
    "At 7:30 pm on the 4th of July the fireworks begin over the river near the old bridge.",
    "Hi! How are you doing today, my friend? I hope the weather is treating you well over there.",
    "Mr. and Mrs. Jones live at 221B Baker Street with their two cats and an old dog named Rex.",
    "Our model, GPT-4o, answered 87% of the questions correctly on the first try in the evaluation.",
    "First, preheat the oven to 180 degrees; then mix the flour, the sugar and the eggs in a large bowl.",
    "**Sure!** Here is the *short* answer: the read and the lead were both in the record she read out loud.",
]


@pytest.fixture
def quiet_model(piper: PiperTTS, monkeypatch: pytest.MonkeyPatch) -> PiperTTS:
    """The voice without the model's random noise, so two renderings of the same pieces are the same samples."""
    monkeypatch.setattr(piper._voice.config, "noise_scale", 0.0)
    monkeypatch.setattr(piper._voice.config, "noise_w_scale", 0.0)
    return piper


@pytest.mark.parametrize(
    "text",
    ["I think the weather will be lovely for our walk, so bring a hat.", "Today I would like to tell you a story."],
)
def test_a_cut_joins_like_the_sentence_spoken_in_one_piece(
    quiet_model: PiperTTS, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """The first piece ends between two words of a phrase: at most 30 ms more quiet there than the sentence
    spoken in one piece has at that word, and the same length within 4%. (Encoded without the words around
    it, the piece's last word came out drawn out and followed by 120-155 ms of quiet.)"""
    monkeypatch.setattr(tts_piper, "time", VirtualClock())  # the voice never runs short: pieces as planned
    whole = PiperTTS(first_piece_words=0, max_piece_words=100)
    split_calls = record_encodes(quiet_model, monkeypatch)
    split, _, _, _ = collect(quiet_model, text)
    whole_calls = record_encodes(whole, monkeypatch)
    one_piece, _, _, _ = collect(whole, text)
    assert len(split_calls) == 2 and len(whole_calls) == 1
    [(at, words)] = joins(split_calls)
    assert quiet_around(split, at) <= quiet_around(one_piece, word_ends(whole_calls)[words - 1]) + 0.030
    assert len(split) == pytest.approx(len(one_piece), rel=0.04)


def test_a_draft_marks_final_only_pieces_of_the_whole_unit(piper: PiperTTS) -> None:
    """Every piece a draft's plan follows with another one (so the engine may speak it early) is, context
    words included, a piece of the complete unit's plan: what is spoken early is what would have been
    spoken (numbers, abbreviations, "of the" read as one word, markdown, early clause cuts)."""
    checked = 0
    for reply in REPLIES + [r.replace(",", "") for r in REPLIES]:
        drafts = unit_drafts(reply)
        whole = piper.plan(drafts[-1]).pieces
        for draft in drafts[:-1]:
            for piece in piper.plan(draft).pieces[:-1]:
                checked += 1
                assert any(
                    (piece.phonemes, piece.before, piece.after) == (w.phonemes, w.before, w.after) for w in whole
                ), (draft, drafts[-1])
    assert checked > 300


def test_a_unit_spoken_while_it_is_written_is_the_whole_unit(
    quiet_model: PiperTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LLM far ahead of the voice (a clock that stands still): the first piece is heard before the unit is
    complete, and the samples, visemes and words are those of the complete unit spoken at once."""
    monkeypatch.setattr(tts_piper, "time", VirtualClock())
    drafts = unit_drafts(AMAZON)
    assert drafts[-1] == AMAZON.split(" Its")[0]
    pcm, visemes, words, _ = collect(quiet_model, drafts[-1])
    spoken = speak_drafts(quiet_model, drafts)
    assert spoken.early
    assert np.array_equal(spoken.pcm, pcm)
    offset = 0.0
    progressive: list[tuple[Viseme, float]] = []
    for c in spoken.chunks:
        progressive += [(v.viseme, round(v.start + offset, 6)) for v in c.visemes]
        offset += c.duration
    assert progressive == [(v.viseme, round(v.start, 6)) for v in visemes]
    assert [w.text for c in spoken.chunks for w in c.words] == [w.text for w in words]


def test_an_llm_slower_than_the_voice_gets_the_whole_unit_at_once(
    quiet_model: PiperTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clock that moves 100 s at every reading: the drafts come far slower than the voice reads, so the
    engine waits for the complete unit rather than start and then fall silent mid-sentence."""
    monkeypatch.setattr(tts_piper, "time", VirtualClock(step=100.0))
    drafts = unit_drafts(AMAZON)
    assert len(quiet_model.plan(drafts[-2]).pieces) > 1  # a piece is final before the unit is complete
    work: list[str] = []
    monkeypatch.setattr(quiet_model, "encode", logged(quiet_model.encode, "encode", work))
    real_plan, real_wait = quiet_model.plan, tts_piper._Latest.wait

    def plan(text: str, first: bool = True, skip: int = 0) -> tts_piper.Plan:  # the real one, noting the draft
        work.append(f"plan {len(text.split())}")
        return real_plan(text, first, skip)

    async def wait(self: tts_piper._Latest, timeout: float | None) -> None:  # the engine decided to wait
        work.append("wait")
        await real_wait(self, timeout)

    monkeypatch.setattr(quiet_model, "plan", plan)
    monkeypatch.setattr(tts_piper._Latest, "wait", wait)
    decided = [f"plan {len(drafts[-2].split())}", "wait"]
    spoken = speak_drafts(quiet_model, drafts, hold=lambda: work[-2:] == decided)
    assert not spoken.early and work[work.index(decided[0]) :][:2] == decided
    assert work.index("encode") > work.index(decided[0])
    pcm, _, _, _ = collect(quiet_model, drafts[-1])
    assert np.abs(spoken.pcm.astype(np.int32) - pcm).max() <= 2  # decode windows may differ: ~1e-5 apart


def test_a_voice_about_to_run_dry_says_the_words_it_has_without_a_pause(
    quiet_model: PiperTTS, monkeypatch: pytest.MonkeyPatch, whisper
) -> None:
    """After the first piece the LLM falls behind (the virtual clock jumps past all the audio handed out): the
    engine says the words it has in short pieces rather than wait for the rest of the sentence, and every
    join sounds like the complete unit at that word: no extra quiet, the same length, the same words heard."""
    clock = VirtualClock()
    monkeypatch.setattr(tts_piper, "time", clock)
    drafts = unit_drafts(AMAZON)
    planned: list[int] = []
    real_plan = quiet_model.plan

    def plan(text: str, first: bool = True, skip: int = 0) -> tts_piper.Plan:  # the real one, noting the draft
        result = real_plan(text, first, skip)
        planned.append(len(text.split()))
        return result

    monkeypatch.setattr(quiet_model, "plan", plan)
    calls = record_encodes(quiet_model, monkeypatch)
    whole, _, _, _ = collect(quiet_model, drafts[-1])
    whole_calls = list(calls)
    calls.clear()

    before_final: list[int] = []

    async def run() -> np.ndarray:
        chunks: list[SpeechChunk] = []

        async def feed() -> AsyncIterator[str]:
            for draft in drafts[:-1]:
                yield draft
                waited = 0.0
                while len(draft.split()) not in planned and waited < 60:
                    await asyncio.sleep(0.01)  # paced by the engine: it sees every word as the LLM writes it
                    waited += 0.01
                if chunks:
                    clock.now = 1000.0  # the voice has run dry from now on
            before_final.append(len(calls))
            yield drafts[-1]

        async for c in quiet_model.stream_progressive(feed()):
            chunks.append(c)
        return np.concatenate([c.pcm for c in chunks])

    pcm = asyncio.run(run())
    assert before_final[0] >= 3  # the first piece, then short pieces of the words known while the LLM was behind
    ends = word_ends(whole_calls)
    for at, words in joins(calls):
        assert quiet_around(pcm, at) <= quiet_around(whole, ends[words - 1]) + 0.040, (at, words)
    assert len(pcm) == pytest.approx(len(whole), rel=0.05)
    heard = [transcribe(whisper, a) for a in (whole, pcm)]
    assert word_error_rate(heard[0], heard[1]) <= 0.15, heard


def test_cancelling_a_unit_being_written_stops_synthesis_and_reading(
    piper: PiperTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    work: list[str] = []
    for name in ("plan", "encode", "decode"):
        monkeypatch.setattr(piper, name, logged(getattr(piper, name), name, work))
    assert cancel_after_first_chunk(piper, "", work, drafts=unit_drafts(AMAZON)) == 1
    late = after_cancel(work)
    assert "drafts closed" in late and len([w for w in late if w != "drafts closed"]) <= 1


def test_an_error_while_the_unit_is_written_reaches_the_caller(piper: PiperTTS) -> None:
    async def failing() -> AsyncIterator[str]:
        yield "The Amazon rainforest produces a fifth of the"
        raise ConnectionError("the LLM went away")

    async def run() -> list[asyncio.Task[object]]:
        with pytest.raises(ConnectionError, match="went away"):
            async for _ in piper.stream_progressive(failing()):
                pass
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert asyncio.run(run()) == []
