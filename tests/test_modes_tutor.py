from pathlib import Path

import pytest

from agent.modes.base import Generate, Say
from agent.modes.lesson import Criteria, Lesson, load_lesson, looks_like_question, mentions
from agent.modes.tutor import TutorMode
from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "configs" / "lessons"
PERSONA = "You are Professor Drop, a patient science tutor."


@pytest.fixture(scope="module")
def lesson() -> Lesson:
    return load_lesson(LESSONS / "water-cycle.yaml")


def tutor(lesson: Lesson, llm: bool = True) -> TutorMode:
    return TutorMode(lesson, system_prompt=PERSONA, llm=llm)


def say(steps) -> str:
    assert len(steps) == 1 and isinstance(steps[0], Say), steps
    return steps[0].text


def test_the_shipped_lessons_have_three_steps(lesson: Lesson):
    assert len(lesson.steps) == 3
    assert len(load_lesson(LESSONS / "water-cycle-zh.yaml").steps) == 3


def test_right_answers_advance_through_all_three_steps(lesson: Lesson):
    mode = tutor(lesson)
    greeting = say(mode.greeting())
    assert greeting.startswith("Hello! Today we will follow a drop of water")
    assert greeting.endswith(lesson.steps[0].question)
    assert mode.progress() == {
        "mode": "tutor",
        "title": "The water cycle",
        "step": 1,
        "steps": 3,
        "status": "asking",
        "attempts": 0,
    }
    mode.on_reply_done(greeting, interrupted=False)

    second = say(mode.on_user("I think it's called evaporation", "en"))
    assert second.startswith("Right!") and lesson.steps[1].explain in second
    assert second.endswith(lesson.steps[1].question)
    assert mode.progress()["step"] == 2

    third = say(mode.on_user("Clouds form, that is condensation.", "en"))
    assert third.startswith("Exactly!") and third.endswith(lesson.steps[2].question)
    assert mode.progress()["step"] == 3

    closing = say(mode.on_user("precipitation", "en"))
    assert closing.startswith("Well done!") and closing.endswith("you learned the water cycle!")
    assert mode.progress() == {**mode.progress(), "step": 3, "status": "done", "attempts": 0}


def test_a_wrong_answer_is_re_explained_by_the_llm_and_the_question_asked_again(lesson: Lesson):
    mode = tutor(lesson)
    mode.on_reply_done(say(mode.greeting()), interrupted=False)
    steps = mode.on_user("It is called melting", "en")
    assert [type(s) for s in steps] == [Say, Generate, Say]
    assert steps[0].text == "Not quite."
    assert steps[2].text == lesson.steps[0].question
    messages = steps[1].messages
    system = messages[0]["content"]
    assert messages[0]["role"] == "system" and system.startswith(PERSONA)
    assert "was not right" in system and lesson.steps[0].explain in system and lesson.steps[0].hint in system
    assert "evaporation" not in messages[-1]["content"]
    assert messages[-1] == {"role": "user", "content": "It is called melting"}
    assert {"role": "assistant", "content": say(mode.greeting())} in messages  # the lesson so far is in memory
    assert mode.progress()["step"] == 1 and mode.progress()["attempts"] == 1


def test_without_an_llm_a_wrong_answer_gets_the_hint_and_the_question(lesson: Lesson):
    mode = tutor(lesson, llm=False)
    assert not mode.wants_llm
    text = say(mode.on_user("melting", "en"))
    assert text == f"Not quite. {lesson.steps[0].hint} {lesson.steps[0].question}"


def test_after_the_last_attempt_the_answer_is_revealed_and_the_lesson_moves_on(lesson: Lesson):
    mode = tutor(lesson, llm=False)
    mode.on_user("melting", "en")
    mode.on_user("freezing", "en")
    text = say(mode.on_user("boiling", "en"))
    assert text.startswith("Not quite. Let's look at the answer together. It is called evaporation. Let's move on.")
    assert text.endswith(lesson.steps[1].question)
    assert mode.progress()["step"] == 2 and mode.progress()["attempts"] == 0


def test_a_question_from_the_learner_is_answered_then_the_question_asked_again(lesson: Lesson):
    mode = tutor(lesson)
    steps = mode.on_user("What is water vapour?", "en")
    assert [type(s) for s in steps] == [Generate, Say]
    assert "asked a question" in steps[0].messages[0]["content"]
    assert steps[1].text == f"Back to our question: {lesson.steps[0].question}"
    assert mode.progress()["attempts"] == 0  # a question is not a wrong answer
    offline = tutor(lesson, llm=False).on_user("Why does the water rise?", "en")
    assert [type(s) for s in offline] == [Say, Say] and lesson.steps[0].explain in offline[0].text


