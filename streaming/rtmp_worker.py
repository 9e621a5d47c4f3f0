"""One RTMP connection in its own process: reads a session's frames on stdin, encodes H.264 + AAC, pushes FLV.

Why a process and not a thread: PyAV opens an output URL (TCP connect, RTMP handshake, publish)
without releasing the GIL and with no timeout, so a slow or silent ingest froze the whole server
for as long as it stayed silent (measured here; PyAV issue #2400). In a process of its own, a
hang freezes only this connection, which `streaming.rtmp.RtmpSink` or the alarm below ends.

Protocol with the parent. stdin starts with one line of JSON settings (the URL holds the stream key,
so it is not put on the command line, where any local user could read it), then carries one record per
frame: `RECORD` (pts in samples since the session started, flags), the BGR image when `HAS_VIDEO` is
set, then the frame's int16 audio.
stdout carries one byte per record once it has been handed to the connection (`+` with video,
`-` audio only), or `!` and a one-line reason before a failed exit. EOF on stdin = finish cleanly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import struct
import sys
from collections.abc import Iterator
from fractions import Fraction
from typing import BinaryIO

import av
import numpy as np

from streaming.video_codec import default_bitrate, even_size, x264_options, yuv420_frame

RECORD = struct.Struct("<qB")
HAS_VIDEO = 1
AUDIO_RATE = 48_000
"""What streaming platforms ask for (44.1 or 48 kHz AAC); the session's 24 kHz is resampled once, here."""
AUDIO_BITRATE = 128_000
AAC_PRIMING = 1024
"""Samples (at AUDIO_RATE) FFmpeg's AAC encoder emits before the first input sample. Every timestamp is
shifted by this much, so the first packet is at 0 rather than negative and each reconnection keeps one timeline."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Kill this process if the block has not returned in time: a blocked native call holds the GIL,
    so no Python handler could run, but SIGALRM's default action needs none."""
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


class FlvPush:
    def __init__(self, url: str, fps: int, size: tuple[int, int], sample_rate: int, bitrate: int | None) -> None:
        self.sample_rate = sample_rate
        self.width, self.height = even_size(*size)
        self.offset = math.ceil(AAC_PRIMING * sample_rate / AUDIO_RATE)
        self.container = av.open(url, mode="w", format="flv", options={"flvflags": "no_duration_filesize"})
        self.video = self.container.add_stream("libx264", rate=fps)
        self.video.width, self.video.height, self.video.pix_fmt = self.width, self.height, "yuv420p"
        self.video.codec_context.time_base = Fraction(1, sample_rate)
        self.video.options = x264_options(
            self.width, self.height, fps, bitrate or default_bitrate(self.width, self.height, fps), annexb=False
        )
        self.audio = self.container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        self.audio.bit_rate = AUDIO_BITRATE
        self.next_audio: int | None = None

    def write(self, pts: int, image: np.ndarray | None, pcm: np.ndarray) -> None:
        if image is not None:
            frame = yuv420_frame(image, self.width, self.height)
            frame.pts = pts + self.offset
            frame.time_base = Fraction(1, self.sample_rate)
            self.container.mux(self.video.encode(frame))
        if self.next_audio is not None and pts > self.next_audio:
            # Frames dropped whole upstream: silence keeps the audio clock on the session's timeline.
            self._audio(self.next_audio, np.zeros(pts - self.next_audio, np.int16))
        self._audio(pts, pcm)

    def _audio(self, pts: int, pcm: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = pts + self.offset
        frame.time_base = Fraction(1, self.sample_rate)
        self.container.mux(self.audio.encode(frame))
        self.next_audio = pts + len(pcm)

    def close(self) -> None:
        self.container.mux(self.video.encode(None))
        self.container.mux(self.audio.encode(None))
        self.container.close()


def read_records(
    stream: BinaryIO, size: tuple[int, int], samples: int
) -> Iterator[tuple[int, np.ndarray | None, np.ndarray]]:
    width, height = size
    while header := stream.read(RECORD.size):
        if len(header) < RECORD.size:
            return
        pts, flags = RECORD.unpack(header)
        image = None
        if flags & HAS_VIDEO:
            image = np.frombuffer(stream.read(width * height * 3), np.uint8)
            if image.size < width * height * 3:
                return
            image = image.reshape(height, width, 3)
        pcm = np.frombuffer(stream.read(samples * 2), np.int16)
        if len(pcm) < samples:
            return
        yield pts, image, pcm


class FirstError(logging.Handler):
    """Keeps FFmpeg's first error: the cause ("Failed to resolve hostname …"), where the exception that
    follows often says only "Input/output error"."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.message is None:
            self.message = record.getMessage().strip()


def main() -> int:
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    # Ctrl-C in a terminal reaches the whole process group: the server, not the worker, decides when the
    # stream ends (EOF on stdin), so that it ends cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    first_error = FirstError()
    logging.getLogger("libav").addHandler(first_error)
    av.logging.set_level(av.logging.ERROR)
    cfg = json.loads(sys.stdin.buffer.readline())
    size = (cfg["width"], cfg["height"])
    stall = cfg["stall_seconds"]
    out = sys.stdout.buffer
    try:
        push = FlvPush(cfg["url"], cfg["fps"], size, cfg["sample_rate"], cfg["bitrate"])
        for pts, image, pcm in read_records(sys.stdin.buffer, size, cfg["sample_rate"] // cfg["fps"]):
            with deadline(stall):
                push.write(pts, image, pcm)
            out.write(b"+" if image is not None else b"-")
            out.flush()
        with deadline(stall):
            push.close()
    except (OSError, av.error.FFmpegError, ValueError) as exc:
        with contextlib.suppress(OSError):  # the parent may be gone too
            reason = first_error.message or f"{exc.__class__.__name__}: {exc}"
            out.write(b"!" + reason.replace("\n", " ").encode() + b"\n")
            out.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
