"""The viseme set's mappings, the timeline builder, chunk timing, and grapheme-to-phoneme for timed words."""

from __future__ import annotations

import itertools

import pytest

from core.events import Viseme as V
from core.events import VisemeEvent, WordTiming
from speech.g2p import english_visemes, mandarin_visemes, word_visemes, words_to_visemes
from speech.visemes import (
    ChunkTimer,
    TimedPhoneme,
    arpabet_visemes,
    ipa_visemes,
    pinyin_final_visemes,
    pinyin_initial_visemes,
    viseme_timeline,
)


@pytest.mark.parametrize(
    ("phoneme", "expected"),
    [
        ("p", (V.PP,)),
        ("b", (V.PP,)),
        ("m", (V.PP,)),
        ("f", (V.FF,)),
        ("v", (V.FF,)),
        ("θ", (V.TH,)),
        ("ð", (V.TH,)),
        ("t", (V.DD,)),
        ("k", (V.KK,)),
        ("ŋ", (V.KK,)),
        ("ʃ", (V.CH,)),
        ("tʃ", (V.CH,)),
        ("dʒ", (V.CH,)),
        ("s", (V.SS,)),
        ("n", (V.NN,)),
        ("l", (V.NN,)),
        ("ɹ", (V.RR,)),
        ("ɚ", (V.RR,)),
        ("ɑ", (V.AA,)),
        ("ɛ", (V.E,)),
        ("ɪ", (V.IH,)),
        ("ɔ", (V.OH,)),
        ("u", (V.OU,)),
        ("ˈaɪ", (V.AA, V.IH)),  # espeak gives diphthongs with their stress mark
        ("oʊ", (V.OH, V.OU)),
        ("tɕh", (V.CH,)),  # espeak's aspirated Mandarin j/q: the h is aspiration, not a sound
        ("th", (V.DD,)),
        ("s.", (V.CH,)),  # espeak's ASCII retroflex (sh)
        (" ", (V.SIL,)),
        ("", (V.SIL,)),
        (".", (V.SIL,)),
        ("ˈ", ()),
        ("ː", ()),
    ],
)
def test_ipa_mapping(phoneme: str, expected: tuple[V, ...]) -> None:
    assert ipa_visemes(phoneme) == expected


def test_arpabet_mapping_tells_schwa_from_stressed_ah() -> None:
    assert arpabet_visemes("AH0") == (V.E,)
    assert arpabet_visemes("AH1") == (V.AA,)
    assert arpabet_visemes("M") == (V.PP,)
    assert arpabet_visemes("AY1") == (V.AA, V.IH)
    assert arpabet_visemes("TH") == (V.TH,)
    assert arpabet_visemes("W") == (V.OU,)


def test_pinyin_mapping() -> None:
    assert pinyin_initial_visemes("b") == (V.PP,)
    assert pinyin_initial_visemes("zh") == (V.CH,)
    assert pinyin_initial_visemes("") == ()
    assert pinyin_final_visemes("iang") == (V.IH, V.AA, V.KK)
    assert pinyin_final_visemes("uei") == (V.OU, V.E, V.IH)
    assert pinyin_final_visemes("ao3") == (V.AA, V.OU)
    assert pinyin_final_visemes("ü") == (V.OU,)


def test_timeline_drops_zero_length_merges_repeats_and_fills_gaps() -> None:
    timed = [
        TimedPhoneme("m", 0.10, 0.15),
        TimedPhoneme("b", 0.15, 0.20),  # same viseme: merged with m
        TimedPhoneme("ɑ", 0.20, 0.20),  # zero length: dropped
        TimedPhoneme("ɑ", 0.20, 0.30),
        TimedPhoneme("t", 0.40, 0.45),  # gap before it: SIL
    ]
    events = viseme_timeline(timed)
    assert events == [
        VisemeEvent(V.PP, 0.10, 0.20),
        VisemeEvent(V.AA, 0.20, 0.30),
        VisemeEvent(V.SIL, 0.30, 0.40),
        VisemeEvent(V.DD, 0.40, 0.45),
    ]


