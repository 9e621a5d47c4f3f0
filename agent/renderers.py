"""Choosing and building the renderer engine named in the configuration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from avatar.base import Renderer
from core.config import Config, resolve_path
from core.errors import UserError

GPU_ENGINES = {
    "musetalk": "MuseTalk 1.5 (live video on a GPU)",
    "latentsync": "LatentSync (high-quality recorded replies on a GPU)",
}


def prepare(
    cfg: Config, source: Path | None = None, progress: Callable[[float], None] | None = None
) -> tuple[object, list[str]]:
    """Prepare (or load from cache) the avatar for the configured engine; returns it and notices.

    `progress` is told the share of the preparation done (0.0 ... 1.0) as it goes.
    """
    from avatar.prepare import prepare_avatar

    return prepare_avatar(
        resolve_path(source or cfg.avatar.source),
        cfg.avatar.cache_dir.expanduser(),
        face_index=cfg.avatar.face_index,
        output_size=cfg.avatar.output_size,
        progress=progress,
    )


def check_engine(cfg: Config) -> None:
    """Refuse an engine this build cannot run before any slow preparation starts."""
    engine = cfg.renderer.engine
    if engine in GPU_ENGINES:
        raise UserError(
            f"renderer engine '{engine}' ({GPU_ENGINES[engine]}) is not available in this build yet; "
            "use --engine realtime (CPU)"
        )


def create_renderer(cfg: Config, prepared: object, seed: int | None = None) -> Renderer:
    check_engine(cfg)
    from avatar.realtime import RealtimeRenderer

    return RealtimeRenderer(prepared, fps=cfg.avatar.fps, liveliness=cfg.renderer.liveliness, seed=seed)  # type: ignore[arg-type]
