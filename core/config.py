"""Typed configuration: configs/default.yaml, then an optional user file, then DH_* variables, then flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from core.errors import UserError
from core.events import CANONICAL_SAMPLE_RATE

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "default.yaml"
ENV_PREFIX = "DH_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


VALID_FPS = tuple(f for f in range(20, 41) if CANONICAL_SAMPLE_RATE % f == 0)
"""Frame rates at which every frame owns a whole number of audio samples (20, 24, 25, 30, 32, 40)."""
MIN_OUTPUT_SIDE = 64
MAX_OUTPUT_SIDE = 3840
MAX_OUTPUT_PIXELS = 3840 * 2160
"""Output sizes: each side 64-3840 px and at most 4K's pixel count (so 2160x3840 portrait video works too)."""


def output_size_problem(width: int, height: int) -> str | None:
    """Why an output size cannot be used, or None; the one rule behind --size, the config file and DH_ variables."""
    if not (MIN_OUTPUT_SIDE <= width <= MAX_OUTPUT_SIDE and MIN_OUTPUT_SIDE <= height <= MAX_OUTPUT_SIDE):
        return f"each side must be {MIN_OUTPUT_SIDE} to {MAX_OUTPUT_SIDE} px"
    if width * height > MAX_OUTPUT_PIXELS:
        return "it has more pixels than 3840x2160 (4K)"
    return None


class AvatarConfig(_Section):
    source: Path = Path("assets/avatars/astronaut.png")
    face_index: int | None = Field(None, ge=0)
    fps: int = 25
    output_size: tuple[int, int] | None = None
    cache_dir: Path = Path("~/.cache/digital-human/avatars")

    @field_validator("fps")
    @classmethod
    def _whole_samples_per_frame(cls, fps: int) -> int:
        """Each frame owns a whole number of audio samples, so sync is exact; only some rates allow it (and
        below 20 fps speech looks choppy, above 40 no screen gains anything)."""
        if fps not in VALID_FPS:
            good = ", ".join(str(f) for f in VALID_FPS)
            raise ValueError(f"{fps} fps is not supported; use one of {good}")
        return fps

    @field_validator("output_size")
    @classmethod
    def _output_size_in_range(cls, size: tuple[int, int] | None) -> tuple[int, int] | None:
        if size is not None and (problem := output_size_problem(*size)):
            raise ValueError(f"{size[0]}x{size[1]} cannot be used: {problem}")
        return size


class RendererConfig(_Section):
    engine: Literal["realtime", "musetalk", "latentsync"] = "realtime"
    liveliness: float = Field(1.0, ge=0.0, le=2.0)
    jpeg_quality: int = Field(80, ge=30, le=100)


class MuseTalkConfig(_Section):
    weights_dir: Path | None = None
    device: Literal["auto", "cuda", "cpu"] = "auto"
    batch_size: int = Field(4, ge=1, le=64)
    fp16: bool = True


class LatentSyncConfig(_Section):
    checkout: Path | None = None
    python: Path | None = None
    unet_config: str = "configs/unet/stage2.yaml"
    checkpoint: str = "checkpoints/latentsync_unet.pt"
    steps: int = Field(20, ge=1, le=200)
    guidance: float = Field(1.5, ge=1.0, le=5.0)
    deepcache: bool = False
    seed: int | None = None
    timeout_s: float = Field(3600.0, gt=0)
    fallback: bool = True


class JobsConfig(_Section):
    db: Path = Path("~/.local/share/digital-human/jobs.sqlite")
    output_dir: Path = Path("~/.local/share/digital-human/recordings")


class TTSConfig(_Section):
    engine: Literal["piper", "espeak", "edge", "kokoro"] = "piper"
    voice: str | None = None
    chinese_voice: str | None = None
    rate: str = "+0%"
    pitch: str = "+0Hz"
    volume: str = "+0%"
    timeout: float = Field(5.0, gt=0)
    threads: int = Field(1, ge=1, le=64)
    cache_dir: Path = Path("~/.cache/digital-human/models")


