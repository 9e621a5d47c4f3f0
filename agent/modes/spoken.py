"""Markdown written by people (scripts, knowledge) turned into the exact text the voice will say.

Authors hard-wrap paragraphs; `speech.text.clean_for_speech` reads every line end as the end of a
heading or list item and puts a full stop there ("we will. look up together"), so soft line breaks
inside a paragraph are joined first.
"""

from __future__ import annotations

import re

from speech.text import clean_for_speech, is_cjk

_BLOCK_START = re.compile(r"^\s*(?:#|[-*+]\s|\d+[.)]\s|>|\||```|~~~)")
_NO_CONTINUATION = re.compile(r"^\s*(?:#|\||```|~~~)")


def unwrap(markdown: str) -> str:
    """Join the lines of each paragraph (and list item) into one line; blocks keep their own lines."""
    out: list[str] = []
    for line in markdown.replace("\r\n", "\n").split("\n"):
        previous = out[-1] if out else ""
        if line.strip() and previous.strip() and not _BLOCK_START.match(line) and not _NO_CONTINUATION.match(previous):
            glue = "" if is_cjk(previous.rstrip()[-1]) and is_cjk(line.lstrip()[0]) else " "
            out[-1] = previous.rstrip() + glue + line.strip()
        else:
            out.append(line)
    return "\n".join(out)


def speakable(markdown: str) -> str:
    return clean_for_speech(unwrap(markdown)).strip()
