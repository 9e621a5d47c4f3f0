"""RTMP push of a live session (H.264 + AAC in FLV), so the avatar can go live on a streaming platform.

The session hands every frame to `RtmpSink.write`, which only queues it: it never waits for the
network, an encoder or a reconnection. A background thread feeds the frames to a worker process
(`streaming.rtmp_worker`, which says why it is a process) that encodes and pushes one connection.
When that connection fails or stalls, the thread starts another after an exponential backoff and
drops the frames that arrive meanwhile: a live broadcast cannot catch up on the past. Timestamps
come from each frame's `pts` (audio samples since the session started), so audio and video stay in
sync and the timeline runs on across reconnections.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from core.errors import UserError
from core.events import Frame
from streaming.rtmp_worker import HAS_VIDEO, RECORD

log = logging.getLogger(__name__)

AUDIO_BACKLOG = 4
"""Queued frames whose video was dropped keep their audio, up to this many times `max_queue_frames` in all."""
FLUSH_SECONDS = 1.0
"""How long `aclose` keeps sending what is queued (or waits for a connection under way) before it ends."""
EXIT_SECONDS = 2.0
"""How long a worker may take to end its stream (encoder tails, FLV trailer) before it is killed."""
STABLE_SECONDS = 10.0
"""A connection that carried frames this long resets the backoff to its minimum."""
POLL_SECONDS = 0.1
"""Longest wait of the background thread before it looks at the sink and the worker again."""
STALLED = -14
"""A worker's exit status when its own alarm (SIGALRM) ended a network call that did not return."""
MIN_KEY_LENGTH = 6
"""Stream keys at least this long are also masked where they appear alone (shorter ones would mangle text)."""
_SOURCE_ROOT = str(Path(__file__).resolve().parent.parent)