def test_timeline_gives_stress_time_to_the_next_vowel_and_length_to_the_previous() -> None:
    timed = [
        TimedPhoneme("p", 0.0, 0.1),
        TimedPhoneme("ˈ", 0.1, 0.2),
        TimedPhoneme("ɑ", 0.2, 0.3),
        TimedPhoneme("ː", 0.3, 0.4),
        TimedPhoneme(" ", 0.4, 0.5),
    ]
    assert viseme_timeline(timed) == [
        VisemeEvent(V.PP, 0.0, 0.1),
        VisemeEvent(V.AA, 0.1, 0.4),
        VisemeEvent(V.SIL, 0.4, 0.5),
    ]


def test_timeline_splits_diphthongs_and_keeps_total_time() -> None:
    events = viseme_timeline([TimedPhoneme("aɪ", 1.0, 1.2), TimedPhoneme("m", 1.2, 1.3)])
    assert [e.viseme for e in events] == [V.AA, V.IH, V.PP]
    assert events[0].end == pytest.approx(1.1)
    assert events[0].start == 1.0 and events[-1].end == 1.3


def test_chunk_timer_hands_each_event_to_the_chunk_it_starts_in() -> None:
    timer = ChunkTimer()
    timer.add(
        [VisemeEvent(V.PP, 0.0, 0.3), VisemeEvent(V.AA, 0.3, 0.7), VisemeEvent(V.SIL, 0.7, 1.0)],
        [WordTiming("mama", 0.0, 0.7)],
    )
    first = timer.take(0.5)
    second = timer.take(0.25)
    rest = timer.take(0.0, last=True)
    assert first[0] == (VisemeEvent(V.PP, 0.0, 0.3), VisemeEvent(V.AA, 0.3, 0.7))
    assert first[1] == (WordTiming("mama", 0.0, 0.7),)
    assert second[0] == (VisemeEvent(V.SIL, pytest.approx(0.2), pytest.approx(0.5)),)
    assert rest == ((), ())


def test_english_g2p_closes_the_lips_for_m_p_b() -> None:
    for word in ("mama", "papa", "bob"):
        visemes = [v for v, _ in english_visemes(word)]
        assert visemes[0] == V.PP and visemes[2] == V.PP, (word, visemes)
        assert visemes[1] == V.AA


def test_english_g2p_out_of_vocabulary_uses_letter_rules() -> None:
    visemes = [v for v, _ in english_visemes("zorbulump")]
    assert visemes[0] == V.SS
    assert visemes.count(V.PP) == 2  # b and mp
    assert V.RR in visemes


def test_mandarin_g2p_uses_pinyin() -> None:
    visemes = [v for v, _ in mandarin_visemes("爸爸妈妈")]
    assert visemes == [V.PP, V.AA, V.PP, V.AA, V.PP, V.AA, V.PP, V.AA]
    assert [v for v, _ in mandarin_visemes("你好")] == [V.NN, V.IH, V.KK, V.AA, V.OU]


def test_mixed_word_and_digits() -> None:
    visemes = [v for v, _ in word_visemes("AI助手")]
    assert V.CH in visemes  # zh / sh of 助手 after the English letters
    assert [v for v, _ in word_visemes("7")][:2] == [V.SS, V.E]  # "seven"


def test_words_to_visemes_shares_each_word_by_weight_with_silence_between() -> None:
    events = words_to_visemes([WordTiming("bob", 0.0, 0.4), WordTiming("mama", 0.6, 1.2)])
    assert events[0] == VisemeEvent(V.PP, 0.0, pytest.approx(0.1))  # b, a, b = 1 : 2 : 1
    assert events[1].viseme == V.AA and events[1].end == pytest.approx(0.3)
    assert VisemeEvent(V.SIL, pytest.approx(0.4), pytest.approx(0.6)) in events
    assert events[-1].end == pytest.approx(1.2)
    for a, b in itertools.pairwise(events):
        assert a.end == pytest.approx(b.start) and a.viseme != b.viseme
