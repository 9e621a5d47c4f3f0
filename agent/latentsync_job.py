"""One LatentSync recorded reply, from text or audio to an MP4: speech, template video, model run, mux.

The steps around the model are ours and cheap (seconds); the model run is LatentSync's (minutes on a GPU).
When LatentSync is missing or fails, the CPU renderer draws the reply from the same speech instead
(`latentsync.fallback`), and the job says so in one line.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.render_job import (
    LEAD_IN_SECONDS,
    PARAGRAPH_PAUSE_SECONDS,
    TAIL_SECONDS,
    RenderReport,
    render_audio,
    render_speech,
)
from agent.renderers import prepare
from avatar import latentsync as ls
from avatar.base import Renderer
from core.audio import read_audio_file, write_wav
from core.config import Config
from core.errors import UserError
from core.events import CANONICAL_SAMPLE_RATE, Notice

RATE = CANONICAL_SAMPLE_RATE
CONFIG_SECTIONS = ("avatar", "renderer", "latentsync", "tts")
"""What a job needs from the configuration; stored with it (no secrets: the LLM and server sections stay out)."""
STAGES = {
    "speech": (0.0, 0.05),
    "template": (0.05, 0.1),
    "waiting": (0.1, 0.1),
    "model": (0.1, 0.95),
    "mux": (0.95, 1.0),
    "fallback": (0.1, 0.1),
}
"""Share of a job's progress bar per stage: the model run is nearly all of it on a GPU. `waiting`: another job
holds the LatentSync checkout; `fallback`: the CPU renderer draws the video instead."""


@dataclass
class JobSpec:
    """What to record; JSON-serialisable so it survives in the queue across restarts."""

    avatar: str
    paragraphs: list[list[str]] | None = None
    audio: str | None = None
    seed: int | None = None
    sections: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, cfg: Config, avatar: Path, **what: Any) -> JobSpec:
        data = cfg.model_dump(mode="json")
        data["renderer"]["engine"] = "latentsync"  # a server's live engine (musetalk) is not what prepares this
        return cls(avatar=str(avatar.resolve()), sections={k: data[k] for k in CONFIG_SECTIONS}, **what)

    def config(self) -> Config:
        return Config.model_validate(self.sections)


@dataclass
class JobContext:
    """What the worker lends a running job: its private folder, the lock folder, cancellation and reporting."""

    workdir: Path
    lock_dir: Path
    cancel: threading.Event
    report: Callable[[str, float], None] = lambda stage, progress: None
    """Called with the stage name and the whole job's share done (0.0 ... 1.0)."""
    on_pgid: Callable[[int | None], None] = lambda pgid: None
    """Told LatentSync's process group while it runs (None when it is over), so a restart can clean it up."""


@dataclass
class JobOutcome:
    output: Path
    engine: str
    """"latentsync", or "realtime" when the CPU renderer's video was delivered instead."""
    notices: list[str]
    timings: dict[str, float]


class JobCancelled(Exception):
    pass


