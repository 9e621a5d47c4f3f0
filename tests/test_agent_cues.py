"""The avatar's own expressions: which sentences cue what (a live reply showing them is in test_session)."""

from __future__ import annotations

import pytest

from agent.cues import QUESTION_LEAD_SECONDS, closing_cues, opening_cues
from core.events import Expression


def kinds(cues: list) -> list[Expression]:
    return [c.expression for c in cues]


@pytest.mark.parametrize(
    ("sentence", "first", "expected"),
    [
        ("Hello, I'm Nova from Cirrus Labs!", True, [Expression.SMILE]),
        ("Hello again, as I said.", False, []),
        ("你好，我是你的虚拟主持人。", True, [Expression.SMILE]),
        ("Sorry, I don't know the price of that.", True, [Expression.CONCERN]),
        ("抱歉，我不知道。", False, [Expression.CONCERN]),
        ("Yes, Nimbus measures the wind.", True, [Expression.NOD_YES]),
        ("Yes, and it also rains.", False, []),
        ("No, it has no camera.", True, [Expression.SHAKE_NO]),
        ("No problem, here it is.", True, []),
        ("Thanks for asking about the sensors.", False, [Expression.SMILE]),
        ("The station reports every minute.", True, []),
    ],
)
def test_opening_cues_follow_the_words(sentence: str, first: bool, expected: list[Expression]) -> None:
    assert kinds(opening_cues(sentence, first)) == expected


def test_a_question_raises_the_brows_before_it_ends() -> None:
    (cue,) = closing_cues("Would you like to hear about the price?")
    assert cue.expression == Expression.RAISED_BROWS and cue.at == -QUESTION_LEAD_SECONDS
    assert closing_cues("你想了解价格吗？")
    assert closing_cues("It costs 149 euros.") == []
