"""Recorded replies through the user's own LatentSync installation, run as an external process.

LatentSync (latent diffusion, minutes per clip on a GPU) is far too large to reimplement: we drive its
inference CLI. Its contract, which this module honours and `tests/latentsync_standin.py` imitates:
`python -m scripts.inference --unet_config_path C --inference_ckpt_path K --video_path V --audio_path A
--video_out_path O [--inference_steps N] [--guidance_scale G] [--enable_deepcache] [--seed S]`, run with the
checkout as working directory (it finds configs, whisper and face models by relative paths); the video needs
a face in every frame; it wipes `./temp` in its working directory; progress is tqdm bars on stderr.

So each job gets a private view of the checkout (symlinks to everything but `temp`), a lock per checkout
(one GPU job at a time, across processes), its own process group (a timeout or a cancellation kills
LatentSync and its ffmpeg children together), and its result is re-muxed with our original audio.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avatar.base import Renderer
from core.config import LatentSyncConfig
from core.errors import UserError

TEMPLATE_FPS = 25
"""LatentSync re-encodes every input to 25 fps: the template is made at that rate so no frame is resampled."""
KILL_GRACE_S = 5.0
"""After SIGTERM to the process group, how long LatentSync may take to exit before SIGKILL."""
POLL_S = 0.2
LOG_TAIL_LINES = 40

_TQDM = re.compile(r"^(?P<desc>[^|]*?):?\s*\d+%\|.*?\|\s*(?P<n>\d+)/(?P<total>\d+)")
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*")


class LatentSyncUnavailable(UserError):
    """The installation is missing or incomplete: one line naming what is missing."""


class LatentSyncFailed(Exception):
    """LatentSync ran and failed (non-zero exit, no output, timeout): the message is one line for the user."""


class LatentSyncCancelled(Exception):
    """The job was cancelled while LatentSync ran; its whole process group is gone."""


@dataclass(frozen=True)
class Installation:
    checkout: Path
    python: Path


def check_installation(cfg: LatentSyncConfig) -> Installation:
    """Everything the CLI contract needs, checked before any work, so a mistake is named in one line."""
    if cfg.checkout is None:
        raise LatentSyncUnavailable("LatentSync is not set up: set latentsync.checkout (DH_LATENTSYNC__CHECKOUT)")
    checkout = cfg.checkout.expanduser().resolve()
    if not (checkout / "scripts" / "inference.py").is_file():
        raise LatentSyncUnavailable(f"{checkout} is not a LatentSync checkout (no scripts/inference.py)")
    if cfg.python is None:
        raise LatentSyncUnavailable("LatentSync's Python is not set: set latentsync.python to its environment's python")
    python = _python(cfg.python, checkout)
    if python.is_dir() or not os.access(python, os.X_OK):
        raise LatentSyncUnavailable(f"LatentSync's Python is not an executable file: {python}")
    for what, relative in (("UNet config", cfg.unet_config), ("checkpoint", cfg.checkpoint)):
        if not (checkout / relative).is_file():
            raise LatentSyncUnavailable(
                f"LatentSync {what} not found: {checkout / relative} (download it as LatentSync's README says)"
            )
    return Installation(checkout, python)


def _python(configured: Path, checkout: Path) -> Path:
    """A bare name ("python3") is looked up on PATH; a relative path is the checkout's (e.g. `.venv/bin/python`)."""
    if configured.is_absolute() or str(configured).startswith("~"):
        return configured.expanduser()
    if len(configured.parts) == 1:
        found = shutil.which(str(configured))
        return Path(found) if found else checkout / configured
    return checkout / configured


def inference_command(cfg: LatentSyncConfig, python: Path, video: Path, audio: Path, out: Path) -> list[str]:
    argv = [
        str(python),
        "-m",
        "scripts.inference",
        "--unet_config_path",
        cfg.unet_config,
        "--inference_ckpt_path",
        cfg.checkpoint,
        "--video_path",
        str(video),
        "--audio_path",
        str(audio),
        "--video_out_path",
        str(out),
        "--inference_steps",
        str(cfg.steps),
        "--guidance_scale",
        str(cfg.guidance),
    ]
    if cfg.deepcache:
        argv.append("--enable_deepcache")
    if cfg.seed is not None:
        argv += ["--seed", str(cfg.seed)]
    return argv


