"""Fixed phrases the modes say without an LLM, in English and Chinese.

Praise, hand-overs and apologies are said often and must be instant and correct in both languages;
an LLM would add latency and, at 0.5B parameters, occasional nonsense. Variants rotate by a counter
so a learner does not hear "Right!" five times in a row, deterministically so tests can check them.
"""

from __future__ import annotations

PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "praise": {
        "en": ("Right!", "Exactly!", "Well done!", "Correct, nice work!"),
        "zh": ("答对了！", "完全正确！", "很好！", "没错，真棒！"),
    },
    "closing": {
        "en": ("That was the last step: you finished the lesson. Well done!",),
        "zh": ("这是最后一步，你完成了这节课。真棒！",),
    },
    "not_quite": {"en": ("Not quite.",), "zh": ("还不太对。",)},
    "back_to_question": {"en": ("Back to our question:",), "zh": ("回到我们的问题：",)},
    "reveal": {"en": ("Let's look at the answer together.",), "zh": ("我们一起来看看答案。",)},
    "moving_on": {"en": ("Let's move on.",), "zh": ("我们继续下一步。",)},
    "explain_again": {"en": ("Good question! Let me explain it once more.",), "zh": ("好问题！我再讲一遍。",)},
    "lesson_over": {
        "en": ("We have finished the lesson. Start a new session to go through it again.",),
        "zh": ("这节课已经结束了。开始新的会话可以再学一遍。",),
    },
    "dont_know": {
        "en": ("I'm sorry, I don't know about that. I can tell you about {topics}.",),
        "zh": ("抱歉，这个我不清楚。我可以给你介绍{topics}。",),
    },
    "no_knowledge": {
        "en": ("I'm sorry, I can't answer questions right now.",),
        "zh": ("抱歉，我现在不能回答问题。",),
    },
    "a_viewer": {"en": ("A viewer",), "zh": ("有位观众",)},
    "viewer_asks": {"en": ("{author} asks: {question}",), "zh": ("{author}问：{question}",)},
    "viewer_thanks": {
        "en": ("Thanks for your question, {author}! I can't answer live right now, but it has been noted.",),
        "zh": ("谢谢{author}的提问！我现在没法现场回答，不过已经记下了。",),
    },
    "queue_full": {
        "en": ("Sorry, many questions are waiting already. Please ask again in a moment.",),
        "zh": ("抱歉，排队的问题太多了，请稍后再问。",),
    },
    "lesson_intro": {"en": ("Welcome! Today's lesson: {title}.",), "zh": ("欢迎！今天我们学习：{title}。",)},
    "answer_is": {"en": ("A right answer mentions {keywords}.",), "zh": ("正确的答案要提到{keywords}。",)},
}


def phrase_language(language: str) -> str:
    return "zh" if language == "zh" else "en"


def phrase(key: str, language: str, variant: int = 0, **fields: str) -> str:
    options = PHRASES[key][phrase_language(language)]
    return options[variant % len(options)].format(**fields)


def spoken_list(items: list[str], language: str) -> str:
    """ "a, b and c" / "a、b和c": how a list sounds when said aloud."""
    if len(items) <= 1:
        return "".join(items)
    if phrase_language(language) == "zh":
        return "、".join(items[:-1]) + "和" + items[-1]
    return ", ".join(items[:-1]) + " and " + items[-1]
