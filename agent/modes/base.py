"""The contract between a conversational mode and the session that runs it.

A mode decides *what* to say; the session decides *how and when*: it owns the LLM stream, TTS,
the renderer, barge-in and the clock. Keeping modes plain, synchronous and free of I/O means every
policy (a tutor's lesson state machine, a host's script cursor, a presenter's retrieval) is tested
in microseconds with no model, and the one asynchronous, cancellable pipeline lives in one place.

How the session drives a mode:

- `greeting()` once when the session starts, `on_user()` for each finished user turn and
  `on_idle()` while nothing is being said each return a *reply*: a list of steps, played in order
  as one turn ([] = say nothing).
- After a non-empty reply ends — finished, or cut short by the user — the session calls
  `on_reply_done()` exactly once with everything the user heard of it (all its steps, trimmed at
  the interruption); steps after an interruption are dropped, not played later.
- Modes are not thread-safe unless they say so (the host's question queue is): call them from the
  session's task only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Say:
    """Words spoken verbatim, no LLM: script segments, lesson explanations, fixed phrases.

    Exact text where exactness matters (a lesson's question, a show's script) and no LLM latency or
    cost for what is already written.
    """

    text: str


@dataclass(frozen=True, slots=True)
class Generate:
    """An LLM reply the session streams and speaks sentence by sentence.

    `messages` is OpenAI chat format with the system message first, complete (persona, mode
    instructions, retrieved context, memory and the new user message): the session sends it as is,
    so what the model sees is decided and tested here.
    """

    messages: list[dict[str, str]]


Step = Say | Generate


class Mode(ABC):
    """A conversational policy over one session; owns its memory."""

    name: str
    user_interrupts: bool = True
    """A user turn cuts the current reply short (a conversation); False queues it instead (a show's viewers)."""

    @abstractmethod
    def greeting(self) -> list[Step]:
        """Said when the session starts (may be [])."""

    @abstractmethod
    def on_user(self, text: str, language: str | None) -> list[Step]:
        """A finished user turn, typed or transcribed; `language` is the ASR's code ("en", "zh") or None.

        The reply's language follows the user's, so modes look at both the code and the text.
        """

    @abstractmethod
    def on_reply_done(self, heard: str, interrupted: bool) -> None:
        """What the user actually heard of the last reply (trimmed on barge-in), for memory and state."""

    @abstractmethod
    def on_idle(self, idle_seconds: float) -> list[Step]:
        """Nothing has been said or heard for `idle_seconds`; a host reads its next segment."""

    @abstractmethod
    def progress(self) -> dict | None:
        """State to show the client (the tutor's step i of n); None when there is nothing to show."""

    @property
    @abstractmethod
    def wants_llm(self) -> bool:
        """Whether replies may contain `Generate`; False when no LLM is configured, so the session
        need not start one."""
