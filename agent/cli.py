"""`digital-human`: the command line. Every user-fixable problem ends in one line and exit status 2."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from agent.cli_jobs import add_jobs_command, cmd_jobs
from agent.cli_live import add_live_commands, cmd_host, cmd_serve
from core.config import VALID_FPS, Config, dump_config, load_config, output_size_problem, resolve_path
from core.errors import UserError

if TYPE_CHECKING:
    from agent.render_job import RenderReport
    from speech.tts import TTSEngine

log = logging.getLogger("digital_human")


MAX_SEED = 2**32 - 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's promise: a usage mistake is one `error:` line (exit 2), not a usage block.

    Sub-command parsers are built from this class too (argparse uses the parent's class).
    """

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1280x720, not {text!r}") from None
    if problem := output_size_problem(w, h):
        raise argparse.ArgumentTypeError(f"size {w}x{h} cannot be used: {problem}")
    return w, h


def _natural(limit: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if not 0 <= value <= limit:
            raise argparse.ArgumentTypeError(f"{value} is out of range (0 to {limit})")
        return value

    return parse


def _config_file(text: str) -> Path:
    """A YAML file must be text: a binary file is refused here rather than half-decoded by the YAML reader."""
    path = Path(text)
    if path.is_file():
        try:
            path.read_bytes().decode("utf-8")
        except OSError as error:
            raise argparse.ArgumentTypeError(f"cannot read {path}: {error.strerror or error}") from None
        except UnicodeDecodeError:
            raise argparse.ArgumentTypeError(f"{path} is not a YAML file (it is not UTF-8 text)") from None
    return path


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="digital-human",
        description="A talking avatar that listens, thinks and answers out loud - on an ordinary CPU.",
    )
    p.add_argument("--config", type=_config_file, help="YAML file overriding configs/default.yaml")
    p.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks of internal errors)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("render", help="record a reply: the avatar speaks text, a script or an audio file into an MP4")
    r.add_argument("--avatar", type=Path, help="portrait photo or short video (default: the configured avatar)")
    what = r.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="text to speak")
    what.add_argument("--script", type=Path, help="plain-text or Markdown script; one paragraph per spoken segment")
    what.add_argument("--audio", type=Path, help="speech recording to lip-sync (any format ffmpeg reads)")
    r.add_argument("-o", "--output", type=Path, required=True, help="output .mp4 file")
    r.add_argument("--engine", choices=["realtime", "musetalk", "latentsync"], help="renderer engine")
    r.add_argument("--tts", dest="tts_engine", choices=["piper", "kokoro", "espeak", "edge"], help="TTS engine")
    r.add_argument("--voice", help="TTS voice (see `digital-human voices`)")
    fps_list = ", ".join(str(f) for f in VALID_FPS)
    r.add_argument("--fps", type=int, choices=VALID_FPS, metavar="FPS", help=f"frames per second: {fps_list}")
    r.add_argument(
        "--size",
        type=_size,
        help="output size WIDTHxHEIGHT, each side 64-3840 px, at most 4K (default: the source's, up to 1080 px high)",
    )
    r.add_argument(
        "--face-index",
        type=_natural(99),
        help="which face to animate when the source shows several (0 = largest)",
    )
    r.add_argument(
        "--seed", type=_natural(MAX_SEED), help="seed for blinks and head motion (reproducible renders; 0 or more)"
    )

    pr = sub.add_parser("prepare", help="precompute and cache an avatar's identity features and report what was found")
    pr.add_argument("--avatar", type=Path, help="portrait photo or short video (default: the configured avatar)")
    pr.add_argument(
        "--face-index", type=_natural(99), help="which face to animate when the source shows several (0 = largest)"
    )

    v = sub.add_parser("voices", help="list the voices of a TTS engine")
    v.add_argument("--tts", dest="tts_engine", choices=["piper", "kokoro", "espeak", "edge"], help="TTS engine")

    sub.add_parser("config", help="print the effective configuration (secrets masked)")
    add_live_commands(sub)
    add_jobs_command(sub)
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags as a config overlay; flags the user did not give leave the config alone."""
    o: dict[str, dict[str, Any]] = {"avatar": {}, "renderer": {}, "tts": {}}
    if getattr(args, "avatar", None) is not None:
        o["avatar"]["source"] = str(args.avatar)
    if getattr(args, "face_index", None) is not None:
        o["avatar"]["face_index"] = args.face_index
    if getattr(args, "fps", None) is not None:
        o["avatar"]["fps"] = args.fps
    if getattr(args, "size", None) is not None:
        o["avatar"]["output_size"] = list(args.size)
    if getattr(args, "engine", None):
        o["renderer"]["engine"] = args.engine
    if getattr(args, "tts_engine", None):
        o["tts"]["engine"] = args.tts_engine
    if getattr(args, "voice", None):
        o["tts"]["voice"] = args.voice
    return {k: v for k, v in o.items() if v}


def _check_avatar(cfg: Config) -> Path:
    path = resolve_path(cfg.avatar.source)
    if not path.exists():
        raise UserError(f"avatar file not found: {cfg.avatar.source}")
    return path


def _check_output_is_new(out: Path, inputs: dict[str, Path | None]) -> None:
    """The recording replaces `out` when it is done: if `out` is one of the inputs, that input would be lost."""
    for what, path in inputs.items():
        if path is not None and out.exists() and path.exists() and os.path.samefile(out, path):
            raise UserError(f"output file {out} is the {what}: writing it would destroy it; choose another name")


def _create_tts(cfg: Config) -> TTSEngine:
    from speech.tts_select import create_tts

    return create_tts(cfg.tts)


async def _speak(tts: TTSEngine, job: Coroutine[Any, Any, RenderReport]) -> RenderReport:
    """Run a speaking job and release the voice (models, online sessions) however it ends."""
    try:
        return await job
    finally:
        await tts.aclose()


def cmd_render(cfg: Config, args: argparse.Namespace) -> None:
    from agent.progress import fraction_bar, progress_bar
    from agent.render_job import render_audio, render_speech
    from agent.renderers import check_engine, create_renderer, prepare
    from agent.script import paragraphs_from_script, paragraphs_from_text
    from streaming.recording import check_writable

    out: Path = args.output
    check_writable(out)
    if cfg.renderer.engine != "latentsync":
        check_engine(cfg)
    avatar = _check_avatar(cfg)
    _check_output_is_new(out, {"avatar source": avatar, "script": args.script, "audio file": args.audio})
    if args.text is not None:
        paragraphs = paragraphs_from_text(args.text)
    elif args.script is not None:
        paragraphs = paragraphs_from_script(args.script)
    else:
        paragraphs = None
        if not args.audio.is_file():
            raise UserError(f"audio file not found: {args.audio}")

    if paragraphs is not None:
        from speech.tts_select import check_tts_config

        check_tts_config(cfg.tts)  # a mistyped voice is reported at once, not after the avatar is prepared
    if cfg.renderer.engine == "latentsync":
        from agent.cli_jobs import render_latentsync

        audio = str(args.audio.resolve()) if paragraphs is None else None
        render_latentsync(cfg, avatar, out, args.seed, paragraphs=paragraphs, audio=audio)
        return
    # The voice model (~2 s to load) and the avatar load side by side: they need different cores.
    with ThreadPoolExecutor(max_workers=1) as pool:
        tts_loading = pool.submit(_create_tts, cfg) if paragraphs is not None else None
        with fraction_bar("preparing the avatar") as step:
            prepared, notices = prepare(cfg, avatar, step)
        tts = tts_loading.result() if tts_loading is not None else None
    for n in notices:
        print(f"note: {n}", file=sys.stderr)
    renderer = create_renderer(cfg, prepared, seed=args.seed)
    with progress_bar("rendering") as progress:
        if tts is not None and paragraphs is not None:
            report = asyncio.run(_speak(tts, render_speech(renderer, tts, paragraphs, out, progress)))
        else:
            report = render_audio(renderer, args.audio, out, progress)
    for n in report.notices:
        print(f"note: {n}", file=sys.stderr)
    print(
        f"wrote {report.path} ({report.seconds:.1f} s, {report.frames} frames at {renderer.fps} fps, "
        f"rendered in {report.elapsed:.1f} s = {report.speed:.1f}x real time)"
    )


def cmd_prepare(cfg: Config, args: argparse.Namespace) -> None:
    from agent.progress import fraction_bar
    from agent.renderers import prepare

    avatar = _check_avatar(cfg)
    with fraction_bar("preparing the avatar") as step:
        prepared, notices = prepare(cfg, avatar, step)
    for n in notices:
        print(f"note: {n}", file=sys.stderr)
    print(prepared.summary())  # type: ignore[attr-defined]


def cmd_voices(cfg: Config, args: argparse.Namespace) -> None:
    from speech.tts_select import list_voices

    for voice in list_voices(cfg.tts.engine):
        print(voice)


COMMANDS = {
    "render": cmd_render,
    "prepare": cmd_prepare,
    "voices": cmd_voices,
    "serve": cmd_serve,
    "host": cmd_host,
    "jobs": cmd_jobs,
}


def _hide_native_stderr() -> None:
    """Keep Python's stderr on the terminal but send what C/C++ libraries write to fd 2 to /dev/null.

    mediapipe's graph threads print TFLite and absl INFO/WARNING lines at start-up, asynchronously;
    users should see our one-line notes and errors only. `-v` keeps everything.
    """
    sys.stderr.flush()
    terminal = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")


_terminated = threading.Event()


def _terminate_like_ctrl_c(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (kill, systemd, docker stop) takes exactly Ctrl-C's way out, so it cleans up the same.

    It is passed to whatever handles SIGINT at that moment: while a reply is spoken that is asyncio's
    runner, which cancels the render task (so the encoder thread is waited for and the partial file
    removed); otherwise Python's default handler, which raises KeyboardInterrupt.
    """
    _terminated.set()
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored (a background job): SIGTERM must still stop the command
        raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> None:
    cfg = load_config(args.config, _overrides(args))
    if args.command == "config":
        print(dump_config(cfg), end="")
    else:
        COMMANDS[args.command](cfg, args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    if argv is None and not args.verbose:
        _hide_native_stderr()
    # Everything a user must know arrives as a "note:" or "error:" line; log records are for -v.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s"
    )
    _terminated.clear()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate_like_ctrl_c) if in_main_thread else None
    try:
        _run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        if _terminated.is_set():
            print("terminated", file=sys.stderr)
            return EXIT_TERMINATED
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `digital-human voices | head`: the reader left; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if args.verbose or os.environ.get("DH_DEBUG"):
            raise
        print(f"internal error: {exc.__class__.__name__}: {exc} (run with -v for details)", file=sys.stderr)
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