def check_url(url: str) -> str:
    """Refuse what cannot be an RTMP ingest before anything starts; returns the URL unchanged."""
    shape = "expected rtmp://host[:port]/app/stream-key (or rtmps://)"
    if any(c.isspace() or not c.isprintable() for c in url):
        raise UserError(f"RTMP URL contains spaces or control characters; {shape}")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("rtmp", "rtmps"):
        raise UserError(f"not an RTMP URL: {mask_url(url)!r}; {shape}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if not parts.hostname or port == 0:
        raise UserError(f"RTMP URL {mask_url(url)!r} has no valid host or port; {shape}")
    if len([p for p in parts.path.split("/") if p]) < 2:
        raise UserError(f"RTMP URL {mask_url(url)!r} needs an app and a stream key; {shape}")
    return url


def mask_url(url: str) -> str:
    """The URL without its stream key (the last path segment), query or credentials, for logs and stats."""
    parts = urlsplit(url)
    head, _, key = parts.path.rpartition("/")
    path = f"{head}/***" if key and head else parts.path
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{path}"


@dataclass(slots=True)
class _Item:
    pts: int
    image: np.ndarray | None
    audio: np.ndarray


class RtmpSink:
    def __init__(
        self,
        url: str,
        fps: int,
        size: tuple[int, int],
        sample_rate: int,
        *,
        max_queue_frames: int = 50,
        reconnect_backoff: tuple[float, float] = (1.0, 30.0),
        stall_seconds: float = 10.0,
        bitrate: int | None = None,
    ) -> None:
        """`stall_seconds`: a connection that cannot be opened, or accepts nothing, for this long is given up.
        `bitrate` caps the video in bit/s (default: streaming.video_codec's cap for the size)."""
        self.url = check_url(url)
        if fps <= 0 or sample_rate % fps:
            raise UserError(f"fps {fps} must divide the sample rate {sample_rate}")
        if max_queue_frames < 1:
            raise UserError(f"max_queue_frames must be at least 1, got {max_queue_frames}")
        if not 0 < reconnect_backoff[0] <= reconnect_backoff[1]:
            raise UserError(f"reconnect backoff {reconnect_backoff} must be (min, max) seconds, 0 < min <= max")
        self.size = (int(size[0]), int(size[1]))
        self.samples_per_frame = sample_rate // fps
        self.max_queue_frames = max_queue_frames
        self.backoff = reconnect_backoff
        self.stall_seconds = stall_seconds
        self.masked_url = mask_url(url)
        settings = {"url": url, "fps": fps, "width": self.size[0], "height": self.size[1]}
        settings |= {"sample_rate": sample_rate, "bitrate": bitrate, "stall_seconds": stall_seconds}
        self._settings = json.dumps(settings).encode() + b"\n"
        self._queue: deque[_Item] = deque()
        self._with_video: deque[_Item] = deque()
        """The queued items still carrying an image, oldest first: the ones to strip when the queue is full."""
        self._cond = threading.Condition()
        self._closing = False
        self._flush_until = 0.0
        self._last_pts: int | None = None
        self._stats: dict[str, object] = {
            "frames_sent": 0,
            "frames_dropped": 0,
            "audio_frames_dropped": 0,
            "reconnects": 0,
            "connected": False,
            "last_error": None,
        }
        self._thread = threading.Thread(target=self._run, name=f"rtmp {self.masked_url}", daemon=True)
        self._thread.start()

    # ---- the session's side: nothing here waits for more than a short lock ----

    def write(self, frame: Frame, turn: int, pts: int) -> None:
        """Queue a frame (its image and exactly its audio) at `pts` samples since the session started.

        The sink keeps references to the frame's arrays: they must not be modified afterwards.
        When `max_queue_frames` images are waiting, the oldest loses its image (its audio stays).
        """
        width, height = self.size
        if frame.image.shape != (height, width, 3) or frame.image.dtype != np.uint8:
            got = f"{frame.image.shape} {frame.image.dtype}"
            raise ValueError(f"expected a {width}×{height} BGR uint8 image, got {got}")
        if frame.audio.shape != (self.samples_per_frame,) or frame.audio.dtype != np.int16:
            raise ValueError(f"expected {self.samples_per_frame} int16 samples, got {frame.audio.shape}")
        item = _Item(pts, np.ascontiguousarray(frame.image), np.ascontiguousarray(frame.audio))
        with self._cond:
            if self._closing:
                raise RuntimeError("RtmpSink.write after aclose")
            if self._last_pts is not None and pts < self._last_pts + self.samples_per_frame:
                raise ValueError(f"pts {pts} overlaps the previous frame at {self._last_pts}")
            self._last_pts = pts
            self._queue.append(item)
            self._with_video.append(item)
            while len(self._with_video) > self.max_queue_frames:
                self._with_video.popleft().image = None
                self._stats["frames_dropped"] += 1  # type: ignore[operator]
            while len(self._queue) > self.max_queue_frames * AUDIO_BACKLOG:
                self._discard_oldest()
            self._cond.notify()

    def drop_turn(self, turn: int) -> None:
        """Interrupt hint, deliberately ignored: a broadcast keeps its timeline, what is queued is at most
        a few frames while the ingest keeps up, and the session's next frames show the interruption."""

    @property
    def stats(self) -> dict[str, object]:
        with self._cond:
            return dict(self._stats, queued_frames=len(self._with_video))

    async def aclose(self) -> None:
        """Send what is queued for up to FLUSH_SECONDS, end the stream cleanly, and join the thread."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._flush_until = time.monotonic() + FLUSH_SECONDS
            self._cond.notify_all()
        await asyncio.to_thread(self._thread.join)

    # ---- the background thread ----

    def _discard_oldest(self) -> None:
        """Drop the oldest queued item whole (the lock is held)."""
        item = self._queue.popleft()
        if item.image is not None:
            self._with_video.popleft()
            self._stats["frames_dropped"] += 1  # type: ignore[operator]
        self._stats["audio_frames_dropped"] += 1  # type: ignore[operator]

    def _take(self) -> _Item | None:
        with self._cond:
            if not self._queue and not self._closing:
                self._cond.wait(POLL_SECONDS)
            if not self._queue:
                return None
            item = self._queue.popleft()
            if item.image is not None:
                self._with_video.popleft()
            return item

    def _run(self) -> None:
        delay = self.backoff[0]
        ever_connected = False
        while True:
            reason, carried = self._connection(ever_connected)
            ever_connected = ever_connected or carried > 0
            with self._cond:
                self._stats["connected"] = False
                if reason is not None:
                    self._stats["last_error"] = reason
                if self._closing:
                    while self._queue:
                        self._discard_oldest()
                    return
            if carried >= STABLE_SECONDS:
                delay = self.backoff[0]
            log.warning("RTMP %s: %s; retrying in %.1f s", self.masked_url, reason, delay)
            self._back_off(delay)
            delay = min(delay * 2, self.backoff[1])

    def _back_off(self, seconds: float) -> None:
        """Wait, dropping whatever arrives meanwhile: it could not be sent in time anyway."""
        until = time.monotonic() + seconds
        with self._cond:
            while not self._closing and (left := until - time.monotonic()) > 0:
                self._cond.wait(left)
                while self._queue:
                    self._discard_oldest()

    def _connection(self, reconnecting: bool) -> tuple[str | None, float]:
        """One worker process, fed until it fails or stalls, or the sink closes.

        Returns why it ended (None: the sink closed) and how long it carried frames.
        """
        try:
            link = _WorkerLink(self._settings, self.stall_seconds)
        except OSError as exc:
            return f"cannot start the RTMP worker process: {exc}", 0.0
        connected_at: float | None = None
        try:
            while True:
                link.pump()
                with self._cond:
                    if link.acks and connected_at is None:
                        connected_at = time.monotonic()
                        self._stats["connected"] = True
                        self._stats["reconnects"] += int(reconnecting)  # type: ignore[operator]
                        log.info("RTMP %s: %s", self.masked_url, "reconnected" if reconnecting else "connected")
                    self._stats["frames_sent"] += link.take_acks()  # type: ignore[operator]
                    closing = self._closing
                    late = time.monotonic() > self._flush_until
                    flushed = not self._queue and not link.busy
                if link.failed:
                    return self._redact(link.reason()), _since(connected_at)
                if closing and connected_at is None and late:
                    return None, 0.0
                if closing and connected_at is not None and (flushed or late):
                    link.finish(EXIT_SECONDS)
                    return None, _since(connected_at)
                if not link.busy and (item := self._take()) is not None:
                    link.send(item)
        finally:
            link.kill()
            with self._cond:
                self._stats["frames_sent"] += link.take_acks()  # type: ignore[operator]
                # What a lost worker never confirmed is gone with it.
                self._stats["frames_dropped"] += link.sent_video - link.acks  # type: ignore[operator]
                self._stats["audio_frames_dropped"] += link.sent - link.done  # type: ignore[operator]

    def _redact(self, text: str) -> str:
        """FFmpeg's messages may quote the URL; the stream key must not reach logs or stats."""
        text = text.replace(f": '{self.url}'", "").replace(self.url, self.masked_url)
        key = urlsplit(self.url).path.rpartition("/")[2]
        return text.replace(key, "***") if len(key) >= MIN_KEY_LENGTH else text


def _since(start: float | None) -> float:
    return 0.0 if start is None else time.monotonic() - start


class _WorkerLink:
    """The parent's end of one worker process: non-blocking writes of records, acknowledgements read back."""

    def __init__(self, settings: bytes, stall_seconds: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streaming.rtmp_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=_SOURCE_ROOT,  # `-m` finds the package from a source checkout as well as when installed
        )
        self.stall_seconds = stall_seconds
        self._fds = {name: getattr(self.process, name).fileno() for name in ("stdin", "stdout", "stderr")}
        for fd in self._fds.values():
            os.set_blocking(fd, False)
        with contextlib.suppress(OSError):  # fewer wake-ups per frame (a 512² frame is 786 KB); Linux only
            fcntl.fcntl(self._fds["stdin"], fcntl.F_SETPIPE_SZ, 1 << 20)
        self._poller = select.poll()
        for name in ("stdout", "stderr"):
            self._poller.register(self._fds[name], select.POLLIN)
        self._pending: deque[memoryview] = deque([memoryview(settings)])
        self._progress = time.monotonic()
        self.sent = self.sent_video = 0
        """Records (and those with an image) written to the worker."""
        self.done = self.acks = 0
        """Records (and video frames) the worker has handed to the connection."""
        self._taken = 0
        self._failing = b""
        """b"!" once the worker has started its one-line reason for failing."""
        self._message = b""
        self._errors = b""
        self._broken = False

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    @property
    def failed(self) -> bool:
        stuck = self.busy and time.monotonic() - self._progress > self.stall_seconds + EXIT_SECONDS
        return self._broken or stuck or self.process.poll() is not None

    def take_acks(self) -> int:
        new, self._taken = self.acks - self._taken, self.acks
        return new

    def send(self, item: _Item) -> None:
        self.sent += 1
        self.sent_video += item.image is not None
        self._pending.append(memoryview(RECORD.pack(item.pts, HAS_VIDEO if item.image is not None else 0)))
        if item.image is not None:
            self._pending.append(memoryview(item.image).cast("B"))
        self._pending.append(memoryview(item.audio).cast("B"))

    def pump(self) -> None:
        """Write what the pipe takes now and read what the worker said, waiting at most POLL_SECONDS."""
        stdin = self._fds["stdin"]
        if self._pending and not self._broken:
            self._poller.register(stdin, select.POLLOUT)
        for fd, _ in self._poller.poll(POLL_SECONDS * 1000 if self._pending else 0):
            if fd == stdin:
                self._write()
            elif self._read(fd) == 0:
                self._poller.unregister(fd)
        with contextlib.suppress(KeyError):
            self._poller.unregister(stdin)

    def _write(self) -> None:
        try:
            while self._pending:
                written = os.write(self._fds["stdin"], self._pending[0])
                self._progress = time.monotonic()
                if written < len(self._pending[0]):
                    self._pending[0] = self._pending[0][written:]
                    return
                self._pending.popleft()
        except BlockingIOError:
            return
        except BrokenPipeError:
            self._broken = True

    def _read(self, fd: int) -> int:
        """Read one chunk; returns its size, 0 at end of file, -1 when nothing is there yet."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return -1
        if fd == self._fds["stderr"]:
            self._errors = (self._errors + data)[-4000:]
        elif self._failing:
            self._message = (self._message + data)[:4000]
        else:
            acks, self._failing, self._message = data.partition(b"!")
            self.acks += acks.count(b"+")
            self.done += len(acks)
            self._progress = time.monotonic()
        return len(data)

    def finish(self, seconds: float) -> None:
        """End the stream: EOF makes the worker flush its encoders and close the connection cleanly."""
        until = time.monotonic() + seconds
        while self._pending and not self.failed and time.monotonic() < until:
            self.pump()
        with contextlib.suppress(OSError):
            self.process.stdin.close()  # type: ignore[union-attr]
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(max(until - time.monotonic(), 0.1))
        self._drain()

    def reason(self) -> str:
        """Why the worker ended, in one line."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(EXIT_SECONDS)  # a broken pipe comes a moment before the exit
        if self.process.poll() is None:
            self.kill()
            return f"the ingest accepted nothing for {self.stall_seconds:g} s"
        self._drain()
        if self._message:
            return self._message.decode(errors="replace").strip()
        if self.process.returncode == STALLED:
            return f"the ingest accepted nothing for {self.stall_seconds:g} s"
        lines = self._errors.decode(errors="replace").strip().splitlines()
        return f"the RTMP worker exited with status {self.process.returncode}" + (f": {lines[-1]}" if lines else "")

    def _drain(self) -> None:
        for fd, _ in self._poller.poll(0):
            while self._read(fd) > 0:
                pass

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(EXIT_SECONDS)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError):
                pipe.close()  # type: ignore[union-attr]
