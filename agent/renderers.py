"""Choosing and building the renderer engine named in the configuration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from avatar.base import Renderer
from core.config import Config, resolve_path
from core.errors import UserError

PREPARE_SHARE = 0.7
"""Share of a MuseTalk preparation's progress given to the CPU renderer's part (landmarks, loop), the rest to
encoding the template frames."""


def prepare(
    cfg: Config, source: Path | None = None, progress: Callable[[float], None] | None = None
) -> tuple[object, list[str]]:
    """Prepare (or load from cache) the avatar for the configured engine; returns it and notices.

    `progress` is told the share of the preparation done (0.0 ... 1.0) as it goes.
    """
    from avatar.prepare import prepare_avatar

    step = progress or (lambda done: None)
    networks = None
    if cfg.renderer.engine == "musetalk":
        from avatar.musetalk.networks import load_networks
        from avatar.musetalk.weights import locate

        check_engine(cfg)
        # Loaded first: weights that do not match their configs are reported before the avatar's preparation.
        networks = load_networks(locate(cfg.musetalk.weights_dir), cfg.musetalk.device, cfg.musetalk.fp16)
    prepared, notices = prepare_avatar(
        resolve_path(source or cfg.avatar.source),
        cfg.avatar.cache_dir.expanduser(),
        face_index=cfg.avatar.face_index,
        output_size=cfg.avatar.output_size,
        progress=(lambda done: step(done * PREPARE_SHARE)) if networks is not None else progress,
    )
    if networks is None:
        return prepared, notices
    from avatar.musetalk.prepare import prepare_musetalk

    avatar = prepare_musetalk(
        prepared,
        networks,
        cfg.avatar.cache_dir.expanduser(),
        lambda done: step(PREPARE_SHARE + done * (1 - PREPARE_SHARE)),
        liveliness=cfg.renderer.liveliness,
    )
    return avatar, [*notices, *avatar.notices]


def check_engine(cfg: Config) -> None:
    """Refuse an engine that cannot run here before any slow preparation starts."""
    engine = cfg.renderer.engine
    if engine == "latentsync":
        raise UserError(
            "renderer engine 'latentsync' makes recorded replies only (digital-human render --engine latentsync), "
            "not live video: use --engine realtime (CPU) or musetalk (GPU)"
        )
    if engine == "musetalk":
        from avatar.musetalk.weights import locate, require_torch

        require_torch()
        locate(cfg.musetalk.weights_dir)


def create_renderer(cfg: Config, prepared: object, seed: int | None = None) -> Renderer:
    check_engine(cfg)
    if cfg.renderer.engine == "musetalk":
        from avatar.musetalk.renderer import MuseTalkRenderer

        return MuseTalkRenderer(prepared, fps=cfg.avatar.fps, batch_size=cfg.musetalk.batch_size)  # type: ignore[arg-type]
    from avatar.realtime import RealtimeRenderer

    return RealtimeRenderer(prepared, fps=cfg.avatar.fps, liveliness=cfg.renderer.liveliness, seed=seed)  # type: ignore[arg-type]
