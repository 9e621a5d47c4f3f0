"""Mandarin text for a voice that reads phonemes: numbers said in words, words segmented, tones as spoken.

A neural voice reads what its phonemes say, so every mistake here is heard: "2024年" read as a number
(两千零二十四年), "50%" as "fifty percent" or nothing, 聊一聊 with a full first-tone 一 (heard as 聊医疗),
or 看看 with two stressed syllables. `normalize` writes numbers, dates, times, money, percentages,
fractions and ranges the way they are read aloud; `words` segments the text (rjieba) and gives each
Chinese word its pinyin (pypinyin, per word so polyphones follow the word) with the tone changes a
speaker makes: 一 and 不 before other tones, third tone before third tone (inside a word and after a
one-syllable word), 一 and the repeated syllable of a reduplicated verb (聊一聊, 看看) in the neutral tone.
Latin words (English names and terms in a Chinese sentence) pass through for the English phonemizer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from speech.text import HAN, HAN_RANGES

_DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ("", "十", "百", "千")
_BIG_UNITS = ("", "万", "亿", "万亿")
_CLASSIFIERS = frozenset("个位本次天年条只件张家种点名台辆岁人口门分")
"""Measure words after which 2 is read 两 (两个人, 两本书)."""
_CURRENCY_BEFORE = {"¥": "元", "￥": "元", "$": "美元", "€": "欧元", "£": "英镑"}
_UNITS_AFTER = {
    "km/h": "公里每小时",
    "km": "公里",
    "kg": "公斤",
    "cm": "厘米",
    "mm": "毫米",
    "℃": "摄氏度",
    "°C": "摄氏度",
    "°": "度",
    "GB": "G",
    "MB": "M",
}
_NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"
_DATE = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*([日号])?")
_YEAR = re.compile(r"(\d{2,4})(?=\s*年)")
_TIME = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?::(\d{2}))?(?![\d:])")
_PERCENT = re.compile(rf"([-+]?)({_NUMBER})\s*[%％]")
_MONEY = re.compile(rf"([¥￥$€£])\s*({_NUMBER})(\s*[万亿])?")
_RANGE = re.compile(rf"({_NUMBER})\s*[-~～—–]\s*({_NUMBER})")
_FRACTION = re.compile(r"(?<![\d/])(\d+)/(\d+)(?![\d/])")
_UNIT = re.compile(rf"({_NUMBER})\s*({'|'.join(re.escape(u) for u in sorted(_UNITS_AFTER, key=len, reverse=True))})")
_SIGNED = re.compile(rf"(?<![\w.])-({_NUMBER})")
_DIGIT_STRING = re.compile(r"\d{5,}")
"""Read digit by digit when it starts with 0 or has 11 or more digits (phone numbers, ids), else a number."""
_PLAIN = re.compile(_NUMBER)

_TOKEN = re.compile(rf"([{HAN_RANGES}]+)|([A-Za-z]+(?:['’][A-Za-z]+)*)|(\S)")
TONE_CHANGED_NEUTRAL = 5


def _group(number: int) -> str:
    """0-9999 in words, with 零 for skipped places (1001 一千零一); "" for 0."""
    out: list[str] = []
    zero = False
    for place in range(3, -1, -1):
        digit = number // 10**place % 10
        if digit == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(_DIGITS[digit] + _SMALL_UNITS[place])
    return "".join(out)


def integer(number: int) -> str:
    """An integer as read aloud: 10 十, 110 一百一十, 20005 两万零五, 2000 两千."""
    if number == 0:
        return "零"
    if number < 0:
        return "负" + integer(-number)
    groups: list[int] = []
    while number:
        groups.append(number % 10000)
        number //= 10000
    if len(groups) > len(_BIG_UNITS):
        return digits(str(sum(g * 10000**i for i, g in enumerate(groups))))
    out = ""
    for i in range(len(groups) - 1, -1, -1):
        group = groups[i]
        if group == 0:
            continue
        if out and group < 1000:
            out += "零"
        out += _group(group) + _BIG_UNITS[i]
    out = out.removeprefix("零")
    if out.startswith("一十"):
        out = out[1:]
    if out.startswith("二") and len(out) > 1 and out[1] in "千万亿":
        out = "两" + out[1:]
    return out


def digits(text: str) -> str:
    """Digit by digit, as years, phone numbers and codes are read."""
    return "".join(_DIGITS[int(d)] for d in text if d.isdigit())


def number(text: str) -> str:
    """A written number (thousands separators and decimals allowed) as read aloud: 3.14 三点一四."""
    whole, _, fraction = text.replace(",", "").partition(".")
    spoken = integer(int(whole))
    return f"{spoken}点{digits(fraction)}" if fraction else spoken


def _before_classifier(spoken: str, following: str) -> str:
    """两 for a lone 2 before a measure word (两个), 二 otherwise (二月, 第二)."""
    if spoken == "二" and following[:1] in _CLASSIFIERS:
        return "两"
    return spoken


def normalize(text: str) -> str:
    """Numbers, dates, times, money, percentages, fractions and ranges written out as they are read."""
    text = _DATE.sub(lambda m: f"{digits(m[1])}年{integer(int(m[2]))}月{integer(int(m[3]))}{m[4] or '日'}", text)
    text = _YEAR.sub(lambda m: digits(m[1]), text)
    text = _TIME.sub(_time, text)
    text = _PERCENT.sub(lambda m: ("负" if m[1] == "-" else "") + "百分之" + number(m[2]), text)
    text = _MONEY.sub(lambda m: number(m[2]) + (m[3] or "").strip() + _CURRENCY_BEFORE[m[1]], text)
    text = _FRACTION.sub(lambda m: f"{integer(int(m[2]))}分之{integer(int(m[1]))}", text)
    text = _RANGE.sub(lambda m: f"{number(m[1])}到{number(m[2])}", text)
    text = _UNIT.sub(lambda m: number(m[1]) + _UNITS_AFTER[m[2]], text)
    text = _SIGNED.sub(lambda m: "负" + number(m[1]), text)
    text = _DIGIT_STRING.sub(lambda m: digits(m[0]) if m[0].startswith("0") or len(m[0]) >= 11 else m[0], text)
    return _PLAIN.sub(_plain_number, text)


def _plain_number(match: re.Match[str]) -> str:
    spoken = number(match[0])
    ordinal = match.string[max(0, match.start() - 1) : match.start()] == "第"
    return spoken if ordinal else _before_classifier(spoken, match.string[match.end() :])


def _time(match: re.Match[str]) -> str:
    hours, minutes, seconds = int(match[1]), int(match[2]), match[3]
    if hours > 24 or minutes > 59:
        return match[0]
    spoken = _before_classifier(integer(hours), "点") + "点"
    if minutes:
        spoken += ("零" if minutes < 10 else "") + integer(minutes) + "分"
    if seconds and int(seconds):
        spoken += integer(int(seconds)) + "秒"
    return spoken


@dataclass(frozen=True, slots=True)
class Word:
    """One word of a Mandarin sentence: Chinese characters with a syllable (pinyin + tone digit) each,
    a Latin word (`syllables` empty, for the English phonemizer), or punctuation (`punct`)."""

    text: str
    syllables: tuple[str, ...] = ()
    latin: bool = False
    punct: bool = False


def words(text: str) -> list[Word]:
    """`text` (already normalized) as words with their pinyin, tone changes applied."""
    out: list[Word] = []
    for match in _TOKEN.finditer(text):
        han, latin, other = match.groups()
        if han:
            out += [Word(w, tuple(_pinyin(w))) for w in _segment(han)]
        elif latin:
            out.append(Word(latin, latin=True))
        elif not other.isspace():
            out.append(Word(other, punct=True))
    return _sandhi(out)


def _segment(han: str) -> list[str]:
    """Words of a run of Chinese characters; X一X and XX (聊一聊, 看看) kept whole, whatever rjieba says."""
    import rjieba

    out: list[str] = []
    cursor = 0
    for match in _REDUPLICATION.finditer(han):
        out += rjieba.cut(han[cursor : match.start()]) if match.start() > cursor else []
        out.append(match[0])
        cursor = match.end()
    return out + (rjieba.cut(han[cursor:]) if cursor < len(han) else [])


_REDUPLICATED_VERBS = "看听想说试聊走问谈找等尝读写玩逛学练歇坐动笑摸算查猜讲闻散"
"""One-character verbs whose doubled form (看看, 试试) softens the verb, the second syllable neutral."""
_REDUPLICATION = re.compile(rf"([^一])一\1|([{_REDUPLICATED_VERBS}])\2")


@lru_cache(maxsize=8192)
def _pinyin(word: str) -> tuple[str, ...]:
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(word, style=Style.TONE3, neutral_tone_with_five=True, tone_sandhi=True, errors="ignore")
    if len(syllables) != len(word):
        syllables = [lazy_pinyin(ch, style=Style.TONE3, neutral_tone_with_five=True)[0] for ch in word]
    if _REDUPLICATION.fullmatch(word):
        syllables[1] = _neutral(syllables[1])
    return tuple(syllables)


def _neutral(syllable: str) -> str:
    return syllable.rstrip("012345") + str(TONE_CHANGED_NEUTRAL)


def _tone(syllable: str) -> int:
    return int(syllable[-1]) if syllable[-1:].isdigit() else TONE_CHANGED_NEUTRAL


def _sandhi(items: list[Word]) -> list[Word]:
    """Tone changes across word borders, which pypinyin (one word at a time) cannot see: a one-syllable
    third tone before a third tone becomes second (很好 hen2 hao3), and 不 before a fourth tone bu2
    (不 对). 一 alone is left as pypinyin reads it: before another word it is as often a number (一 二 三,
    统 一) as the article whose tone changes, and the article mostly comes segmented with its classifier."""
    out = list(items)
    for i in range(len(out) - 1):
        word, nxt = out[i], out[i + 1]
        if len(word.syllables) != 1 or not nxt.syllables:
            continue
        if _tone(word.syllables[0]) == 3 and _tone(nxt.syllables[0]) == 3:
            out[i] = Word(word.text, (word.syllables[0][:-1] + "2",))
        elif word.text == "不" and _tone(nxt.syllables[0]) == 4:
            out[i] = Word(word.text, ("bu2",))
    return out


_INITIALS = {
    "b": "p",
    "p": "pʰ",
    "m": "m",
    "f": "f",
    "d": "t",
    "t": "tʰ",
    "n": "n",
    "l": "l",
    "g": "k",
    "k": "kʰ",
    "h": "x",
    "j": "ʨ",
    "q": "ʨʰ",
    "x": "ɕ",
    "zh": "ꭧ",
    "ch": "ꭧʰ",
    "sh": "ʂ",
    "r": "ɻ",
    "z": "ʦ",
    "c": "ʦʰ",
    "s": "s",
}
"""Pinyin initials in the symbols Kokoro's Mandarin voices were trained on (IPA; ꭧ is the retroflex tʂ)."""
_FINALS = {
    "a": "a~",
    "ai": "ai~",
    "an": "a~n",
    "ang": "a~ŋ",
    "ao": "au~",
    "e": "ɤ~",
    "ei": "ei~",
    "en": "ə~n",
    "eng": "ə~ŋ",
    "er": "ɚ~",
    "i": "i~",
    "ia": "ja~",
    "ian": "jɛ~n",
    "iang": "ja~ŋ",
    "iao": "jau~",
    "ie": "je~",
    "in": "i~n",
    "iou": "jou~",
    "ing": "i~ŋ",
    "iong": "jʊ~ŋ",
    "ong": "ʊ~ŋ",
    "ou": "ou~",
    "u": "u~",
    "uei": "wei~",
    "ua": "wa~",
    "uai": "wai~",
    "uan": "wa~n",
    "uen": "wə~n",
    "uang": "wa~ŋ",
    "ueng": "wə~ŋ",
    "uo": "wo~",
    "o": "wo~",
    "ü": "y~",
    "üe": "ɥe~",
    "üan": "ɥɛ~n",
    "ün": "y~n",
}
"""Pinyin finals; ~ marks where the tone goes (after the syllable's main vowel)."""
_WHOLE = {"ê": "ɛ~", "o": "ɔ~", "er": "ɚ~", "m": "m~", "n": "n~", "ng": "ŋ~", "hm": "hm~", "hng": "hŋ~"}
"""Syllables without an initial/final split: interjections and syllabic nasals."""
_TONES = {1: "→", 2: "↗", 3: "↓", 4: "↘", 5: ""}


