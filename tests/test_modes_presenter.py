from pathlib import Path

import pytest

from agent.knowledge import KnowledgeBase, Section
from agent.memory import INTERRUPTED
from agent.modes.base import Generate, Say
from agent.modes.presenter import PresenterMode
from agent.modes.prompt import MAX_USER_TOKENS, reply_language
from agent.tokens import estimate_tokens, messages_tokens

ROOT = Path(__file__).resolve().parent.parent
NIMBUS = sorted((ROOT / "configs" / "knowledge" / "nimbus").glob("*.md"))
PERSONA = "You are Nova, the virtual presenter of Cirrus Labs."


@pytest.fixture(scope="module")
def nimbus() -> KnowledgeBase:
    return KnowledgeBase.from_files(NIMBUS)


def presenter(nimbus: KnowledgeBase, llm: bool = True, **kw) -> PresenterMode:
    return PresenterMode(nimbus, system_prompt=PERSONA, llm=llm, **kw)


def only_generate(steps) -> list[dict[str, str]]:
    assert len(steps) == 1 and isinstance(steps[0], Generate)
    return steps[0].messages


def test_reply_language_follows_the_user():
    assert reply_language("How much is it?", None) == "en"
    assert reply_language("多少钱？", None) == "zh"
    assert reply_language("什么是 Nimbus Pro?", "en") == "zh"
    assert reply_language("What does 你好 mean?", "zh") == "en"
    assert reply_language("Combien ça coûte ?", "fr") == "fr"


def test_a_question_gets_its_sections_and_the_stay_within_instruction(nimbus: KnowledgeBase):
    mode = presenter(nimbus)
    messages = only_generate(mode.on_user("How much does the Pro edition cost?", "en"))
    system = messages[0]
    assert system["role"] == "system" and system["content"].startswith(PERSONA)
    assert "299 euros" in system["content"]
    assert "IP65" not in system["content"]  # the waterproofing FAQ is not relevant
    assert "say that you don't know" in system["content"]
    assert "reply in English" in system["content"]
    assert messages[-1] == {"role": "user", "content": "How much does the Pro edition cost?"}
    assert mode.last_retrieval is not None and mode.last_retrieval.sections[0].title.endswith("Nimbus Pro")


def test_chinese_question_gets_chinese_knowledge_and_a_chinese_reply(nimbus: KnowledgeBase):
    messages = only_generate(presenter(nimbus).on_user("Nimbus 专业版多少钱？", None))
    assert "299 欧元" in messages[0]["content"]
    assert messages[0]["content"].endswith("reply in Chinese (Simplified characters).")


def test_no_matching_section_still_generates_with_the_dont_know_instruction(nimbus: KnowledgeBase):
    messages = only_generate(presenter(nimbus).on_user("Who won the football world cup?", "en"))
    system = messages[0]["content"]
    assert "Nothing in your knowledge matches" in system
    assert "Editions and prices" in system  # offers what it can talk about
    assert "euros" not in system


def test_a_follow_up_is_retrieved_with_the_previous_question(nimbus: KnowledgeBase):
    mode = presenter(nimbus)
    mode.on_user("Tell me about the ultrasonic wind sensor", "en")
    mode.on_reply_done("It measures wind with sound pulses.", interrupted=False)
    messages = only_generate(mode.on_user("And does it freeze?", "en"))
    assert "does not freeze in icy weather" in messages[0]["content"]


def test_the_prompt_stays_within_its_budgets_over_a_long_conversation(nimbus: KnowledgeBase):
    mode = presenter(nimbus, memory_tokens=300, knowledge_tokens=400)
    questions = ["How much does the Pro edition cost?", "Is it waterproof?", "电池能用多久？", "word " * 2000]
    for i in range(40):
        messages = only_generate(mode.on_user(questions[i % len(questions)], None))
        knowledge = mode.last_retrieval
        assert knowledge is not None and knowledge.tokens <= 400
        history = messages_tokens(messages[1:-1])
        assert history <= 300 + 8  # the memory's own accounting plus one message's role overhead
        assert estimate_tokens(messages[-1]["content"]) <= MAX_USER_TOKENS + estimate_tokens(mode.memory.summary())
        assert messages_tokens(messages) <= estimate_tokens(PERSONA) + 200 + 400 + 300 + MAX_USER_TOKENS + 100
        mode.on_reply_done("An answer of a few words. " * 8, interrupted=i % 3 == 0)
    assert mode.memory.summary()


def test_what_was_heard_of_an_interrupted_reply_is_in_the_next_prompt(nimbus: KnowledgeBase):
    mode = presenter(nimbus)
    mode.on_user("Is it waterproof?", "en")
    mode.on_reply_done("Yes, the outdoor unit is rated", interrupted=True)
    messages = only_generate(mode.on_user("Rated what?", "en"))
    assert {"role": "assistant", "content": f"Yes, the outdoor unit is rated {INTERRUPTED}"} in messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]


def test_knowledge_that_fits_goes_in_whole():
    small = KnowledgeBase([Section("a.md", "Lamp", "The lamp costs 10 euros."), Section("a.md", "Size", "Small.")])
    mode = PresenterMode(small, system_prompt=PERSONA, llm=True, knowledge_tokens=500)
    system = only_generate(mode.on_user("Hello there", "en"))[0]["content"]
    assert "Everything you know" in system and "10 euros" in system and "Small." in system


def test_without_an_llm_the_best_section_is_read(nimbus: KnowledgeBase):
    mode = presenter(nimbus, llm=False)
    assert not mode.wants_llm
    steps = mode.on_user("Is it waterproof?", "en")
    assert len(steps) == 1 and isinstance(steps[0], Say)
    assert steps[0].text.startswith("The outdoor unit is rated IP65")
    unknown = mode.on_user("Who won the football world cup?", "en")[0]
    assert isinstance(unknown, Say) and unknown.text.startswith("I'm sorry, I don't know")
    chinese = mode.on_user("足球世界杯谁赢了？", "zh")[0]
    assert isinstance(chinese, Say) and chinese.text.startswith("抱歉")


def test_greeting_and_no_progress(nimbus: KnowledgeBase):
    mode = presenter(nimbus, greeting="Hi, I'm Nova!")
    assert mode.greeting() == [Say("Hi, I'm Nova!")]
    assert presenter(nimbus).greeting() == []
    assert mode.progress() is None
    assert mode.on_idle(100.0) == []