def test_a_question_naming_the_answer_is_not_taken_as_the_answer(lesson: Lesson):
    mode = tutor(lesson)
    mode.on_user("What is evaporation?", "en")
    assert mode.progress()["step"] == 1
    say(mode.on_user("Is it evaporation?", "en"))  # a tentative answer with a question mark is an answer
    assert mode.progress()["step"] == 2


def test_all_criteria_need_every_item(lesson: Lesson):
    mode = tutor(lesson, llm=False)
    mode.on_user("evaporation", "en")
    assert say(mode.on_user("clouds", "en")).startswith("Not quite.")
    assert say(mode.on_user("condensation makes the clouds", "en")).startswith("Exactly!")


def test_after_the_lesson_the_tutor_still_talks(lesson: Lesson):
    mode = tutor(lesson)
    for answer in ("evaporation", "clouds by condensation", "precipitation"):
        mode.on_user(answer, "en")
    steps = mode.on_user("Why is the sea salty?", "en")
    assert len(steps) == 1 and isinstance(steps[0], Generate)
    assert "is finished" in steps[0].messages[0]["content"]
    assert say(tutor(lesson, llm=False).on_user("x", "en")) != ""


@pytest.mark.parametrize(
    ("answer", "keyword", "expected"),
    [
        ("EVAPORATION!", "evaporation", True),
        ("the water evaporates", "evaporate", True),
        ("it's not evaporation", "evaporation", False),
        ("No, it isn't evaporation", "evaporation", False),
        ("No. Evaporation", "evaporation", True),
        ("not the sun but the clouds", "sun", False),
        ("a water cycle", "water cycle", True),
        ("the cycle of water", "water cycle", False),
        ("la précipitation", "precipitation", True),
        ("是蒸发", "蒸发", True),
        ("不是蒸发", "蒸发", False),
        ("蒸發", "蒸发", True),
        ("这是凝结", "凝结", True),
    ],
)
def test_keyword_matching(answer: str, keyword: str, expected: bool):
    assert mentions(answer, keyword) is expected


def test_question_detection():
    assert looks_like_question("What is water vapour?")
    assert looks_like_question("why does it rise")
    assert looks_like_question("I don't understand")
    assert looks_like_question("为什么水会蒸发？")
    assert not looks_like_question("Is it evaporation?")
    assert not looks_like_question("是蒸发吗？")
    assert not looks_like_question("whatever, evaporation")


def test_a_chinese_lesson_uses_chinese_phrases():
    lesson = load_lesson(LESSONS / "water-cycle-zh.yaml")
    mode = tutor(lesson, llm=False)
    assert say(mode.greeting()).startswith("你好！")
    assert say(mode.on_user("是融化", "zh")).startswith("还不太对。")
    assert say(mode.on_user("我觉得是蒸發", "zh")).startswith("答对了！")  # Traditional characters too
    assert mode.progress()["step"] == 2
    steps = tutor(lesson).on_user("为什么水会变成水蒸气？", "zh")
    assert steps[0].messages[0]["content"].endswith("reply in Chinese (Simplified characters).")


def test_criteria_shorthands():
    assert Criteria.model_validate(["a", "b"]) == Criteria(any=("a", "b"))
    assert Criteria.model_validate("a") == Criteria(any=("a",))
    assert Criteria.model_validate({"all": ["a", ["b", "c"]]}).all == (("a",), ("b", "c"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("title: [unclosed", "not valid YAML"),
        ("- a list", "must be a mapping"),
        ("title: T\nsteps: []\n", "steps: .*at least 1 item"),
        ("title: T\nsteps:\n  - explain: E\n    question: Q\n", "steps.0.answer: Field required"),
        ("title: T\nsteps:\n  - {explain: E, question: Q, answer: []}\n", "at least one keyword"),
        ("title: T\nsteps:\n  - {explain: E, question: Q, answer: [a], typo: 1}\n", "steps.0.typo"),
        ("title: T\nlanguage: fr\nsteps:\n  - {explain: E, question: Q, answer: [a]}\n", "language"),
    ],
)
def test_bad_lesson_files_give_one_line(tmp_path: Path, content: str, message: str):
    path = tmp_path / "lesson.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message) as info:
        load_lesson(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_lesson_file(tmp_path: Path):
    with pytest.raises(UserError, match="lesson file not found"):
        load_lesson(tmp_path / "nope.yaml")