def run_job(spec: JobSpec, output: Path, ctx: JobContext) -> JobOutcome:
    cfg = spec.config()
    timings: dict[str, float] = {}
    notices: list[str] = []

    def progress(name: str, share: float) -> None:
        low, high = STAGES[name]
        ctx.report(name, low + (high - low) * share)

    def stage(name: str) -> None:
        if ctx.cancel.is_set():
            raise JobCancelled
        progress(name, 0.0)

    started = time.monotonic()
    try:
        installation = ls.check_installation(cfg.latentsync)
    except ls.LatentSyncUnavailable as exc:
        stage("fallback")
        return _fallback(str(exc), cfg, spec, output, notices, timings, started)
    stage("speech")
    speech = _speech(spec, cfg, notices)
    timings["speech_s"] = time.monotonic() - started

    mark = time.monotonic()
    stage("template")
    prepared, prepare_notices = prepare(cfg, Path(spec.avatar))
    notices += prepare_notices
    timings["avatar_s"] = time.monotonic() - mark
    mark = time.monotonic()
    from avatar.realtime import RealtimeRenderer

    if cfg.avatar.fps != ls.TEMPLATE_FPS:
        notices.append(
            f"LatentSync works at {ls.TEMPLATE_FPS} fps: the video is {ls.TEMPLATE_FPS} fps, not {cfg.avatar.fps}"
        )
    padded = np.concatenate([_silence(LEAD_IN_SECONDS), speech, _silence(TAIL_SECONDS)])
    padded_wav = ctx.workdir / "audio.wav"
    write_wav(padded_wav, padded, RATE)
    renderer = RealtimeRenderer(prepared, ls.TEMPLATE_FPS, cfg.renderer.liveliness, spec.seed)  # type: ignore[arg-type]
    template = ctx.workdir / "template.mp4"
    ls.write_template(renderer, math.ceil(len(padded) / renderer.samples_per_frame), template)
    timings["template_s"] = time.monotonic() - mark

    mark = time.monotonic()
    stage("model")
    model_out = ctx.workdir / "latentsync.mp4"
    argv = ls.inference_command(cfg.latentsync, installation.python, template, padded_wav, model_out)
    try:
        with ls.checkout_lock(installation.checkout, ctx.lock_dir, ctx.cancel.is_set, lambda: progress("waiting", 0.0)):
            timings["lock_wait_s"] = time.monotonic() - mark
            mark = time.monotonic()
            ls.run_inference(
                argv,
                ls.private_checkout(installation.checkout, ctx.workdir),
                timeout_s=cfg.latentsync.timeout_s,
                cancel=ctx.cancel,
                on_progress=lambda share: progress("model", share),
                on_start=ctx.on_pgid,
                log_path=ctx.workdir / "latentsync.log",
            )
        if not model_out.is_file():
            raise ls.LatentSyncFailed("LatentSync exited without writing its video (its output is in the job's log)")
        timings["model_s"] = time.monotonic() - mark
        mark = time.monotonic()
        stage("mux")
        ls.mux_audio(model_out, padded_wav, output)  # an unreadable result is LatentSync's failure too
        timings["mux_s"] = time.monotonic() - mark
    except ls.LatentSyncCancelled:
        raise JobCancelled from None
    except ls.LatentSyncFailed as exc:
        timings.setdefault("model_s", time.monotonic() - mark)
        stage("fallback")
        return _fallback(str(exc), cfg, spec, output, notices, timings, started)
    finally:
        ctx.on_pgid(None)
    timings["total_s"] = time.monotonic() - started
    ctx.report("done", 1.0)
    return JobOutcome(output, "latentsync", notices, timings)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.int16)


def _speech(spec: JobSpec, cfg: Config, notices: list[str]) -> np.ndarray:
    """The reply's audio at 24 kHz, without lead-in or tail (each renderer adds its own)."""
    if spec.audio is not None:
        pcm = read_audio_file(spec.audio, RATE)
        if not len(pcm):
            raise UserError(f"{spec.audio} contains no audio samples")
        return pcm
    return asyncio.run(_synthesise(cfg, spec.paragraphs or [], notices))


async def _synthesise(cfg: Config, paragraphs: list[list[str]], notices: list[str]) -> np.ndarray:
    from speech.tts_select import create_tts

    tts = create_tts(cfg.tts)
    parts: list[np.ndarray] = []
    try:
        for i, sentences in enumerate(paragraphs):
            if i:
                parts.append(_silence(PARAGRAPH_PAUSE_SECONDS))
            for sentence in sentences:
                async for item in tts.stream(sentence):
                    if isinstance(item, Notice):
                        notices.append(item.message)
                    else:
                        parts.append(np.asarray(item.pcm, np.int16))
    finally:
        await tts.aclose()
    if not parts:
        raise UserError("nothing to say: the text has no speakable words")
    return np.concatenate(parts)


def _fallback(
    reason: str, cfg: Config, spec: JobSpec, output: Path, notices: list[str], timings: dict[str, float], started: float
) -> JobOutcome:
    """The CPU renderer's video of the same request, exactly as `render --engine realtime` makes it (with the
    voice's visemes for text), and the reason in one line."""
    if not cfg.latentsync.fallback:
        raise UserError(reason)
    from agent.renderers import create_renderer

    mark = time.monotonic()
    prepared, more = prepare(cfg, Path(spec.avatar))  # already prepared by now, unless LatentSync is not set up
    cpu = cfg.model_copy(update={"renderer": cfg.renderer.model_copy(update={"engine": "realtime"})})
    renderer = create_renderer(cpu, prepared, seed=spec.seed)
    if spec.audio is not None:
        report = render_audio(renderer, Path(spec.audio), output)
    else:
        report = asyncio.run(_render_text(renderer, cfg, spec.paragraphs or [], output))
    notices += [n for n in [*more, *report.notices] if n not in notices]
    notices.append(f"{reason}; this video was drawn by the CPU renderer instead (latentsync.fallback)")
    timings["fallback_s"] = time.monotonic() - mark
    timings["total_s"] = time.monotonic() - started
    return JobOutcome(output, "realtime", notices, timings)


async def _render_text(renderer: Renderer, cfg: Config, paragraphs: list[list[str]], output: Path) -> RenderReport:
    from speech.tts_select import create_tts

    tts = create_tts(cfg.tts)
    try:
        return await render_speech(renderer, tts, paragraphs, output)
    finally:
        await tts.aclose()
