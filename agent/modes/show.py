"""Show scripts for the livestream host: Markdown cut into the segments read between pauses.

A script with `##` headings has one segment per `##` section (the heading titles it and is not
read: titles and the preamble before the first `##` are for the producer); a script without them
has one segment per paragraph. The text
is cleaned for speech once, at load, so the host reads exactly what the voice will say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from agent.knowledge import Section, read_markdown
from agent.modes.prompt import join_spoken
from agent.modes.spoken import speakable
from core.errors import UserError
from speech.text import split_for_speech

_SEGMENT_HEADING = re.compile(r"^##\s+(.+?)\s*#*\s*$")
_ANY_HEADING = re.compile(r"^#{1,6}\s+\S")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SPOKEN_CORE = re.compile(r"[\W_]+")


@dataclass(frozen=True, slots=True)
class Segment:
    title: str
    text: str

    def sentences(self) -> list[str]:
        return split_for_speech(self.text, early_first_clause=False)

    def as_section(self, source: str) -> Section:
        return Section(source, self.title, self.text)


def _blocks(text: str) -> list[tuple[str, str]]:
    """(title, body) blocks: `##` sections when there are any (what precedes the first is the producer's
    preamble, not read), else paragraphs; other headings are dropped."""
    lines = text.splitlines()
    in_fence = False
    titled: list[tuple[str, list[str]]] = [("", [])]
    has_segments = False
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _SEGMENT_HEADING.match(line)
        if heading:
            has_segments = True
            titled.append((heading.group(1), []))
        elif in_fence or not _ANY_HEADING.match(line):
            titled[-1][1].append(line)
    if has_segments:
        return [(title, "\n".join(body)) for title, body in titled[1:]]
    paragraphs = re.split(r"\n\s*\n", "\n".join(titled[0][1]))
    return [("", p) for p in paragraphs]


def parse_show(text: str) -> list[Segment]:
    segments: list[Segment] = []
    for title, body in _blocks(text):
        spoken = speakable(body)
        if _SPOKEN_CORE.sub("", spoken):
            segments.append(Segment(title or f"Segment {len(segments) + 1}", spoken))
    return segments


def load_show(path: Path) -> list[Segment]:
    segments = parse_show(read_markdown(path, "show script"))
    if not segments:
        raise UserError(f"show script {path} has nothing to say")
    return segments


def unheard_rest(segment: Segment, heard: str) -> Segment | None:
    """What is left of a segment after the user heard `heard` of it, from the first sentence not heard
    in full; None when all of it was heard.

    Compared on letters and digits only: what the client reports heard comes from word timings,
    without the script's punctuation.
    """
    heard_length = len(_SPOKEN_CORE.sub("", heard))
    sentences = segment.sentences()
    spoken = 0
    for i, sentence in enumerate(sentences):
        spoken += len(_SPOKEN_CORE.sub("", sentence))
        if spoken > heard_length:
            return Segment(segment.title, join_spoken(sentences[i:]))
    return None