def write_template(renderer: Renderer, frames: int, path: Path) -> None:
    """The avatar idling for `frames` frames, video only: a face in every frame, as LatentSync requires.

    The CPU renderer fed silence draws exactly that: a photo's idle motion (blinks, breathing, small head
    motion) or a video avatar's own loop. Its lips stay closed; LatentSync repaints the lower face anyway.
    """
    width, height = renderer.frame_size
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=renderer.fps)
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "16"}
        silence = np.zeros(renderer.samples_per_frame, np.int16)
        for index in range(frames):
            renderer.feed(silence)
            image = renderer.render_next().image[: stream.height, : stream.width]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            frame.pts, frame.time_base = index, Fraction(1, renderer.fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def private_checkout(checkout: Path, workdir: Path) -> Path:
    """A view of the checkout whose `./temp` is the job's own: LatentSync wipes `./temp` on every run."""
    view = workdir / "checkout"
    view.mkdir(parents=True)
    for entry in checkout.iterdir():
        if entry.name != "temp":
            (view / entry.name).symlink_to(entry)
    (view / "temp").mkdir()
    return view


@contextlib.contextmanager
def checkout_lock(
    checkout: Path, lock_dir: Path, cancelled: Callable[[], bool], on_busy: Callable[[], None] = lambda: None
) -> Iterator[None]:
    """One job at a time per checkout, across processes (a CLI render and a server share one GPU).

    An flock is released by the kernel when its holder dies, so a crashed job never blocks the next one.
    `on_busy` is called once if another job holds it, so the user knows why nothing moves.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(str(checkout).encode()).hexdigest()[:16]
    told = False
    with open(lock_dir / f"latentsync-{name}.lock", "w") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancelled():
                    raise LatentSyncCancelled from None
                if not told:
                    on_busy()
                    told = True
                time.sleep(POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ProgressParser:
    """Share of the model run done, from LatentSync's tqdm bars: the outer "Doing inference..." bar counts
    16-frame segments, an inner diffusers bar per segment counts its denoising steps.

    tqdm prints at most every 0.1 s, so the outer bar lags: finished inner bars are counted too (a bar's last
    state is always printed when it closes), and the share never goes back.
    """

    def __init__(self) -> None:
        self.segments = 0
        self.outer_done = 0
        self.inner_done = 0
        self.step = (0, 0)
        self.share = 0.0

    def feed(self, line: str) -> float | None:
        match = _TQDM.match(line.strip())
        if match is None:
            return None
        n, total, desc = int(match["n"]), int(match["total"]), match["desc"]
        if total <= 0:
            return None
        if desc.startswith("Doing inference"):
            self.segments, self.outer_done = total, max(self.outer_done, n)
        elif desc.startswith("Sample frames") and self.segments:
            if n == total and self.step[0] != total:
                self.inner_done += 1
            self.step = (n, total)
        else:
            return None
        current = self.step[0] / self.step[1] if self.step[1] and self.step[0] < self.step[1] else 0.0
        done = max(self.outer_done, self.inner_done)
        self.share = max(self.share, min(1.0, (done + current) / self.segments))
        return self.share


class _OutputReader(threading.Thread):
    """Reads the merged stdout/stderr: progress to the callback, everything to the log file, a tail kept."""

    def __init__(self, stream: int, log_path: Path, on_progress: Callable[[float], None]) -> None:
        super().__init__(daemon=True, name="latentsync-output")
        self.fd = stream
        self.log_path = log_path
        self.on_progress = on_progress
        self.parser = ProgressParser()
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)

    def run(self) -> None:
        pending = ""
        with open(self.log_path, "ab") as log:
            while chunk := os.read(self.fd, 65536):
                log.write(chunk)
                log.flush()
                pending += chunk.decode("utf-8", "replace")
                *lines, pending = re.split(r"[\r\n]", pending)
                for line in lines:
                    self._line(line)
        self._line(pending)
        os.close(self.fd)

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        share = self.parser.feed(line)
        if share is not None:
            self.on_progress(share)
        else:
            self.tail.append(line.rstrip())


def kill_group(pgid: int, leader: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM to the whole group (LatentSync and its ffmpeg children), SIGKILL to whatever is left.

    With our own child as `leader`, its exit ends the grace period (a dead child stays a zombie, and so keeps its
    group "alive", until it is waited for); a group left by a dead process is watched until it is empty.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline and (leader.poll() is None if leader else _group_alive(pgid)):
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def run_inference(
    argv: list[str],
    cwd: Path,
    *,
    timeout_s: float,
    cancel: threading.Event,
    on_progress: Callable[[float], None],
    on_start: Callable[[int], None] = lambda pgid: None,
    log_path: Path,
) -> None:
    """Run LatentSync in its own process group until it exits, times out or is cancelled.

    A timeout or cancellation kills the whole group; so does a normal exit, for any child it left behind.
    """
    started = time.monotonic()
    read_fd, write_fd = os.pipe()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd, start_new_session=True, env=env
        )
    except OSError as exc:
        os.close(read_fd)
        raise LatentSyncFailed(f"cannot start LatentSync ({argv[0]}): {exc.strerror or exc}") from None
    finally:
        os.close(write_fd)
    reader = _OutputReader(read_fd, log_path, on_progress)
    reader.start()
    on_start(proc.pid)
    try:
        while proc.poll() is None:
            if cancel.wait(POLL_S):
                raise LatentSyncCancelled
            if time.monotonic() - started > timeout_s:
                raise LatentSyncFailed(f"LatentSync did not finish within {timeout_s:g} s (latentsync.timeout_s)")
    finally:
        kill_group(proc.pid, proc)
        proc.wait()
        reader.join(KILL_GRACE_S)  # a child that left the group may hold the pipe open: its output is not needed
    tail = list(reader.tail)
    if cancel.is_set():  # killed from outside (a shutdown) as it was being cancelled: not a model failure
        raise LatentSyncCancelled
    if proc.returncode != 0:
        raise LatentSyncFailed(f"LatentSync failed (exit status {proc.returncode}): {_error_summary(tail)}")


def _error_summary(tail: list[str]) -> str:
    """The exception line of a Python traceback (e.g. "torch.OutOfMemoryError: CUDA out of memory"), or the
    last line it printed."""
    errors = [line.strip() for line in tail if _ERROR_LINE.match(line.strip())]
    if errors:
        return errors[-1][:300]
    return tail[-1].strip()[:300] if tail else "it printed nothing"


def mux_audio(video: Path, audio: Path, out: Path) -> None:
    """LatentSync's picture with our original audio (it resamples audio to 16 kHz and re-encodes it).

    The video packets are copied, not re-encoded; the file appears under its name only when complete.
    """
    part = out.with_name(f".{out.name}.part")
    try:
        with av.open(str(video)) as source, av.open(str(audio)) as sound, av.open(str(part), "w", format="mp4") as dst:
            if not source.streams.video:
                raise LatentSyncFailed(f"LatentSync's output {video.name} has no video")
            video_in = source.streams.video[0]
            video_out = dst.add_stream_from_template(video_in)
            rate = sound.streams.audio[0].rate
            audio_out = dst.add_stream("aac", rate=rate, layout="mono")
            audio_out.time_base = Fraction(1, rate)
            for packet in source.demux(video_in):
                if packet.dts is not None:
                    packet.stream = video_out
                    dst.mux(packet)
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
            samples = 0
            for frame in sound.decode(audio=0):
                for out_frame in resampler.resample(frame):
                    out_frame.pts, out_frame.time_base = samples, Fraction(1, rate)
                    samples += out_frame.samples
                    for packet in audio_out.encode(out_frame):
                        dst.mux(packet)
            for packet in audio_out.encode(None):
                dst.mux(packet)
        os.replace(part, out)
    except av.error.FFmpegError as exc:
        raise LatentSyncFailed(f"cannot read LatentSync's output {video.name}: {exc}") from None
    finally:
        part.unlink(missing_ok=True)
