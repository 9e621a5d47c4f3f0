"""The virtual presenter: answers questions about its knowledge (a product, an exhibition, a company).

The model is told exactly what it knows for this question and to stay within it: the whole
knowledge when it fits the budget, else the retrieved sections, else nothing with the explicit
instruction to say it does not know. A small model invents readily, and an avatar that confidently
states a wrong price in front of visitors is worse than one that says "I don't know".
"""

from __future__ import annotations

from agent.knowledge import KnowledgeBase, Retrieval
from agent.lexical import normalise
from agent.memory import Memory
from agent.modes.base import Generate, Mode, Say, Step
from agent.modes.phrases import phrase, spoken_list
from agent.modes.prompt import chat_messages, join_spoken, reply_language, system_prompt
from agent.modes.spoken import speakable
from speech.text import split_for_speech

ALL_KNOWLEDGE = (
    "Everything you know about your subject is in the knowledge below. Answer only from it; if the "
    "answer is not there, say that you don't know rather than guess, and mention what you can talk about."
)
SOME_KNOWLEDGE = (
    "Below are the parts of your knowledge that match the visitor's message. Answer only from them; if "
    "they do not contain the answer, say that you don't know rather than guess."
)
NO_MATCH = (
    "Nothing in your knowledge matches the visitor's message. If it is a greeting or small talk, reply "
    "briefly and warmly. If it is a question, say that you don't know and do not guess. Then offer to "
    "talk about: {topics}."
)
NO_KNOWLEDGE = "Answer the visitor's questions in character."
REFERRING_WORDS = frozenset({"it", "its", "it's", "this", "that", "they", "them", "their", "these", "those", "one"})
REFERRING_CHINESE = ("它", "这", "那", "其")
OFFLINE_SENTENCES = 2
"""Without an LLM the presenter reads the start of the best-matching section."""


def refers_back(text: str) -> bool:
    """Whether a message points at something said before ("does it…", "那个多少钱")."""
    words = set(normalise(text).replace("’", "'").split())
    stripped = {w.strip("?!.,;:") for w in words}
    return bool(stripped & REFERRING_WORDS) or any(c in text for c in REFERRING_CHINESE)


class PresenterMode(Mode):
    name = "presenter"

    def __init__(
        self,
        knowledge: KnowledgeBase | None,
        *,
        system_prompt: str,
        llm: bool,
        memory_tokens: int = 500,
        knowledge_tokens: int = 700,
        greeting: str | None = None,
    ) -> None:
        self.knowledge = knowledge
        self.memory = Memory(memory_tokens)
        self.knowledge_tokens = knowledge_tokens
        self.last_retrieval: Retrieval | None = None
        self._persona = system_prompt
        self._llm = llm
        self._greeting = greeting

    @property
    def wants_llm(self) -> bool:
        return self._llm

    def greeting(self) -> list[Step]:
        return [Say(self._greeting)] if self._greeting else []

    def on_user(self, text: str, language: str | None) -> list[Step]:
        lang = reply_language(text, language)
        retrieval = self._retrieve(text)
        self.last_retrieval = retrieval
        if self._llm:
            instructions, context = self._instructions(retrieval, lang)
            system = system_prompt(self._persona, instructions, lang, context, self.memory.summary())
            steps: list[Step] = [Generate(chat_messages(system, self.memory, text))]
        else:
            steps = [Say(self._offline_answer(text, retrieval, lang))]
        self.memory.add_user(text)
        return steps

    def on_reply_done(self, heard: str, interrupted: bool) -> None:
        self.memory.add_assistant(heard, interrupted)

    def on_idle(self, idle_seconds: float) -> list[Step]:
        return []

    def progress(self) -> dict | None:
        return None

    def _retrieve(self, text: str) -> Retrieval | None:
        """Sections for this message; a follow-up ("and does it freeze?") that matches nothing is retried
        together with the previous question, which usually names the thing "it" is."""
        if self.knowledge is None:
            return None
        retrieval = self.knowledge.select(text, self.knowledge_tokens)
        if retrieval.sections:
            return retrieval
        previous = next((t.text for t in reversed(self.memory.turns) if t.role == "user"), None)
        if previous is None or not refers_back(text):
            return retrieval
        return self.knowledge.select(previous + "\n" + text, self.knowledge_tokens)

    def _topics(self, lang: str) -> str:
        return spoken_list(self.knowledge.topics(), lang) if self.knowledge else ""

    def _instructions(self, retrieval: Retrieval | None, lang: str) -> tuple[str, str]:
        if retrieval is None:
            return NO_KNOWLEDGE, ""
        if retrieval.complete:
            return ALL_KNOWLEDGE, "Knowledge:\n\n" + retrieval.render()
        if retrieval.sections:
            return SOME_KNOWLEDGE, "Knowledge that matches the message:\n\n" + retrieval.render()
        return NO_MATCH.format(topics=self._topics(lang)), ""

    def _offline_answer(self, text: str, retrieval: Retrieval | None, lang: str) -> str:
        if retrieval is None or self.knowledge is None:
            return phrase("no_knowledge", lang)
        ranked = [s for s, _ in self.knowledge.search(text)] if retrieval.complete else list(retrieval.sections)
        if not ranked:
            return phrase("dont_know", lang, topics=self._topics(lang))
        sentences = split_for_speech(speakable(ranked[0].text), early_first_clause=False)
        return join_spoken(sentences[:OFFLINE_SENTENCES])
