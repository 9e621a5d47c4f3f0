"""The scripted livestream host: reads a show script segment by segment and answers viewers' questions
between segments.

A show runs for hours unattended, so everything a host holds is bounded: the script is loaded once,
memory has a token budget, and the question queue has a fixed capacity — a flood of questions is
refused at the door with a reason, never buffered without limit. Questions and segments alternate
(at most one question between two segments) so a busy chat cannot stall the show, and a segment
cut short by a barge-in is resumed from its first unheard sentence.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.knowledge import KnowledgeBase
from agent.memory import Memory
from agent.modes.base import Generate, Mode, Say, Step
from agent.modes.phrases import phrase
from agent.modes.prompt import chat_messages, reply_language, system_prompt
from agent.modes.show import Segment, unheard_rest
from core.errors import UserError

HOST_INSTRUCTIONS = (
    "You are hosting a live show, reading a prepared script. Between two segments a viewer asked the "
    "question below. Answer it in one to three short sentences, from the show's material when it covers "
    "the question; if it does not, say honestly that you don't know. Do not announce or start the next "
    "segment: the show continues by itself."
)
MAX_AUTHOR_CHARS = 40

RejectReason = Literal["empty", "too_long", "closed", "full"]


class HostSettings(BaseModel):
    """How a show runs; set under `host:` in a persona file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gap_seconds: float = Field(1.5, ge=0, le=600)
    """Idle time between two things said, so the show breathes and viewers can type."""
    loop: bool = True
    """Start the script again after its last segment (a 24/7 stream), or end the show."""
    queue_size: int = Field(20, ge=1, le=1000)
    unanswered: Literal["acknowledge", "skip"] = "acknowledge"
    """Without an LLM: thank the viewer for the question aloud, or refuse questions at `ask()`."""
    max_question_chars: int = Field(300, ge=10, le=5000)
    read_questions: bool = True
    """Read a question aloud before answering it: stream viewers did not see it typed."""


class QuestionRejected(UserError):
    """A viewer's question that cannot be queued; the message says why, in one line."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    author: str


class QuestionQueue:
    """A bounded FIFO shared by the HTTP endpoint or page (producers) and the session (consumer)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Question] = deque()
        self._lock = threading.Lock()

    def put(self, question: Question) -> None:
        with self._lock:
            if len(self._items) >= self.capacity:
                raise QuestionRejected(
                    "full", f"too many questions waiting ({self.capacity}); ask again after the next segment"
                )
            self._items.append(question)

    def get(self) -> Question | None:
        with self._lock:
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class HostMode(Mode):
    """`ask()` may be called from any thread; everything else from the session's task only."""

    name = "host"
    user_interrupts = False

    def __init__(
        self,
        segments: list[Segment],
        *,
        system_prompt: str,
        llm: bool,
        settings: HostSettings | None = None,
        knowledge: KnowledgeBase | None = None,
        memory_tokens: int = 500,
        knowledge_tokens: int = 600,
        greeting: str | None = None,
    ) -> None:
        if not segments:
            raise ValueError("a show needs at least one segment")
        self.segments = tuple(segments)
        self.settings = settings or HostSettings()
        self.memory = Memory(memory_tokens)
        self.questions = QuestionQueue(self.settings.queue_size)
        extra = knowledge.sections if knowledge else ()
        self._material = KnowledgeBase([*(s.as_section("script") for s in self.segments), *extra])
        self._knowledge_tokens = knowledge_tokens
        self._persona = system_prompt
        self._llm = llm
        self._greeting = greeting
        self._cursor = 0
        self._shown = -1
        self._loops = 0
        self._resume: Segment | None = None
        self._current: Segment | None = None
        self._answering: Question | None = None
        self._may_answer = True

    @property
    def wants_llm(self) -> bool:
        return self._llm

    @property
    def finished(self) -> bool:
        """The script has been read to its end (never, when it loops)."""
        return not self.settings.loop and self._cursor >= len(self.segments) and self._resume is None

    def ask(self, text: str, author: str = "") -> None:
        """Queue a viewer's question, or raise `QuestionRejected` saying why not."""
        text = " ".join(text.split())
        if not text:
            raise QuestionRejected("empty", "the question is empty")
        if len(text) > self.settings.max_question_chars:
            raise QuestionRejected(
                "too_long",
                f"the question is too long ({len(text)} characters; the limit is {self.settings.max_question_chars})",
            )
        if not self._llm and self.settings.unanswered == "skip":
            raise QuestionRejected("closed", "this show does not take questions (no LLM is configured)")
        name = "".join(ch for ch in author if ch.isprintable()).strip()[:MAX_AUTHOR_CHARS]
        self.questions.put(Question(text, name))

    def greeting(self) -> list[Step]:
        return [Say(self._greeting)] if self._greeting else []

    def on_user(self, text: str, language: str | None) -> list[Step]:
        """The session's own user is one more viewer: the question waits for the gap after this segment."""
        try:
            self.ask(text)
        except QuestionRejected as exc:
            return [Say(phrase("queue_full", reply_language(text, language)))] if exc.reason == "full" else []
        return []

    def on_reply_done(self, heard: str, interrupted: bool) -> None:
        self.memory.add_assistant(heard, interrupted)
        if self._current is not None and interrupted:
            self._resume = unheard_rest(self._current, heard)
        self._current = None
        self._answering = None

    def on_idle(self, idle_seconds: float) -> list[Step]:
        """The next segment or question once the gap has passed; nothing while the last reply is still
        out (no `on_reply_done` yet), so two replies never overlap."""
        if idle_seconds < self.settings.gap_seconds or self._current is not None or self._answering is not None:
            return []
        if self._may_answer or self.finished:
            question = self.questions.get()
            if question is not None:
                self._may_answer = False
                return self._answer(question)
        if self.finished:
            return []
        segment = self._next_segment()
        self._current = segment
        self._may_answer = True
        return [Say(segment.text)]

    def progress(self) -> dict:
        if self._answering is not None:
            status = "answering"
        elif self._current is not None:
            status = "reading"
        elif self.finished and not len(self.questions):
            status = "done"
        else:
            status = "waiting"
        return {
            "mode": self.name,
            "segment": self._shown + 1,
            "segments": len(self.segments),
            "title": self.segments[self._shown].title if self._shown >= 0 else "",
            "loops": self._loops,
            "status": status,
            "queued": len(self.questions),
        }

    def _next_segment(self) -> Segment:
        if self._resume is not None:
            segment, self._resume = self._resume, None
            return segment
        self._shown = self._cursor
        segment = self.segments[self._cursor]
        self._cursor += 1
        if self._cursor == len(self.segments) and self.settings.loop:
            self._cursor = 0
            self._loops += 1
        return segment

    def _answer(self, question: Question) -> list[Step]:
        self._answering = question
        lang = reply_language(question.text, None)
        author = question.author or phrase("a_viewer", lang)
        asked = phrase("viewer_asks", lang, author=author, question=question.text)
        if not self._llm:
            self.memory.add_user(asked)
            return [Say(phrase("viewer_thanks", lang, author=author))]
        retrieval = self._material.select(question.text, self._knowledge_tokens)
        context = (
            "The show's material that matches the question:\n\n" + retrieval.render()
            if retrieval.sections
            else "Nothing in the show's material matches this question."
        )
        system = system_prompt(self._persona, HOST_INSTRUCTIONS, lang, context, self.memory.summary())
        steps: list[Step] = [Say(asked)] if self.settings.read_questions else []
        steps.append(Generate(chat_messages(system, self.memory, asked)))
        self.memory.add_user(asked)
        return steps
