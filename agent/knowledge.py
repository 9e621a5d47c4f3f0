"""A presenter's knowledge: Markdown files split into sections by headings, searched with BM25.

A small local model has a prompt of about two thousand tokens, so a product manual or an exhibition
guide rarely fits whole. When it does, all of it goes into the prompt (nothing can be missed); when
it does not, the sections that share the most distinctive words with the question are picked until
the budget is full. A lexical index needs no embedding model (nothing to download, deterministic,
instant to build) and is good at exactly what visitors ask about: named things, features, prices.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.lexical import terms
from agent.tokens import estimate_tokens, truncate_to_tokens
from core.errors import UserError

MAX_FILE_BYTES = 2_000_000
MAX_SECTION_TOKENS = 250
"""Longer sections are cut into parts at paragraphs, so one long chapter cannot fill the whole budget."""
RELATIVE_FLOOR = 0.25
"""Sections scoring under this share of the best one are noise (a single common word in common)."""
BM25_K1 = 1.2
BM25_B = 0.75
TITLE_WEIGHT = 2
"""Heading words count this many times: a section titled "Pricing" is about pricing."""

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？；])")


@dataclass(frozen=True, slots=True)
class Section:
    source: str
    title: str
    text: str
    tokens: int = field(init=False, compare=False)
    """Its size in a prompt, counted once: retrieval sums it for every question."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", estimate_tokens(self.render()) + 1)

    def render(self) -> str:
        """How the section appears in a prompt."""
        return f"## {self.title}\n{self.text}"


@dataclass(frozen=True, slots=True)
class Retrieval:
    """The sections chosen for one question; `complete` when the whole knowledge fitted."""

    sections: tuple[Section, ...]
    complete: bool
    scores: tuple[float, ...] = field(default=())

    def render(self) -> str:
        return "\n\n".join(s.render() for s in self.sections)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.sections)


def read_markdown(path: Path, what: str) -> str:
    """A UTF-8 text file, or one line saying why it cannot be used."""
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise UserError(
            f"{what} {path} is too large ({len(data) // 1000} kB; the limit is {MAX_FILE_BYTES // 1000} kB)"
        )
    try:
        return data.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not UTF-8 text") from None


def _pieces(body: str, max_tokens: int) -> list[str]:
    """Paragraph groups of at most `max_tokens`; an oversized paragraph is cut at sentences."""
    units: list[str] = []
    for para in re.split(r"\n\s*\n", body):
        para = para.strip()
        if not para:
            continue
        if estimate_tokens(para) <= max_tokens:
            units.append(para)
        else:
            units.extend(truncate_to_tokens(s, max_tokens) for s in _SENTENCE_END.split(para) if s.strip())
    pieces: list[str] = []
    for unit in units:
        if pieces and estimate_tokens(pieces[-1]) + estimate_tokens(unit) + 1 <= max_tokens:
            pieces[-1] += "\n\n" + unit
        else:
            pieces.append(unit)
    return pieces


def split_sections(text: str, source: str, max_tokens: int = MAX_SECTION_TOKENS) -> list[Section]:
    """Sections of a Markdown document, titled by their heading path ("Nimbus › Pricing").

    Text before the first heading is titled after the file; headings inside code blocks are text.
    """
    default_title = Path(source).stem.replace("-", " ").replace("_", " ").strip() or source
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    lines: list[str] = []
    in_fence = False

    def flush() -> None:
        title = " › ".join(t for _, t in stack) or default_title
        parts = _pieces("\n".join(lines), max_tokens)
        for i, part in enumerate(parts):
            suffix = f" (part {i + 1})" if len(parts) > 1 else ""
            sections.append(Section(source, title + suffix, part))
        lines.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading is None:
            lines.append(line)
            continue
        flush()
        level = len(heading.group(1))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading.group(2)))
    flush()
    return sections


class KnowledgeBase:
    """Sections with a BM25 index over their words (English) and character pairs (Chinese)."""

    def __init__(self, sections: Sequence[Section]) -> None:
        self.sections: tuple[Section, ...] = tuple(sections)
        self._docs = [Counter(terms(s.title) * TITLE_WEIGHT + terms(s.text)) for s in self.sections]
        self._lengths = [sum(d.values()) for d in self._docs]
        self._avg_length = max(1.0, sum(self._lengths) / len(self._lengths)) if self._lengths else 1.0
        df: Counter[str] = Counter()
        for doc in self._docs:
            df.update(doc.keys())
        n = len(self._docs)
        self._idf = {t: math.log(1.0 + (n - k + 0.5) / (k + 0.5)) for t, k in df.items()}
        self.total_tokens = sum(s.tokens for s in self.sections)

    @classmethod
    def from_files(cls, paths: Iterable[Path], max_section_tokens: int = MAX_SECTION_TOKENS) -> KnowledgeBase:
        sections: list[Section] = []
        for path in paths:
            found = split_sections(read_markdown(path, "knowledge file"), path.name, max_section_tokens)
            if not found:
                raise UserError(f"knowledge file {path} has no text")
            sections.extend(found)
        return cls(sections)

    def topics(self, limit: int = 6) -> list[str]:
        """The distinct top-level titles, to offer when a question is outside the knowledge."""
        seen: dict[str, None] = {}
        for s in self.sections:
            seen.setdefault(s.title.split(" › ")[0].split(" (part ")[0], None)
        return list(seen)[:limit]

    def search(self, query: str) -> list[tuple[Section, float]]:
        """Sections sharing at least one distinctive term with the query, best first."""
        wanted = [t for t in dict.fromkeys(terms(query)) if t in self._idf]
        scored: list[tuple[float, int]] = []
        for i, doc in enumerate(self._docs):
            norm = BM25_K1 * (1 - BM25_B + BM25_B * self._lengths[i] / self._avg_length)
            score = sum(self._idf[t] * doc[t] * (BM25_K1 + 1) / (doc[t] + norm) for t in wanted if doc[t])
            if score > 0:
                scored.append((score, i))
        scored.sort(key=lambda x: (-x[0], x[1]))
        if not scored:
            return []
        floor = scored[0][0] * RELATIVE_FLOOR
        return [(self.sections[i], score) for score, i in scored if score >= floor]

    def select(self, query: str, budget_tokens: int) -> Retrieval:
        """Everything when it fits the budget; otherwise the best sections that fit, in rank order."""
        if self.total_tokens <= budget_tokens:
            return Retrieval(self.sections, complete=True)
        chosen: list[Section] = []
        scores: list[float] = []
        used = 0
        for section, score in self.search(query):
            if used + section.tokens <= budget_tokens:
                chosen.append(section)
                scores.append(score)
                used += section.tokens
            elif not chosen:
                room = budget_tokens - estimate_tokens(f"## {section.title}\n") - 2
                if room > 0:
                    cut = Section(section.source, section.title, truncate_to_tokens(section.text, room))
                    chosen.append(cut)
                    scores.append(score)
                    used += cut.tokens
        return Retrieval(tuple(chosen), complete=False, scores=tuple(scores))
