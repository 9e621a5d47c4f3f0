"""`digital-human serve` and `digital-human host`: the live conversation and the livestream show."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from core.config import Config
from core.errors import UserError
from streaming.server import LiveServer, ServerOptions, is_loopback

WORKER_THREADS = 64
CLOSE_GRACE_SECONDS = 1.5
"""Shutdown: clients get their close frames within this; the process is gone within 2 s."""


def add_live_commands(sub: Any) -> None:
    s = sub.add_parser("serve", help="start the live server: talk to the avatar in a web page")
    _server_flags(s)
    s.add_argument("--persona", help="default persona (presenter, tutor, host or a YAML file); pages may pick another")

    h = sub.add_parser("host", help="run a livestream show: read a script, answer viewer questions, push to RTMP")
    _server_flags(h)
    h.add_argument("--script", type=Path, help="show script (Markdown: paragraphs or ## segments)")
    h.add_argument("--persona", default="host", help="host persona (default: host)")
    h.add_argument("--rtmp", help="push the show to this RTMP URL, e.g. rtmp://live.example.com/app/KEY")


def _server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", dest="bind", help="address to listen on (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=int, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--avatar", type=Path, help="portrait photo or short video (default: the configured avatar)")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate for https/wss")
    p.add_argument("--tls-key", type=Path, help="PEM private key for https/wss")
    p.add_argument(
        "--engine", choices=["realtime", "musetalk"], help="live renderer: realtime (CPU, default) or musetalk (GPU)"
    )


def _apply_flags(cfg: Config, args: argparse.Namespace) -> None:
    if args.bind is not None:
        cfg.server.host = args.bind
    if args.port is not None:
        cfg.server.port = args.port
    if args.tls_cert is not None:
        cfg.server.tls_cert = args.tls_cert
    if args.tls_key is not None:
        cfg.server.tls_key = args.tls_key
    if getattr(args, "persona", None):
        cfg.agent.persona = args.persona
    if args.engine is not None:
        cfg.renderer.engine = args.engine
    from agent.renderers import check_engine

    check_engine(cfg)  # missing GPU weights or torch are reported before any model loads


def server_options(cfg: Config) -> tuple[ServerOptions, list[str]]:
    """Token and TLS as the bind address requires; the lines to show the user about them."""
    from streaming import tls

    lines: list[str] = []
    server = cfg.server
    token = server.token.get_secret_value() if server.token else None
    if (server.tls_cert is None) != (server.tls_key is None):
        raise UserError("give both --tls-cert and --tls-key (or neither)")
    context = None
    if server.tls_cert is not None and server.tls_key is not None:
        context = tls.load_context(server.tls_cert.expanduser(), server.tls_key.expanduser())
    if not is_loopback(server.host):
        if token is None:
            token = secrets.token_urlsafe(12)
            lines.append("access token (set DH_SERVER__TOKEN to choose your own): " + token)
        if context is None:
            folder = cfg.avatar.cache_dir.expanduser().parent / "tls"
            cert, key = tls.self_signed(folder, server.host)
            context = tls.load_context(cert, key)
            lines.append(
                f"https with a self-signed certificate ({cert}); SHA-256 fingerprint {tls.fingerprint(cert)}. "
                "Browsers warn once: check the fingerprint, then accept it (or pass --tls-cert/--tls-key)."
            )
    options = ServerOptions(
        host=server.host,
        port=server.port,
        token=token,
        max_sessions=server.max_sessions,
        allowed_origins=tuple(server.allowed_origins),
        ssl_context=context,
    )
    return options, lines


def cmd_serve(cfg: Config, args: argparse.Namespace) -> None:
    _apply_flags(cfg, args)
    from agent.personas import load_persona

    load_persona(cfg.agent.persona)  # a typo is reported before any model loads
    asyncio.run(_run(cfg, args.avatar, show=None))


def cmd_host(cfg: Config, args: argparse.Namespace) -> None:
    _apply_flags(cfg, args)
    from agent.personas import load_persona

    persona = load_persona(args.persona)
    if persona.mode != "host":
        raise UserError(f"persona {persona.name} is a {persona.mode}, not a livestream host")
    if args.script is not None:
        if not args.script.is_file():
            raise UserError(f"script file not found: {args.script}")
        persona = persona.model_copy(update={"script": args.script.resolve()})
    if args.rtmp is not None:
        from streaming.rtmp import check_url

        check_url(args.rtmp)
    cfg.agent.persona = persona.name
    asyncio.run(_run(cfg, args.avatar, show=(persona, args.rtmp)))


async def _run(cfg: Config, avatar: Path | None, show: tuple[Any, str | None] | None) -> None:
    from agent.live import LiveAgent, SharedModels
    from agent.recordings import ROUTE, Recordings

    # Every session sends its rendering, encoding, voice and speech recognition to worker threads; the default
    # pool (6 threads on 2 cores) would queue one session's frame behind another's 0.5 s transcription.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=WORKER_THREADS))

    options, lines = server_options(cfg)
    notices: list[str] = []
    recordings = Recordings(cfg)
    models = await SharedModels.load(cfg, avatar=avatar, notices=notices)
    for n in notices:
        print(f"note: {n}", file=sys.stderr)
    recordings.start()
    options.file_routes[ROUTE] = recordings.file
    agent = LiveAgent(models, recordings=recordings)
    sinks: list[Any] = []
    try:
        if show is not None:
            persona, rtmp = show
            session = await agent.start_show(persona)
            if rtmp:
                from streaming.rtmp import RtmpSink

                renderer = session.media.renderer
                sinks.append(RtmpSink(rtmp, renderer.fps, renderer.frame_size, renderer.sample_rate))
                session.media.add_sink(sinks[-1])
            options.http_routes["/api/ask"] = _question_route(session)
        server = LiveServer(options, agent.handle)
        await server.start()
        for line in lines:
            print(f"note: {line}", file=sys.stderr)
        print(f"serving on {server.url}", flush=True)
        await _until_signal()
        print("shutting down", file=sys.stderr)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.close(), CLOSE_GRACE_SECONDS)
        await agent.stop_show()
    finally:
        recordings.close()
        for sink in sinks:
            await sink.aclose()
        await models.aclose()
    # Worker threads may still be busy (a Whisper load, a sentence being synthesised) and hold nothing worth
    # keeping: waiting for them would break the promise to be gone within 2 s of Ctrl-C or SIGTERM.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _question_route(session: Any) -> Any:
    from agent.modes.host import HostMode, QuestionRejected

    def ask(query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        text = (query.get("text") or [""])[0].strip()
        author = (query.get("author") or [""])[0].strip()[:60]
        mode = session.mode
        if not isinstance(mode, HostMode):
            return 409, {"error": "this show takes no questions"}
        try:
            mode.ask(text, author)
        except QuestionRejected as exc:
            return 429 if exc.reason == "full" else 400, {"error": str(exc)}
        return 200, {"queued": True}

    return ask


async def _until_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
