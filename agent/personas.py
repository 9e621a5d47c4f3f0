"""Named personas: who the avatar is, which mode it runs and what it knows, one YAML file each.

A persona file is what a non-programmer edits to make a new presenter, tutor or host, so every
mistake in it — a typo in a field, a missing knowledge file, a lesson on a host — is reported at
load time in one line naming the file and the field, before any model starts. Paths inside a
persona are relative to the persona file, so a persona folder can be copied anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.knowledge import KnowledgeBase
from agent.modes.base import Mode
from agent.modes.host import HostMode, HostSettings
from agent.modes.lesson import load_lesson
from agent.modes.presenter import PresenterMode
from agent.modes.show import load_show
from agent.modes.tutor import TutorMode
from agent.tokens import estimate_tokens
from core.config import PROJECT_ROOT
from core.errors import UserError

PERSONAS_DIR = PROJECT_ROOT / "configs" / "personas"
MAX_SYSTEM_PROMPT_TOKENS = 400
"""A local model's prompt is about 2k tokens; the persona must leave room for knowledge and memory."""
_SUFFIXES = (".yaml", ".yml")


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    display_name: str = Field(min_length=1)
    mode: Literal["presenter", "tutor", "host"]
    system_prompt: str = Field(min_length=1)
    greeting: str | None = None
    avatar: Path | None = None
    tts_engine: Literal["piper", "kokoro", "espeak", "edge"] | None = None
    voice: str | None = None
    knowledge: tuple[Path, ...] = ()
    """Markdown files or folders of them (presenter, host)."""
    lesson: Path | None = None
    script: Path | None = None
    memory_tokens: int = Field(500, ge=64, le=100_000)
    knowledge_tokens: int = Field(700, ge=50, le=100_000)
    """Prompt budget for knowledge sections (presenter, host) or lesson material (tutor)."""
    host: HostSettings = HostSettings()

    @field_validator("knowledge", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("system_prompt")
    @classmethod
    def _fits_prompt(cls, value: str) -> str:
        tokens = estimate_tokens(value)
        if tokens > MAX_SYSTEM_PROMPT_TOKENS:
            raise ValueError(
                f"is about {tokens} tokens; keep it under {MAX_SYSTEM_PROMPT_TOKENS} so knowledge and memory fit"
            )
        return value

    @model_validator(mode="after")
    def _files_match_mode(self) -> Persona:
        if self.mode == "tutor" and self.lesson is None:
            raise ValueError("a tutor persona needs a lesson file (lesson: ...)")
        if self.mode == "host" and self.script is None:
            raise ValueError("a host persona needs a show script (script: ...)")
        if self.lesson is not None and self.mode != "tutor":
            raise ValueError(f"lesson is only used by tutor personas, this one is a {self.mode}")
        if self.script is not None and self.mode != "host":
            raise ValueError(f"script is only used by host personas, this one is a {self.mode}")
        if self.knowledge and self.mode == "tutor":
            raise ValueError("knowledge is used by presenter and host personas; a tutor's material is its lesson")
        return self


def list_personas(directory: Path = PERSONAS_DIR) -> list[str]:
    """Names of the personas in `directory` (their file names without .yaml)."""
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.iterdir() if p.suffix in _SUFFIXES and p.is_file())


def _locate(name_or_path: str | Path, directory: Path) -> Path:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or "\\" in text or text.endswith(_SUFFIXES):
        path = Path(text).expanduser()
        if not path.is_file():
            raise UserError(f"persona file not found: {path}")
        return path
    for suffix in _SUFFIXES:
        if (directory / f"{text}{suffix}").is_file():
            return directory / f"{text}{suffix}"
    available = ", ".join(list_personas(directory)) or "none"
    raise UserError(f"unknown persona '{text}' (available: {available})")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"persona {path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise UserError(f"persona {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"persona {path} must be a mapping of fields (name, mode, system_prompt, ...)")
    return data


def _existing(path: Path, base: Path, what: str, persona: Path) -> Path:
    full = (base / path.expanduser()).resolve()
    if not full.exists():
        raise UserError(f"persona {persona}: {what} not found: {full}")
    return full


def _knowledge_files(entries: tuple[Path, ...], base: Path, persona: Path) -> tuple[Path, ...]:
    files: list[Path] = []
    for entry in entries:
        full = _existing(entry, base, "knowledge", persona)
        if full.is_dir():
            found = sorted(full.glob("*.md"))
            if not found:
                raise UserError(f"persona {persona}: knowledge folder {full} has no .md files")
            files.extend(found)
        else:
            files.append(full)
    return tuple(files)


def load_persona(name_or_path: str | Path, directory: Path = PERSONAS_DIR) -> Persona:
    """A persona by name (from `directory`) or by path, with every file it names checked to exist."""
    path = _locate(name_or_path, directory)
    data = _read(path)
    data.setdefault("name", path.stem)
    data.setdefault("display_name", str(data["name"]))
    try:
        persona = Persona.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        raise UserError(f"persona {path}: {where + ': ' if where else ''}{message}") from None
    base = path.parent
    update: dict[str, Any] = {"knowledge": _knowledge_files(persona.knowledge, base, path)}
    for field in ("avatar", "lesson", "script"):
        value = getattr(persona, field)
        if value is not None:
            update[field] = _existing(value, base, field, path)
    return persona.model_copy(update=update)


def create_mode(persona: Persona, llm_available: bool) -> Mode:
    """The persona's mode with its knowledge, lesson or script loaded (each problem is a `UserError`)."""
    knowledge = KnowledgeBase.from_files(persona.knowledge) if persona.knowledge else None
    common = {"system_prompt": persona.system_prompt, "llm": llm_available, "memory_tokens": persona.memory_tokens}
    if persona.mode == "presenter":
        return PresenterMode(knowledge, knowledge_tokens=persona.knowledge_tokens, greeting=persona.greeting, **common)
    if persona.mode == "tutor":
        assert persona.lesson is not None  # enforced by Persona's validator
        return TutorMode(
            load_lesson(persona.lesson), material_tokens=persona.knowledge_tokens, greeting=persona.greeting, **common
        )
    assert persona.script is not None  # enforced by Persona's validator
    return HostMode(
        load_show(persona.script),
        settings=persona.host,
        knowledge=knowledge,
        knowledge_tokens=persona.knowledge_tokens,
        greeting=persona.greeting,
        **common,
    )
