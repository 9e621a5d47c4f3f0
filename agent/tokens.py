"""Token counts estimated without a tokenizer, for prompt and memory budgets.

The LLM may be a local GGUF model or any cloud endpoint, each with its own tokenizer; loading one
just to count would tie the budgets to a model. Common BPE vocabularies spend about one token per
Chinese character and one per four Latin characters, so that estimate is used everywhere, on the
generous side so a budget is never exceeded by much.
"""

from __future__ import annotations

import re

from speech.text import is_cjk

MESSAGE_OVERHEAD = 4
"""Role markers and separators a chat template adds around each message."""
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\U00020000-\U0002fa1f]")
"""The characters `speech.text.is_cjk` accepts, as one regex: counting is on every turn's hot path."""


def estimate_tokens(text: str) -> int:
    cjk = len(_CJK.findall(text))
    rest = len(text) - cjk
    return cjk + -(-rest // 4)


def messages_tokens(messages: list[dict[str, str]]) -> int:
    return sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD for m in messages)


def truncate_to_tokens(text: str, budget: int) -> str:
    """The longest prefix of `text` within `budget`, cut at a word or sentence boundary when one is near."""
    if estimate_tokens(text) <= budget:
        return text
    used = 0.0
    end = 0
    for i, ch in enumerate(text):
        used += 1.0 if is_cjk(ch) else 0.25
        if used > budget - 1:  # room for the ellipsis
            break
        end = i + 1
    cut = text[:end]
    boundary = max(cut.rfind(c) for c in " \n。，！？；,.")
    if boundary > end * 0.7:
        cut = cut[: boundary + 1]
    return cut.rstrip() + "…"
