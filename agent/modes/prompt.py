"""Building the chat messages every mode sends, and picking the reply's language.

All modes share one prompt layout: the persona and the spoken-style rule come first and never
change within a session, so a local server's prompt cache skips them on every turn; the user's
language is stated last, where small models follow it best.
"""

from __future__ import annotations

from agent.lexical import has_chinese
from agent.memory import Memory
from agent.tokens import truncate_to_tokens
from speech.text import HAN

MAX_USER_TOKENS = 300
"""A pasted essay must not push the persona and knowledge out of a 2k-token prompt."""

LANGUAGE_NAMES = {
    "en": "English",
    "zh": "Chinese (Simplified characters)",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "ru": "Russian",
    "ja": "Japanese",
    "ko": "Korean",
}

_CJK_PUNCTUATION = "。！？；：，、」』）"

SPOKEN_STYLE = (
    "Your words are spoken aloud by a talking avatar: answer in a few short spoken sentences, "
    "with no markdown, lists, emoji or links."
)


def reply_language(text: str, language: str | None) -> str:
    """The language to answer in: the text decides Chinese or not (ASR codes are unreliable on short
    utterances and typed text has none), the ASR's code names any other language, English by default.

    A Chinese character weighs like three Latin letters, so "什么是 Nimbus?" is Chinese and
    "What does 你好 mean?" is English.
    """
    han = len(HAN.findall(text))
    latin = sum(1 for ch in text if ch.isalpha() and not HAN.match(ch))
    if han and han * 3 >= latin:
        return "zh"
    code = (language or "en").replace("_", "-").split("-")[0].lower()
    return "en" if code == "zh" else code


def language_instruction(language: str) -> str:
    name = LANGUAGE_NAMES.get(language)
    if name is None:
        return "Reply in the language the user wrote in."
    return f"The user is speaking {name}: reply in {name}."


def persona_prefix(persona: str) -> str:
    """The part of every system prompt that never changes within a session: warm it once at start-up
    and a local server's prompt cache skips it on every turn."""
    return persona.strip() + "\n\n" + SPOKEN_STYLE


def system_prompt(persona: str, instructions: str, language: str, context: str = "", summary: str = "") -> str:
    """The constant prefix first, then what changes per turn, and the language rule last."""
    parts = [persona_prefix(persona), instructions, context, summary, language_instruction(language)]
    return "\n\n".join(p.strip() for p in parts if p.strip())


def chat_messages(system: str, memory: Memory, user: str) -> list[dict[str, str]]:
    """System first, then memory, then the new user message (joined to a last user turn that got no
    reply, so roles keep alternating)."""
    user = truncate_to_tokens(user.strip(), MAX_USER_TOKENS)
    messages = [{"role": "system", "content": system}, *memory.messages()]
    if messages[-1]["role"] == "user":
        messages[-1] = {"role": "user", "content": messages[-1]["content"] + "\n" + user}
    else:
        messages.append({"role": "user", "content": user})
    return messages


def join_spoken(parts: list[str]) -> str:
    """Join pieces of speech: a space between Latin sentences, nothing between Chinese ones."""
    out = ""
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if out and not (has_chinese(out[-1]) or out[-1] in _CJK_PUNCTUATION):
            out += " "
        out += part
    return out
