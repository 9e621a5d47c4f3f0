"""What one session remembers of its conversation, inside a fixed token budget.

The prompt of a small local model has room for a few hundred tokens of history, and a host show
runs for hours, so memory must stay bounded whatever happens: the oldest turns leave the history
and leave behind one short extractive line each (their first sentence) in a summary, which itself
drops its oldest lines when full. No LLM is asked to summarise: that would cost a request per turn
and make memory depend on what a model felt like writing.

An assistant turn is stored as what the user actually heard, so after a barge-in the model is not
told it said things nobody heard; such turns end with `INTERRUPTED`.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from agent.tokens import MESSAGE_OVERHEAD, estimate_tokens, truncate_to_tokens

INTERRUPTED = "[interrupted]"
SUMMARY_HEADER = "Earlier in this conversation (oldest first):"
NOTE_TOKENS = 24
"""Each dropped turn keeps at most this much of its first sentence in the summary."""
MIN_BUDGET = 64

_SENTENCE_END = re.compile(r"(?<=[.!?])\s|(?<=[。！？；])")


@dataclass(frozen=True, slots=True)
class Turn:
    role: Literal["user", "assistant"]
    text: str
    tokens: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", estimate_tokens(self.text) + MESSAGE_OVERHEAD)


class Memory:
    """Recent turns verbatim plus a bounded summary of older ones; `tokens()` never exceeds the budget.

    A quarter of the budget (by default) is reserved for the summary so the oldest context is
    never lost all at once; a single turn may use at most half of the rest, so a long host segment
    or a pasted essay cannot push every other turn out.
    """

    def __init__(self, budget_tokens: int = 500, *, summary_share: float = 0.25) -> None:
        if budget_tokens < MIN_BUDGET:
            raise ValueError(f"memory budget must be at least {MIN_BUDGET} tokens, got {budget_tokens}")
        if not 0.0 <= summary_share < 1.0:
            raise ValueError(f"summary_share must be in [0, 1), got {summary_share}")
        self.budget = budget_tokens
        self._summary_budget = int(budget_tokens * summary_share)
        self._turn_budget = budget_tokens - self._summary_budget
        self._turns: deque[Turn] = deque()
        self._turn_tokens = 0
        self._notes: deque[str] = deque()
        self._note_tokens = 0

    @property
    def turns(self) -> tuple[Turn, ...]:
        return tuple(self._turns)

    def add_user(self, text: str) -> None:
        text = text.strip()
        if text:
            self._add("user", text, "")

    def add_assistant(self, heard: str, interrupted: bool = False) -> None:
        """Record what the user heard of a reply; an interrupted reply is kept trimmed and marked."""
        heard = heard.strip()
        if heard or interrupted:
            self._add("assistant", heard, INTERRUPTED if interrupted else "")

    def summary(self) -> str:
        """The extractive summary of dropped turns, for the system prompt ("" while nothing was dropped)."""
        if not self._notes:
            return ""
        return SUMMARY_HEADER + "\n" + "\n".join(self._notes)

    def messages(self) -> list[dict[str, str]]:
        """The kept turns as chat messages; consecutive turns of one role are joined so roles alternate,
        which some chat templates require."""
        out: list[dict[str, str]] = []
        for turn in self._turns:
            if out and out[-1]["role"] == turn.role:
                out[-1]["content"] += "\n" + turn.text
            else:
                out.append({"role": turn.role, "content": turn.text})
        return out

    def tokens(self) -> int:
        summary = self.summary()
        return self._turn_tokens + (estimate_tokens(summary) if summary else 0)

    def clear(self) -> None:
        self._turns.clear()
        self._notes.clear()
        self._turn_tokens = self._note_tokens = 0

    def _add(self, role: Literal["user", "assistant"], text: str, mark: str) -> None:
        room = self._turn_budget // 2 - MESSAGE_OVERHEAD - (estimate_tokens(mark) + 1 if mark else 0)
        text = truncate_to_tokens(text, room)
        turn = Turn(role, f"{text} {mark}".strip())
        self._turns.append(turn)
        self._turn_tokens += turn.tokens
        while self._turn_tokens > self._turn_budget:
            old = self._turns.popleft()
            self._turn_tokens -= old.tokens
            self._note(old)

    def _note(self, turn: Turn) -> None:
        if self._summary_budget == 0:
            return
        first = _SENTENCE_END.split(turn.text.removesuffix(INTERRUPTED).strip(), maxsplit=1)[0].strip()
        if not first:
            return
        who = "user" if turn.role == "user" else "you"
        note = f"- {who}: {truncate_to_tokens(first, NOTE_TOKENS)}"
        self._notes.append(note)
        self._note_tokens += estimate_tokens(note) + 1
        room = self._summary_budget - estimate_tokens(SUMMARY_HEADER) - 1
        while self._notes and self._note_tokens > room:
            self._note_tokens -= estimate_tokens(self._notes.popleft()) + 1
