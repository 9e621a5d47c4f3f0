"""Speech text cleanup and the streaming sentence segmenter."""

from __future__ import annotations

import random

import pytest

from speech.text import SentenceSegmenter, clean_for_speech, segment_stream, split_for_speech

TIGHT = {"first_min_chars": 1, "min_chars": 1, "early_first_clause": False}
"""Cut at every real sentence end, so the boundary rules are tested on their own."""


def stream(text: str, chunks: list[int], **limits: int | bool) -> list[str]:
    seg = SentenceSegmenter(**limits)
    out: list[str] = []
    pos = 0
    for size in chunks:
        out += seg.feed(text[pos : pos + size])
        pos += size
    out += seg.feed(text[pos:])
    return out + seg.flush()


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("Hello world. How are you?", ["Hello world.", "How are you?"]),
        ("It costs $29.99 today. Buy it.", ["It costs $29.99 today.", "Buy it."]),
        ("Pi is 3.14 roughly. Yes.", ["Pi is 3.14 roughly.", "Yes."]),
        ("Fruit, e.g. apples, is good. Eat it.", ["Fruit, e.g. apples, is good.", "Eat it."]),
        ("Use i.e. this one. Fine.", ["Use i.e. this one.", "Fine."]),
        ("Dr. Smith is here. Mr. Jones too.", ["Dr. Smith is here.", "Mr. Jones too."]),
        ("He moved to the U.S. Army base. Done.", ["He moved to the U.S. Army base.", "Done."]),
        ("John F. Kennedy spoke. Then left.", ["John F. Kennedy spoke.", "Then left."]),
        ("See No. 5 here. No. I refuse.", ["See No. 5 here.", "No.", "I refuse."]),
        ("It was Jan. 5 then. Ok.", ["It was Jan. 5 then.", "Ok."]),
        ("Visit https://example.com/a.b?c=1&d=2. It is good.", ["Visit example.com.", "It is good."]),
        ("Go to www.python.org now. Bye.", ["Go to python.org now.", "Bye."]),
        ("Wait... what happened? Nothing.", ["Wait... what happened?", "Nothing."]),
        ("Wait... What happened?", ["Wait...", "What happened?"]),
        ("Well… fine. Ok.", ["Well… fine.", "Ok."]),
        ("Really?! Yes!", ["Really?!", "Yes!"]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("(See above.) Next one.", ["(See above.)", "Next one."]),
        ("I counted to 10. Then stopped.", ["I counted to 10.", "Then stopped."]),
        ("In 2020. 2021 was better.", ["In 2020.", "2021 was better."]),
        ("So did I. Then we ate.", ["So did I.", "Then we ate."]),
        ("Steps:\n1. Boil water\n2. Add tea\n", ["Steps:", "Boil water.", "Add tea."]),
        ("Version 2.0.1 is out. Update.", ["Version 2.0.1 is out.", "Update."]),
        ("At 12:30 we meet. Fine.", ["At 12:30 we meet.", "Fine."]),
        ("It has 1,000 items. Wow.", ["It has 1,000 items.", "Wow."]),
        ("你好。我是小明！今天天气很好？", ["你好。", "我是小明！", "今天天气很好？"]),
        ("他说：「好的。」然后走了。", ["他说：「好的。」", "然后走了。"]),
        ("第一；第二。", ["第一；", "第二。"]),
        ("Hello!你好。", ["Hello!", "你好。"]),
        ("价格是3.5元。好。", ["价格是3.5元。", "好。"]),
        ("**Note.** This matters.", ["Note.", "This matters."]),
        ("No end punctuation", ["No end punctuation"]),
    ],
)
def test_boundaries(text: str, units: list[str]) -> None:
    assert split_for_speech(text, **TIGHT) == units


CHUNKING_TEXTS = [
    "Hello world. How are you? Dr. Smith paid $29.99, e.g. for 3.14 kg in the U.S. today... Really?! Yes.",
    "# Title\n\nSome **bold** text and a [link](https://example.com/x.y). Then `code`.\n- item one\n- item two\n",
    "Here is code:\n```python\nprint('a. B')\n```\nDone now. 👍 Great job 🎉!",
    "你好，我是你的助手。今天天气很好！我们去公园散步吧？好的，没问题；走吧。",
    "Sure, here's a long answer with commas, clauses, and more clauses, going on and on without a full stop for "
    "a very long time so that the maximum length has to cut it somewhere sensible, like here, or there, finally.",
    "1. First\n2. Second\n3. Third item is longer. It ends.",
    "Mixed 中文 and English. 这是第二句。And a third one!",
    "\x1b[1;31mWarning:\x1b[0m the disk is full. Free some space, then retry.\x00 Done.",
]


