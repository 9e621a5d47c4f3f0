import pytest

from agent.memory import INTERRUPTED, SUMMARY_HEADER, Memory
from agent.tokens import estimate_tokens, messages_tokens, truncate_to_tokens
from speech.text import is_cjk


def test_token_estimate_counts_chinese_per_character_and_latin_per_four():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("你好世界") == 4
    assert estimate_tokens("你好 abcd") == 2 + 2  # the space is a Latin character


def test_token_estimate_counts_what_the_speech_module_calls_cjk():
    text = "".join(chr(c) for c in range(0x3000, 0xD800, 7)) + "𠀀𪛔 ab"
    cjk = sum(1 for ch in text if is_cjk(ch))
    assert estimate_tokens(text) == cjk + -(-(len(text) - cjk) // 4)


@pytest.mark.parametrize("budget", [1, 5, 17, 60])
def test_truncation_stays_within_budget(budget: int):
    for text in ("word " * 200, "水循环" * 100, "mixed 中文 text " * 50):
        cut = truncate_to_tokens(text, budget)
        assert estimate_tokens(cut) <= budget
        assert cut.endswith("…")
    assert truncate_to_tokens("short", 10) == "short"


def test_recent_turns_are_kept_verbatim_and_roles_alternate():
    memory = Memory(500)
    memory.add_assistant("Hi, I'm Nova!")
    memory.add_user("What does it cost?")
    memory.add_assistant("Nimbus Core costs 189 euros.")
    memory.add_assistant("Anything else?")
    assert memory.messages() == [
        {"role": "assistant", "content": "Hi, I'm Nova!"},
        {"role": "user", "content": "What does it cost?"},
        {"role": "assistant", "content": "Nimbus Core costs 189 euros.\nAnything else?"},
    ]
    assert memory.summary() == ""


def test_interrupted_replies_keep_only_what_was_heard():
    memory = Memory(500)
    memory.add_user("Tell me about the sensors.")
    memory.add_assistant("The outdoor unit measures", interrupted=True)
    memory.add_user("Stop, what about rain?")
    memory.add_assistant("", interrupted=True)
    texts = [t.text for t in memory.turns]
    assert texts[1] == f"The outdoor unit measures {INTERRUPTED}"
    assert texts[3] == INTERRUPTED
    memory.add_assistant("", interrupted=False)  # nothing heard, nothing said: nothing stored
    assert len(memory.turns) == 4


def test_oldest_turns_become_summary_lines_and_the_budget_holds():
    memory = Memory(200)
    for i in range(60):
        memory.add_user(f"Question number {i} about the weather station. Some more words follow here.")
        memory.add_assistant(f"Answer number {i}. It has a second sentence that is not summarised.")
        assert memory.tokens() <= 200
    summary = memory.summary()
    assert summary.startswith(SUMMARY_HEADER)
    assert "- user: Question number" in summary and "- you: Answer number" in summary
    assert "second sentence" not in summary  # only the first sentence is extracted
    assert "Question number 0 " not in summary  # the summary itself drops its oldest lines
    assert memory.turns[-1].text.startswith("Answer number 59")
    assert len(memory.turns) < 10


def test_chinese_turns_are_budgeted_per_character():
    memory = Memory(120)
    for i in range(30):
        memory.add_user(f"第{i}个问题：水是怎么变成云的？还有别的问题。")
        memory.add_assistant("水蒸气遇冷凝结成小水滴，许多小水滴聚在一起就成了云。")
        assert memory.tokens() <= 120
    assert "- user: 第" in memory.summary()
    assert "还有别的问题" not in memory.summary()


def test_one_huge_turn_cannot_push_everything_else_out():
    memory = Memory(400)
    memory.add_user("Short question?")
    memory.add_assistant("word " * 5000, interrupted=True)
    assert memory.tokens() <= 400
    assert memory.turns[0].text == "Short question?"
    assert memory.turns[-1].text.endswith(INTERRUPTED)
    assert messages_tokens(memory.messages()) <= 400


def test_budget_is_checked():
    with pytest.raises(ValueError, match="at least"):
        Memory(10)
