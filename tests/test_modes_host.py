import threading
from pathlib import Path

import pytest

from agent.modes.base import Generate, Say
from agent.modes.host import HostMode, HostSettings, QuestionRejected
from agent.modes.show import Segment, load_show, parse_show, unheard_rest
from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
PERSONA = "You are Stella, the host of Night Sky Tonight."
SCRIPT = """# Test show

Producer's notes before the first segment are not read.

## Opening

Welcome to the show! Tonight we look at the Moon.

## The Moon

The Moon reflects sunlight. Its dark patches are called maria,
which is Latin for seas.

## Goodbye

Thank you for watching. Good night!
"""


def host(llm: bool = True, script: str = SCRIPT, **settings) -> HostMode:
    return HostMode(
        parse_show(script), system_prompt=PERSONA, llm=llm, settings=HostSettings(**settings), memory_tokens=300
    )


def play(mode: HostMode, steps, interrupted_at: str | None = None) -> str:
    """The session's side of the contract: every Say is heard as written, every Generate as one fixed
    sentence standing in for the LLM's words (these are contract tests of the policy, with no LLM), and
    `on_reply_done` reports what was heard, cut at `interrupted_at`."""
    heard = " ".join(s.text if isinstance(s, Say) else "Maria are plains of old lava." for s in steps)
    if interrupted_at is not None:
        heard = heard[: heard.index(interrupted_at)]
    mode.on_reply_done(heard, interrupted=interrupted_at is not None)
    return heard


def test_show_scripts_are_cut_into_segments():
    segments = parse_show(SCRIPT)
    assert [s.title for s in segments] == ["Opening", "The Moon", "Goodbye"]
    assert segments[1].text == "The Moon reflects sunlight. Its dark patches are called maria, which is Latin for seas."
    paragraphs = parse_show("First paragraph,\nwrapped.\n\nSecond **bold** one.\n\n```\ncode\n```\n")
    assert [(s.title, s.text) for s in paragraphs] == [
        ("Segment 1", "First paragraph, wrapped."),
        ("Segment 2", "Second bold one."),
    ]
    assert [s.title for s in load_show(ROOT / "configs" / "shows" / "night-sky.md")][:2] == ["Welcome", "The Moon"]


def test_unusable_show_scripts(tmp_path: Path):
    with pytest.raises(UserError, match="show script not found"):
        load_show(tmp_path / "missing.md")
    empty = tmp_path / "empty.md"
    empty.write_text("# Title only\n\n## Segment\n\n🙂\n", encoding="utf-8")
    with pytest.raises(UserError, match="has nothing to say"):
        load_show(empty)


def test_three_segments_with_idle_between_and_a_question_answered_between_segments():
    mode = host(loop=False)
    assert mode.greeting() == []
    assert mode.on_idle(0.0) == [] and mode.on_idle(1.4) == []  # the gap is 1.5 s

    first = mode.on_idle(1.5)
    assert first == [Say("Welcome to the show! Tonight we look at the Moon.")]
    assert mode.progress()["status"] == "reading" and mode.progress()["segment"] == 1
    mode.ask("What are the dark patches on the Moon?", "Ada")
    assert mode.on_idle(5.0) == []  # the session only asks when idle; a reply in flight is not interrupted
    play(mode, first)

    assert mode.on_idle(1.0) == []
    answer = mode.on_idle(1.5)
    assert [type(s) for s in answer] == [Say, Generate]
    assert answer[0].text == "Ada asks: What are the dark patches on the Moon?"
    messages = answer[1].messages
    assert "maria" in messages[0]["content"]  # the show's own material answers viewers
    assert "Do not announce or start the next segment" in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "Ada asks: What are the dark patches on the Moon?"}
    assert {"role": "assistant", "content": "Welcome to the show! Tonight we look at the Moon."} in messages
    assert mode.progress()["status"] == "answering" and mode.progress()["queued"] == 0
    play(mode, answer)

    second = mode.on_idle(2.0)
    assert second[0].text.startswith("The Moon reflects sunlight.")
    play(mode, second)
    third = mode.on_idle(2.0)
    assert third == [Say("Thank you for watching. Good night!")]
    play(mode, third)
    assert mode.on_idle(60.0) == []
    assert mode.progress() == {
        "mode": "host",
        "segment": 3,
        "segments": 3,
        "title": "Goodbye",
        "loops": 0,
        "status": "done",
        "queued": 0,
    }


def test_a_busy_chat_cannot_stall_the_show():
    mode = host(loop=False, queue_size=50)
    for i in range(40):
        mode.ask(f"Question {i}?", "viewer")
    said = []
    for _ in range(7):
        steps = mode.on_idle(2.0)
        said.append("segment" if len(steps) == 1 else "question")
        play(mode, steps)
    assert said == ["question", "segment", "question", "segment", "question", "segment", "question"]
    answered = 0
    while steps := mode.on_idle(2.0):  # after the last segment the remaining questions come one by one
        assert isinstance(steps[-1], Generate)
        play(mode, steps)
        answered += 1
    assert answered == 40 - 4
    assert len(mode.questions) == 0 and mode.progress()["status"] == "done"


