"""Lesson plans (YAML) and the deterministic check of a learner's answer.

The check is keyword-based, not an LLM's opinion: a teacher writes what a right answer must
mention, the learner gets the same verdict every time, and the tutor works with no LLM at all.
Matching forgives case, accents, Traditional characters and English word endings; a keyword right
after a negation ("not evaporation", "不是蒸发") does not count.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.knowledge import read_markdown
from agent.lexical import has_chinese, normalise, terms
from core.errors import UserError

NEGATIONS = frozenset({"not", "no", "never", "nor", "neither", "cannot", "t", "isn", "aren", "wasn", "weren"})
"""Words that flip a following keyword ("t" is what is left of "isn't" and "don't")."""
CHINESE_NEGATIONS = ("不是", "没有", "不", "没", "非")
NEGATION_REACH = 2
"""A negation this many words before a keyword, in the same clause, still applies ("not the sun")."""
_CLAUSE_END = re.compile(r"[.!?;,:。！？；，：]")

_QUESTION_STARTS = (
    "what",
    "why",
    "how",
    "who",
    "whom",
    "when",
    "where",
    "which",
    "can you",
    "could you",
    "would you",
    "will you",
    "do you",
    "explain",
    "tell me",
    "i don't understand",
    "i do not understand",
    "i dont understand",
)
_CHINESE_QUESTION_WORDS = ("为什么", "什么", "怎么", "如何", "哪", "能不能", "不懂", "不明白", "请解释", "解释一下")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Criteria(_Strict):
    """What a right answer contains: any one of `any`, and every item of `all` (an item may be a list
    of synonyms). A plain list in the file means `any`."""

    any: tuple[str, ...] = ()
    all: tuple[tuple[str, ...], ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"any": [data]}
        if isinstance(data, list):
            return {"any": data}
        if isinstance(data, dict) and isinstance(data.get("all"), list):
            return {**data, "all": [item if isinstance(item, list) else [item] for item in data["all"]]}
        return data

    @model_validator(mode="after")
    def _not_empty(self) -> Criteria:
        words = [*self.any, *(w for group in self.all for w in group)]
        if not words or any(not w.strip() for w in words):
            raise ValueError("an answer needs at least one keyword and no empty ones")
        return self

    def matches(self, answer: str) -> bool:
        if self.any and not any(mentions(answer, k) for k in self.any):
            return False
        return all(any(mentions(answer, k) for k in group) for group in self.all)

    def expected(self) -> list[str]:
        """One keyword per requirement, for telling the learner what a right answer mentions."""
        return [*(self.any[:1]), *(group[0] for group in self.all)]


class LessonStep(_Strict):
    explain: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answer: Criteria
    hint: str | None = None
    solution: str | None = None


class Lesson(_Strict):
    title: str = Field(min_length=1)
    language: Literal["en", "zh"] = "en"
    intro: str | None = None
    closing: str | None = None
    max_attempts: int = Field(3, ge=1, le=10)
    steps: tuple[LessonStep, ...] = Field(min_length=1)


def load_lesson(path: Path) -> Lesson:
    text = read_markdown(path, "lesson file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"lesson file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"lesson file {path} must be a mapping with title and steps")
    try:
        return Lesson.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "lesson"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise UserError(f"lesson file {path}: {where}: {message}") from None


def _mentions_chinese(answer: str, keyword: str) -> bool:
    text, word = normalise(answer), normalise(keyword).strip()
    start = text.find(word)
    while start >= 0:
        if not text[:start].rstrip().endswith(CHINESE_NEGATIONS):
            return True
        start = text.find(word, start + 1)
    return False


def mentions(answer: str, keyword: str) -> bool:
    """Whether the answer says the keyword (a word, a phrase or Chinese characters), not negated."""
    if has_chinese(keyword):
        return _mentions_chinese(answer, keyword)
    wanted = terms(keyword, drop_stopwords=False)
    if not wanted:
        return False
    for clause in _CLAUSE_END.split(answer):
        words = terms(clause, drop_stopwords=False)
        for i in range(len(words) - len(wanted) + 1):
            negated = NEGATIONS.intersection(words[max(0, i - NEGATION_REACH) : i])
            if words[i : i + len(wanted)] == wanted and not negated:
                return True
    return False


def looks_like_question(text: str) -> bool:
    """A learner asking something ("what is…?", "为什么…") rather than trying an answer.

    Checked before the answer, since "what is evaporation?" mentions the right word without knowing
    it. "Is it evaporation?" is an answer with a question mark, so a question mark alone is not
    enough: the text has to start with a question word (or contain a Chinese one).
    """
    t = normalise(text).strip().replace("’", "'")
    if any(t.startswith(q) and (len(t) == len(q) or not t[len(q)].isalnum()) for q in _QUESTION_STARTS):
        return True
    return has_chinese(t) and any(q in t for q in _CHINESE_QUESTION_WORDS)
