"""Lexical terms of English and Chinese text, for knowledge retrieval and for checking a learner's answer.

Both jobs compare what a person typed or said with text someone wrote, so both need the same
forgiving view of words: case, accents, full-width forms and Traditional characters do not matter,
English words lose their common endings ("clouds", "evaporated"), and Chinese, written without
spaces, is compared by overlapping character pairs, which match Chinese words without a dictionary.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from opencc import OpenCC

from speech.text import HAN, HAN_RANGES

_RUN = re.compile(f"[{HAN_RANGES}]+|[^\\W_{HAN_RANGES}]+")

_STOPWORD_TEXT = (
    "a an the is are was were be been being am do does did what which who whom whose how why when where "
    "can could would should will shall may might must you your yours i me my mine we our ours us it its "
    "of to in on for with about and or but not no tell please this that there these those have has had "
    "as at by from so if any some much many know let like just also than then into out up down over "
    "don doesn didn isn aren wasn weren haven hasn won s t d ll re ve m"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
"""Words that say nothing about the topic: matching on them would rank every section the same."""

_CHINESE_STOP_TEXT = (
    "什么 么是 是什 怎么 么样 为什 如何 哪些 哪个 请问 一下 可以 告诉 "
    "诉我 我们 你们 他们 这个 那个 是不 不是 有没 没有 的是 是的 一个"
)
CHINESE_STOP_PAIRS = frozenset(_CHINESE_STOP_TEXT.split())
"""Character pairs of question words and pronouns; like STOPWORDS, they carry no topic."""


@lru_cache(maxsize=1)
def _to_simplified() -> OpenCC:
    return OpenCC("t2s")


def normalise(text: str) -> str:
    """Case-, accent- and width-insensitive form; Traditional Chinese becomes Simplified."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    if HAN.search(text):
        text = _to_simplified().convert(text)
    return text


def stem(word: str) -> str:
    """A light English stemmer: plural, -ing, -ed, -ly and -ation endings and a final e.

    It only has to be consistent (the same stem for a word wherever it appears), not linguistically
    right, and it must never merge unrelated short words, so nothing under four letters changes.
    """
    if len(word) < 4 or not word.isascii() or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("eed"):
            word = word[: -len(suffix)]
            break
    if word.endswith("ation") and len(word) > 7:
        word = word[:-3]
    elif word.endswith("ly") and len(word) > 5:
        word = word[:-2]
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


def _han_pairs(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def terms(text: str, *, drop_stopwords: bool = True) -> list[str]:
    """Index terms in reading order: stemmed words and Chinese character pairs ("don't" is "don", "t")."""
    out: list[str] = []
    for match in _RUN.finditer(normalise(text)):
        run = match.group()
        if HAN.match(run):
            out.extend(p for p in _han_pairs(run) if not (drop_stopwords and p in CHINESE_STOP_PAIRS))
        elif not (drop_stopwords and run in STOPWORDS):
            out.append(stem(run))
    return out


def has_chinese(text: str) -> bool:
    return HAN.search(text) is not None