@dataclass(frozen=True, slots=True)
class Syllable:
    """One pinyin syllable: its initial and final (for visemes) and the phonemes Kokoro reads for each."""

    initial: str
    final: str
    initial_phonemes: str
    final_phonemes: str


@lru_cache(maxsize=2048)
def syllable(pinyin: str) -> Syllable:
    """`pinyin` with a tone digit (zhi1, lv4, de5) as Kokoro phonemes; unknown spellings give no phonemes."""
    from pypinyin.contrib.tone_convert import to_finals, to_initials

    tone = _TONES[_tone(pinyin)]
    plain = pinyin.rstrip("012345").replace("v", "ü")
    if plain in _WHOLE:
        return Syllable("", plain, "", _WHOLE[plain].replace("~", tone))
    initial = to_initials(plain, strict=True)
    final = to_finals(plain, strict=True, v_to_u=True)
    if final == "i" and initial in ("zh", "ch", "sh", "r", "z", "c", "s"):
        final_phonemes = "ɨ~"  # the apical vowel of zhi, ci, si
    else:
        final_phonemes = _FINALS.get(final, "")
    if not final_phonemes or (initial and initial not in _INITIALS):
        return Syllable(initial, final, "", "")
    return Syllable(initial, final, _INITIALS.get(initial, ""), final_phonemes.replace("~", tone))


def has_han(text: str) -> bool:
    return bool(HAN.search(text))
