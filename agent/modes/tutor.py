"""The virtual tutor: a lesson plan as a state machine — explain, ask, check, re-explain or move on.

Everything the lesson's author wrote (explanations, questions) is said verbatim, and answers are
judged by the lesson's keywords, so the lesson goes the same way with or without an LLM; the LLM
only adds what cannot be written in advance: a simpler re-explanation aimed at the learner's
actual mistake, and answers to the learner's own questions. Fixed feedback ("Not quite.") is said
before the LLM's part so the learner hears a reaction at once.
"""

from __future__ import annotations

from agent.memory import Memory
from agent.modes.base import Generate, Mode, Say, Step
from agent.modes.lesson import Lesson, LessonStep, looks_like_question
from agent.modes.phrases import phrase, spoken_list
from agent.modes.prompt import chat_messages, join_spoken, reply_language, system_prompt
from agent.tokens import truncate_to_tokens

REEXPLAIN = (
    'You are teaching step {step} of {steps} of the lesson "{title}". The learner\'s answer to the '
    "question below was not right. Explain the idea again, more simply than before, in at most three short "
    "sentences, using the material below and building on what the learner said. Do not give the answer "
    "away and do not repeat the question: it is asked again right after you."
)
ANSWER_QUESTION = (
    'You are teaching step {step} of {steps} of the lesson "{title}". Instead of answering, the learner '
    "asked a question. Answer it simply, in at most three short sentences, using the material below; if it "
    "has nothing to do with the lesson, say so kindly. Do not ask the lesson's question: it follows right "
    "after you."
)
AFTER_LESSON = (
    'You taught the lesson "{title}" and it is finished. Answer the learner briefly and simply, using the '
    "lesson material below when it helps."
)


class TutorMode(Mode):
    name = "tutor"

    def __init__(
        self,
        lesson: Lesson,
        *,
        system_prompt: str,
        llm: bool,
        memory_tokens: int = 500,
        material_tokens: int = 600,
        greeting: str | None = None,
    ) -> None:
        self.lesson = lesson
        self.memory = Memory(memory_tokens)
        self._persona = system_prompt
        self._llm = llm
        self._material_tokens = material_tokens
        self._greeting = greeting
        self._index = 0
        self._attempts = 0
        self._praised = 0

    @property
    def wants_llm(self) -> bool:
        return self._llm

    @property
    def done(self) -> bool:
        return self._index >= len(self.lesson.steps)

    @property
    def _step(self) -> LessonStep:
        return self.lesson.steps[self._index]

    def greeting(self) -> list[Step]:
        lang = self.lesson.language
        intro = self.lesson.intro or phrase("lesson_intro", lang, title=self.lesson.title)
        first = self.lesson.steps[0]
        return [Say(join_spoken([self._greeting or "", intro, first.explain, first.question]))]

    def on_user(self, text: str, language: str | None) -> list[Step]:
        if self.done:
            steps = self._after_lesson(text, language)
        elif looks_like_question(text):
            steps = self._answer_question(text, language)
        elif self._step.answer.matches(text):
            steps = [Say(self._advance(praise=True))]
        else:
            steps = self._wrong(text, language)
        self.memory.add_user(text)
        return steps

    def on_reply_done(self, heard: str, interrupted: bool) -> None:
        self.memory.add_assistant(heard, interrupted)

    def on_idle(self, idle_seconds: float) -> list[Step]:
        return []

    def progress(self) -> dict:
        n = len(self.lesson.steps)
        return {
            "mode": self.name,
            "title": self.lesson.title,
            "step": min(self._index + 1, n),
            "steps": n,
            "status": "done" if self.done else "asking",
            "attempts": self._attempts,
        }

    def _advance(self, praise: bool) -> str:
        """Move to the next step and say so: the praise (or the revealed answer), then the next explanation
        and question, or the closing line."""
        lang = self.lesson.language
        parts: list[str] = []
        if praise:
            parts.append(phrase("praise", lang, self._praised))
            self._praised += 1
        else:
            step = self._step
            reveal = step.solution or phrase("answer_is", lang, keywords=spoken_list(step.answer.expected(), lang))
            parts += [phrase("not_quite", lang), phrase("reveal", lang), reveal, phrase("moving_on", lang)]
        self._index += 1
        self._attempts = 0
        if self.done:
            parts.append(self.lesson.closing or phrase("closing", lang))
        else:
            parts += [self._step.explain, self._step.question]
        return join_spoken(parts)

    def _wrong(self, text: str, language: str | None) -> list[Step]:
        self._attempts += 1
        if self._attempts >= self.lesson.max_attempts:
            return [Say(self._advance(praise=False))]
        lang, step = self.lesson.language, self._step
        if not self._llm:
            return [Say(join_spoken([phrase("not_quite", lang), step.hint or step.explain, step.question]))]
        instructions = REEXPLAIN.format(**self._where())
        return [
            Say(phrase("not_quite", lang)),
            self._generate(instructions, self._step_material(), text, language),
            Say(step.question),
        ]

    def _answer_question(self, text: str, language: str | None) -> list[Step]:
        lang, step = self.lesson.language, self._step
        back = join_spoken([phrase("back_to_question", lang), step.question])
        if not self._llm:
            return [Say(join_spoken([phrase("explain_again", lang), step.explain])), Say(back)]
        instructions = ANSWER_QUESTION.format(**self._where())
        return [self._generate(instructions, self._step_material(), text, language), Say(back)]

    def _after_lesson(self, text: str, language: str | None) -> list[Step]:
        if not self._llm:
            return [Say(phrase("lesson_over", self.lesson.language))]
        material = "\n\n".join(s.explain for s in self.lesson.steps)
        context = "Lesson material:\n" + truncate_to_tokens(material, self._material_tokens)
        return [self._generate(AFTER_LESSON.format(title=self.lesson.title), context, text, language)]

    def _where(self) -> dict[str, object]:
        return {"step": self._index + 1, "steps": len(self.lesson.steps), "title": self.lesson.title}

    def _step_material(self) -> str:
        step = self._step
        lines = [f"What this step teaches: {step.explain}", f"The question: {step.question}"]
        if step.hint:
            lines.append(f"A hint you may use: {step.hint}")
        return truncate_to_tokens("\n".join(lines), self._material_tokens)

    def _generate(self, instructions: str, context: str, text: str, language: str | None) -> Generate:
        system = system_prompt(
            self._persona, instructions, reply_language(text, language), context, self.memory.summary()
        )
        return Generate(chat_messages(system, self.memory, text))