def test_the_script_loops_when_configured():
    mode = host(loop=True)
    titles = []
    for _ in range(7):
        steps = mode.on_idle(2.0)
        titles.append(mode.progress()["title"])
        play(mode, steps)
    assert titles == ["Opening", "The Moon", "Goodbye", "Opening", "The Moon", "Goodbye", "Opening"]
    assert mode.progress()["loops"] == 2 and not mode.finished


def test_an_interrupted_segment_resumes_at_its_first_unheard_sentence():
    mode = host(loop=False)
    play(mode, mode.on_idle(2.0))
    steps = mode.on_idle(2.0)
    play(mode, steps, interrupted_at="Its dark")  # the first sentence was heard in full
    assert mode.memory.turns[-1].text.endswith("[interrupted]")
    assert mode.on_idle(2.0) == [Say("Its dark patches are called maria, which is Latin for seas.")]
    assert unheard_rest(Segment("t", "One. Two."), "One two") is None


def test_without_an_llm_questions_are_acknowledged_or_refused():
    mode = host(llm=False)
    assert not mode.wants_llm
    mode.ask("Is Pluto a planet?", "Bo")
    assert mode.on_idle(2.0) == [
        Say("Thanks for your question, Bo! I can't answer live right now, but it has been noted.")
    ]
    skipping = host(llm=False, unanswered="skip")
    with pytest.raises(QuestionRejected, match="does not take questions") as info:
        skipping.ask("Is Pluto a planet?", "Bo")
    assert info.value.reason == "closed"


def test_questions_are_checked_at_the_door():
    mode = host(queue_size=2, max_question_chars=50)
    with pytest.raises(QuestionRejected, match="empty"):
        mode.ask("   ")
    with pytest.raises(QuestionRejected, match=r"too long \(51 characters; the limit is 50\)"):
        mode.ask("x" * 51)
    mode.ask("one?")
    mode.ask("two?")
    with pytest.raises(QuestionRejected, match=r"too many questions waiting \(2\)") as info:
        mode.ask("three?")
    assert info.value.reason == "full" and isinstance(info.value, UserError)
    assert mode.on_user("four?", "en") == [
        Say("Sorry, many questions are waiting already. Please ask again in a moment.")
    ]
    answer = mode.on_idle(2.0)
    assert answer[0].text == "A viewer asks: one?"


def test_a_chinese_question_gets_a_chinese_answer():
    mode = host()
    mode.ask("月亮上的暗斑是什么？", "小明")
    steps = mode.on_idle(2.0)
    assert steps[0] == Say("小明问：月亮上的暗斑是什么？")
    assert steps[1].messages[0]["content"].endswith("reply in Chinese (Simplified characters).")


def test_the_queue_is_safe_across_threads():
    mode = host(queue_size=100)
    accepted, rejected = [], []

    def viewer(n: int) -> None:
        for i in range(50):
            try:
                mode.ask(f"question {n}-{i}?", f"v{n}")
                accepted.append(1)
            except QuestionRejected:
                rejected.append(1)

    threads = [threading.Thread(target=viewer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    drained = 0
    while any(t.is_alive() for t in threads) or len(mode.questions):
        drained += mode.questions.get() is not None
        assert len(mode.questions) <= 100
    for t in threads:
        t.join()
    assert len(accepted) + len(rejected) == 400
    assert drained == len(accepted)


def test_hours_of_show_keep_memory_and_queue_bounded():
    """Thousands of segment/question cycles with a loop: every buffer stays within its bound."""
    script = "\n\n".join(
        f"## Part {i}\n\nThis is segment {i}. " + "It has quite a few words in it. " * 12 for i in range(6)
    )
    mode = host(script=script, loop=True, queue_size=10)
    sizes = []
    rejected = 0
    for cycle in range(5000):
        for _ in range(cycle % 4):
            try:
                mode.ask(f"Question number {cycle}, what is segment {cycle % 6} about?", f"viewer{cycle}")
            except QuestionRejected:
                rejected += 1
        steps = mode.on_idle(1.5)
        assert steps
        play(mode, steps, interrupted_at="quite" if cycle % 7 == 0 and len(steps) == 1 else None)
        sizes.append((len(mode.memory.turns), len(mode.memory.summary()), len(mode.questions)))
        assert mode.memory.tokens() <= 300
        assert len(mode.questions) <= 10
    assert mode.progress()["loops"] > 100 and rejected > 1000  # the queue overflowed all along
    late = sizes[-1000:]
    assert max(s[0] for s in late) <= max(s[0] for s in sizes[:1000]) + 2
    assert max(s[1] for s in late) <= 300 * 4  # the summary's token share, in characters
