"""Mandarin text for Kokoro: numbers read aloud, segmentation, tone changes, pinyin to model symbols."""

from __future__ import annotations

import pytest

from speech.text_zh import integer, normalize, syllable, words


@pytest.mark.parametrize(
    ("number", "spoken"),
    [
        (0, "零"),
        (7, "七"),
        (10, "十"),
        (15, "十五"),
        (110, "一百一十"),
        (1001, "一千零一"),
        (2000, "两千"),
        (20005, "两万零五"),
        (100000000, "一亿"),
        (120_0000, "一百二十万"),
        (-3, "负三"),
    ],
)
def test_integers_are_read_as_a_speaker_says_them(number: int, spoken: str) -> None:
    assert integer(number) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("2024年3月5日", "二零二四年三月五日"),
        ("2024-03-05", "二零二四年三月五日"),
        ("下午3:30开会", "下午三点三十分开会"),
        ("8:05", "八点零五分"),
        ("涨了25%", "涨了百分之二十五"),
        ("跌了-3.5%", "跌了负百分之三点五"),
        ("¥5,000", "五千元"),
        ("$12", "十二美元"),
        ("3/4的人", "四分之三的人"),
        ("10-20个", "十到二十个"),
        ("2个苹果", "两个苹果"),
        ("第2名", "第二名"),
        ("25℃", "二十五摄氏度"),
        ("圆周率是3.14", "圆周率是三点一四"),
        ("电话13812345678", "电话一三八一二三四五六七八"),
        ("编号00123", "编号零零一二三"),
        ("在iPhone上", "在iPhone上"),
    ],
)
def test_normalize_writes_numbers_dates_money_and_percentages_out(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


def pinyin(text: str) -> list[str]:
    return [s for w in words(text) for s in w.syllables]


def test_yi_in_reduplication_is_neutral_and_the_verb_stays_one_word() -> None:
    """聊一聊 with a full first-tone 一 was heard as 聊医疗."""
    found = words("我们来聊一聊人工智能")
    assert "聊一聊" in [w.text for w in found]
    assert pinyin("聊一聊") == ["liao2", "yi5", "liao2"]
    assert pinyin("试一试") == ["shi4", "yi5", "shi4"]


def test_doubled_verb_has_a_neutral_second_syllable() -> None:
    assert pinyin("看看") == ["kan4", "kan5"]
    assert pinyin("散散步") == ["san4", "san5", "bu4"]


def test_bu_and_yi_change_tone_before_a_fourth_tone() -> None:
    assert pinyin("不对") == ["bu2", "dui4"]
    assert pinyin("不要") == ["bu2", "yao4"]
    assert pinyin("不好") == ["bu4", "hao3"]
    assert pinyin("一个") == ["yi2", "ge4"]
    assert pinyin("一起") == ["yi4", "qi3"]


def test_yi_as_a_number_keeps_its_first_tone() -> None:
    assert pinyin("第一")[-1] == "yi1"
    assert pinyin("统一")[-1] == "yi1"


def test_third_tone_before_third_tone_becomes_second() -> None:
    assert pinyin("你好") == ["ni2", "hao3"]  # inside a word (pypinyin)
    assert pinyin("很好") == ["hen2", "hao3"]  # across words
    assert pinyin("我很好") == ["wo2", "hen2", "hao3"]


def test_polyphones_follow_the_word() -> None:
    assert pinyin("银行") == ["yin2", "hang2"]
    assert pinyin("行走") == ["xing2", "zou3"]


def test_latin_words_and_punctuation_are_kept_apart() -> None:
    found = words("他用Python写了程序。")
    assert [w.text for w in found if w.latin] == ["Python"]
    assert [w.text for w in found if w.punct] == ["。"]
    assert "".join(w.text for w in found) == "他用Python写了程序。"


@pytest.mark.parametrize(
    ("py", "initial", "final"),
    [
        ("zhi1", "ꭧ", "ɨ→"),
        ("ci2", "ʦʰ", "ɨ↗"),
        ("lv4", "l", "y↘"),
        ("ju1", "ʨ", "y→"),
        ("xue2", "ɕ", "ɥe↗"),
        ("yuan2", "", "ɥɛ↗n"),
        ("hao3", "x", "au↓"),
        ("de5", "t", "ɤ"),
        ("er4", "", "ɚ↘"),
        ("shui3", "ʂ", "wei↓"),
        ("lun4", "l", "wə↘n"),
        ("qiong2", "ʨʰ", "jʊ↗ŋ"),
    ],
)
def test_pinyin_becomes_the_symbols_kokoro_was_trained_on(py: str, initial: str, final: str) -> None:
    s = syllable(py)
    assert (s.initial_phonemes, s.final_phonemes) == (initial, final)


def test_unknown_spelling_gives_no_phonemes_rather_than_a_guess() -> None:
    assert syllable("xyz1").final_phonemes == ""