@pytest.mark.parametrize("text", CHUNKING_TEXTS)
def test_output_independent_of_chunking(text: str) -> None:
    """Every two-piece split, char-by-char and random chunkings give the one-shot result."""
    for limits in ({}, TIGHT):
        expected = split_for_speech(text, **limits)
        assert expected
        assert stream(text, [1] * len(text), **limits) == expected
        for cut in range(len(text) + 1):
            assert stream(text, [cut], **limits) == expected, cut
        rng = random.Random(7)
        for _ in range(20):
            sizes = [rng.randint(1, 9) for _ in range(len(text))]
            assert stream(text, sizes, **limits) == expected


def test_units_emitted_as_soon_as_certain() -> None:
    seg = SentenceSegmenter(**TIGHT)
    assert seg.feed("Hello there.") == []  # could still be "Hello there.com"-like or an abbreviation
    assert seg.feed(" ") == []  # the next word decides (lowercase would continue the sentence)
    assert seg.feed("H") == ["Hello there."]
    assert seg.feed("ow are you?") == []
    assert seg.feed(" ") == ["How are you?"]
    assert seg.flush() == []


def test_cjk_cuts_without_space() -> None:
    seg = SentenceSegmenter(**TIGHT)
    assert seg.feed("你好。") == []  # a closing quote could still follow
    assert seg.feed("我") == ["你好。"]


def test_first_clause_goes_early_later_units_wait_for_sentence() -> None:
    seg = SentenceSegmenter(first_min_chars=12, min_chars=20)
    assert seg.feed("Sure thing, my friend, ") == ["Sure thing, my friend,"]
    assert seg.feed("the answer is long, and it continues, ") == []
    assert seg.feed("until the end. Next") == ["the answer is long, and it continues, until the end."]
    assert seg.flush() == ["Next"]


def test_short_first_clause_is_not_cut() -> None:
    assert split_for_speech("Well, I think so. Yes.") == ["Well, I think so.", "Yes."]


def test_tiny_sentences_are_merged() -> None:
    text = "This is the opening sentence here. Yes. No. Maybe so. That is all for today, friends."
    assert split_for_speech(text, first_min_chars=12, min_chars=20) == [
        "This is the opening sentence here.",
        "Yes. No. Maybe so. That is all for today, friends.",
    ]


TUTOR = (
    "The Amazon rainforest produces a fifth of the oxygen made on land and is often called the lungs of the "
    "planet. Its trees store huge amounts of carbon, which keeps the climate stable. Protecting it matters to "
    "everyone."
)


def test_a_long_first_sentence_is_never_cut_mid_phrase() -> None:
    """The 60-character cap made a render say "…the lungs of the" — 260 ms of silence — "planet."."""
    sentences = [
        "The Amazon rainforest produces a fifth of the oxygen made on land and is often called the lungs of the "
        "planet.",
        "Its trees store huge amounts of carbon, which keeps the climate stable.",
        "Protecting it matters to everyone.",
    ]
    assert split_for_speech(TUTOR, early_first_clause=False) == sentences  # a recorded render
    assert split_for_speech(TUTOR) == sentences  # a live reply: no clause mark to start early at


@pytest.mark.parametrize("text", [TUTOR, *CHUNKING_TEXTS])
@pytest.mark.parametrize("limits", [{}, {"early_first_clause": False}, TIGHT])
def test_units_end_only_where_a_speaker_pauses(text: str, limits: dict[str, int | bool]) -> None:
    units = split_for_speech(text, **limits)
    assert all(u.endswith(tuple(".!?…。！？；，、,;:")) for u in units[:-1]), units


def test_a_long_sentence_is_cut_at_its_last_clause_mark() -> None:
    clauses = "this clause is short, " * 10
    units = split_for_speech(clauses, min_chars=20, max_chars=60, early_first_clause=False)
    assert len(units) > 3 and all(u.endswith(",") and len(u) <= 60 for u in units[:-1])
    assert " ".join(units).split() == clauses.split()


def test_a_long_sentence_without_an_earlier_clause_waits_for_the_next_one() -> None:
    words = "word " * 30
    units = split_for_speech(words + "then a comma, and the end.", max_chars=60, early_first_clause=False)
    assert units == [words + "then a comma,", "and the end."]


def test_text_without_punctuation_is_cut_at_a_space_to_bound_the_unit() -> None:
    words = "word " * 200
    units = split_for_speech("Start. " + words, min_chars=20, max_chars=60)
    assert max(len(u) for u in units) <= 200 and len(units) == 6  # 1,006 characters
    assert " ".join(units).split() == ("Start. " + words).split()


