"""Turning `--text` and `--script` input into paragraphs of speakable sentences."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from core.errors import UserError
from speech.text import split_for_speech

MAX_SCRIPT_BYTES = 2_000_000


def _paragraphs(text: str) -> list[list[str]]:
    out: list[list[str]] = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        # A recording has no latency to win, so no early first clause: whole sentences sound better.
        sentences = [s for s in split_for_speech(block, early_first_clause=False) if s.strip()]
        if sentences:
            out.append(sentences)
    return out


def paragraphs_from_text(text: str) -> list[list[str]]:
    paragraphs = _paragraphs(text)
    if not paragraphs:
        raise UserError("nothing to say: the text is empty or has no speakable words")
    return paragraphs


def paragraphs_from_script(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise UserError(f"script file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read script {path}: {error.strerror or error}") from None
    if len(data) > MAX_SCRIPT_BYTES:
        raise UserError(
            f"script {path} is too large ({len(data) // 1000} kB; the limit is {MAX_SCRIPT_BYTES // 1000} kB)"
        )
    paragraphs = _paragraphs(_decoded(data, path))
    if not paragraphs:
        raise UserError(f"nothing to say: script {path} has no speakable text")
    return paragraphs


def _decoded(data: bytes, path: Path) -> str:
    """The script's text: UTF-8 (with or without a BOM), or UTF-16 with its BOM (Windows Notepad's "Unicode").

    A NUL byte in anything else means a binary file: reading it aloud would be noise.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise UserError(f"script {path} is damaged: it starts as UTF-16 text but is not valid UTF-16") from None
    if b"\x00" in data:
        raise UserError(
            f"script {path} contains a NUL byte (at byte {data.index(0)}): it is a binary file, "
            "not plain text or Markdown"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"script {path} is not UTF-8 text (plain text or Markdown expected)") from None