class ASRConfig(_Section):
    model: str | None = None
    language: str | None = None
    device: str = "cpu"
    compute_type: str = "int8"
    cache_dir: Path = Path("~/.cache/digital-human/models")


class VADConfig(_Section):
    threshold: float = Field(0.5, gt=0, lt=1)
    min_speech_ms: int = Field(200, ge=0)
    end_of_turn_ms: int = Field(500, ge=100)


class LLMConfig(_Section):
    provider: Literal["auto", "local", "openai"] = "auto"
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(400, gt=0)
    system_prompt: str = "You are a friendly virtual presenter."
    connect_timeout: float = Field(5.0, gt=0)
    first_token_timeout: float = Field(10.0, gt=0)
    token_timeout: float = Field(5.0, gt=0)
    retries: int = Field(2, ge=0, le=10)
    local_model: Literal["qwen2.5-0.5b", "qwen2.5-1.5b"] = "qwen2.5-0.5b"
    local_threads: int = Field(1, ge=1, le=64)
    local_prompt_threads: int = Field(2, ge=1, le=64)
    local_context: int = Field(4096, ge=512, le=32768)
    cache_dir: Path = Path("~/.cache/digital-human/models")

    @property
    def uses_local_model(self) -> bool:
        """`auto` means offline unless the user pointed us at an endpoint or gave a key (e.g. OPENAI_API_KEY)."""
        if self.provider == "auto":
            return self.base_url is None and self.api_key is None
        return self.provider == "local"


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_sessions: int = Field(4, ge=1)
    token: SecretStr | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allowed_origins: list[str] = []
    lead_ms: int = Field(160, ge=40, le=1000)


class AgentConfig(_Section):
    persona: str = "presenter"
    barge_in: Literal["off", "stop", "voice"] = "voice"
    barge_in_ms: int = Field(500, ge=100, le=5000)


class Config(_Section):
    avatar: AvatarConfig = AvatarConfig()
    renderer: RendererConfig = RendererConfig()
    musetalk: MuseTalkConfig = MuseTalkConfig()
    latentsync: LatentSyncConfig = LatentSyncConfig()
    jobs: JobsConfig = JobsConfig()
    tts: TTSConfig = TTSConfig()
    asr: ASRConfig = ASRConfig()
    vad: VADConfig = VADConfig()
    llm: LLMConfig = LLMConfig()
    server: ServerConfig = ServerConfig()
    agent: AgentConfig = AgentConfig()


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of sections")
    return data


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """DH_SECTION__KEY=value; values are parsed as YAML scalars so numbers and null work."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        out.setdefault(section, {})[key] = value
    llm = out.setdefault("llm", {})
    if environ.get("OPENAI_API_KEY") and "api_key" not in llm:
        llm["api_key"] = environ["OPENAI_API_KEY"]
    if environ.get("OPENAI_BASE_URL") and "base_url" not in llm:
        llm["base_url"] = environ["OPENAI_BASE_URL"]
    return out


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Build the effective config. `overrides` (from CLI flags) win over everything else."""
    data = _read_yaml(DEFAULT_CONFIG)
    if path is not None:
        data = _merge(data, _read_yaml(Path(path)))
    data = _merge(data, _env_overrides(dict(os.environ if environ is None else environ)))
    if overrides:
        data = _merge(data, overrides)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        raise UserError(f"invalid configuration value for {where}: {message}") from None


def resolve_path(p: Path) -> Path:
    """Expand ~ and make repository-relative defaults (like the sample avatar) work from any directory."""
    p = p.expanduser()
    if not p.is_absolute() and not p.exists() and (PROJECT_ROOT / p).exists():
        return PROJECT_ROOT / p
    return p


def dump_config(cfg: Config) -> str:
    """YAML of the effective config with secrets masked."""
    data = cfg.model_dump(mode="json")
    key = cfg.llm.api_key.get_secret_value() if cfg.llm.api_key else None
    data["llm"]["api_key"] = (key[:3] + "…" + "*" * 6) if key else None
    data["server"]["token"] = "******" if cfg.server.token else None
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