def test_cjk_without_punctuation_is_cut_at_the_bound() -> None:
    text = "天" * 200
    units = split_for_speech(text, max_chars=60)
    assert "".join(units) == text
    assert len(units) == 4 and all(len(u) * 3 <= 200 for u in units)


def test_long_stream_has_bounded_memory() -> None:
    seg = SentenceSegmenter()
    spoken: list[str] = []
    text = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 180)[:10_000]
    for i in range(0, len(text), 7):
        spoken += seg.feed(text[i : i + 7])
        assert seg.buffered < 300
    spoken += seg.flush()
    assert " ".join(spoken).split() == text.split()


def test_long_code_block_is_dropped_while_streaming() -> None:
    seg = SentenceSegmenter()
    units = seg.feed("Here you go:\n```\n")
    for _ in range(2000):
        units += seg.feed("x = compute(1, 2)  # never spoken. Really.\n")
        assert seg.buffered < 100
    units += seg.feed("```\nThat was the code.") + seg.flush()
    assert units == ["Here you go:", "That was the code."]


def test_flush_resets_for_next_reply() -> None:
    seg = SentenceSegmenter(**TIGHT)
    assert seg.feed("One. Two") == ["One."]
    assert seg.flush() == ["Two"]
    assert seg.feed("```\nopen fence") == []
    assert seg.flush() == []
    assert seg.feed("Fresh start. ") == []
    assert seg.flush() == ["Fresh start."]


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "😀🎉", "```\ncode only\n```", "---", "| --- | --- |"])
def test_nothing_speakable(text: str) -> None:
    assert split_for_speech(text) == []
    assert clean_for_speech(text) == ""


@pytest.mark.parametrize("text", ["  ... !!! ,,, ", "?", "— …", "\x1b[0m.", "「。」"])
def test_punctuation_alone_is_not_a_unit(text: str) -> None:
    assert split_for_speech(text) == []


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("## Getting started", "Getting started."),
        ("**bold** and *italic* and __strong__ and _em_ and ~~gone~~", "bold and italic and strong and em and gone"),
        ("Use `pip install x` now", "Use pip install x now"),
        ("See [the docs](https://docs.python.org/3/) please", "See the docs please"),
        ("Logo: ![alt text](logo.png) here", "Logo: here"),
        ("Open <https://github.com/a/b> now", "Open github.com now"),
        ("- one\n- two\n* three\n+ four", "one. two. three. four."),
        ("1. first\n2) second", "first. second."),
        ("> quoted words", "quoted words"),
        ("| A | B |\n|:--|--:|\n| 1 | 2 |", "A, B. 1, 2."),
        ("Great job 👍🏽! 🎉 Party time ❤️", "Great job! Party time"),
        ("Flags 🇫🇷 and keycap 1️⃣ and family 👨‍👩‍👧", "Flags and keycap 1 and family"),
        ("Arrows → and boxes ─── vanish", "Arrows and boxes vanish"),
        ("It is 25°C and 50% off, €5 or ¥30", "It is 25°C and 50% off, €5 or ¥30"),
        ("snake_case_name and 2 * 3", "snake_case_name and 2 * 3"),
        ("Line one\nLine two", "Line one. Line two"),
        ("你好，世界！\n这是**中文**测试", "你好，世界！这是中文测试"),
        ("第一行\n第二行", "第一行。第二行"),
        ("spaces   \t and\u3000gaps", "spaces and gaps"),
        ("before\n```js\nlet a = 1;\n```\nafter", "before. after"),
        ("line<br>break and <b>bold</b>", "line break and bold"),
        ("Numbers 3.14, $29.99 and 1,000 stay", "Numbers 3.14, $29.99 and 1,000 stay"),
        ("\x1b[1;31mred\x1b[0m alert\x1b(B\x1b]0;title\x07", "red alert"),
        ("nul\x00 and bell\x07 and tab\there\r", "nul and bell and tab here"),
    ],
)
def test_clean_for_speech(text: str, spoken: str) -> None:
    assert clean_for_speech(text) == spoken


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        SentenceSegmenter(min_chars=50, max_chars=10)


async def test_async_segment_stream() -> None:
    async def tokens():
        for tok in ["Hel", "lo there, my", " friend. How", " are you", " today? Fine."]:
            yield tok

    units = [u async for u in segment_stream(tokens())]
    assert units == ["Hello there,", "my friend. How are you today?", "Fine."]
