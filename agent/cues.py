"""Expressions the avatar shows on its own, read from what it is about to say.

A presenter who greets smiles, one who apologises looks concerned, a "yes" comes with a nod and a question
ends with raised brows. The LLM is not asked to annotate its text (a small model would do it badly and it
costs tokens); a few rules on each sentence's words are enough to look attentive, and they are cheap
enough to run on every sentence. Intensities stay moderate: a cue that fires on the wrong sentence must
still look natural.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.events import Expression

QUESTION_LEAD_SECONDS = 0.6
"""A question's brows go up this long before its last word ends, where a speaker's do."""


@dataclass(frozen=True)
class Cue:
    expression: Expression
    intensity: float
    at: float | None
    """`Renderer.cue`'s time: seconds from the end of the speech queued so far (0 = with the next speech fed,
    negative = before the queued speech ends), or None for the next frame."""


_GREETING = re.compile(
    r"^\W*(hi|hello|hey|welcome|good (morning|afternoon|evening)|nice to (meet|see) you)\b|^\W*(你好|您好|大家好|欢迎)",
    re.IGNORECASE,
)
_GLAD = re.compile(
    r"\b(thank you|thanks|glad|happy to|great question|enjoy|my pleasure|wonderful)\b|谢谢|高兴|很乐意|太好了|祝你",
    re.IGNORECASE,
)
_SORRY = re.compile(
    r"\b(sorry|apologi[sz]e|unfortunately|i (do not|don't) know|i'm not sure|i am not sure|afraid)\b"
    r"|抱歉|对不起|不好意思|很遗憾|不知道|不确定",
    re.IGNORECASE,
)
_YES = re.compile(
    r"^\W*(yes|yeah|yep|sure|of course|exactly|absolutely|certainly|indeed)\b|^\W*(是的|对|当然|没错)", re.IGNORECASE
)
_NO = re.compile(
    r"^\W*(no|nope|not really|not at all)\b(?!\s+(problem|worries))|^\W*(不是|不对|没有|不行|不会)", re.IGNORECASE
)
_QUESTION = re.compile(r"[?？]\W*$")


def thinking_cue() -> Cue:
    """While the LLM reads the question: a glance away, from the next frame."""
    return Cue(Expression.THINKING, 0.8, None)


def opening_cues(sentence: str, first: bool) -> list[Cue]:
    """The cues to send before a sentence's speech is fed.

    Only the reply's first sentence may smile at a greeting or nod/shake at a yes/no: later sentences that
    begin with "No" rarely answer anything.
    """
    cues: list[Cue] = []
    if _SORRY.search(sentence):
        cues.append(Cue(Expression.CONCERN, 0.6, 0.0))
    elif first and _GREETING.search(sentence):
        cues.append(Cue(Expression.SMILE, 0.8, 0.0))
    elif _GLAD.search(sentence):
        cues.append(Cue(Expression.SMILE, 0.5, 0.0))
    if first and _YES.search(sentence):
        cues.append(Cue(Expression.NOD_YES, 0.6, 0.0))
    elif first and _NO.search(sentence):
        cues.append(Cue(Expression.SHAKE_NO, 0.6, 0.0))
    return cues


def closing_cues(sentence: str) -> list[Cue]:
    """The cues to send once all of a sentence's speech has been fed: a question's raised brows."""
    return [Cue(Expression.RAISED_BROWS, 0.7, -QUESTION_LEAD_SECONDS)] if _QUESTION.search(sentence) else []
