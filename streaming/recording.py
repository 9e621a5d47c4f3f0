"""MP4 (H.264 + AAC) recording of rendered frames, written atomically.

Each `Frame` carries exactly its own audio, so the writer muxes both from one stream of frames:
audio and video cannot drift. The file appears under its final name only when complete.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from core.errors import UserError
from core.events import Frame


def check_writable(path: Path) -> None:
    """Fail before any work is done if the output cannot be written."""
    parent = path.parent
    if path.is_dir():
        raise UserError(f"output path {path} is a directory; give a file name such as {path / 'reply.mp4'}")
    if path.suffix.lower() != ".mp4":
        raise UserError(f"output file {path} must end in .mp4")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {path}: folder {parent} is not writable")


class Mp4Writer:
    """Writes frames to a temporary file beside `path` and renames it into place on success."""

    def __init__(self, path: str | Path, fps: int, size: tuple[int, int], sample_rate: int, crf: int = 20) -> None:
        self.path = Path(path)
        check_writable(self.path)
        self.fps = fps
        self.sample_rate = sample_rate
        self.frames_written = 0
        self.samples_written = 0
        # A unique name beside the target (same filesystem, so the final rename is atomic), created by
        # the muxer itself so the finished file gets the user's normal permissions (umask), not 0600.
        self._tmp = self.path.with_name(f".{self.path.stem}.{secrets.token_hex(6)}.mp4.part")
        width, height = size
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        self._video = self._container.add_stream("libx264", rate=fps)
        self._video.width = width - width % 2
        self._video.height = height - height % 2
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"preset": "veryfast", "crf": str(crf), "tune": "stillimage"}
        self._audio = self._container.add_stream("aac", rate=sample_rate, layout="mono")
        self._audio.time_base = Fraction(1, sample_rate)

    def write(self, frame: Frame) -> None:
        try:
            self._write(frame)
        except (OSError, av.error.FFmpegError) as exc:
            raise UserError(f"cannot write {self.path}: {exc.__class__.__name__}: {exc}") from None

    def _write(self, frame: Frame) -> None:
        image = frame.image
        if image.shape[1] != self._video.width or image.shape[0] != self._video.height:
            image = image[: self._video.height, : self._video.width]
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        vf.pts = self.frames_written
        vf.time_base = Fraction(1, self.fps)
        for packet in self._video.encode(vf):
            self._container.mux(packet)
        self.frames_written += 1
        self._write_audio(frame.audio)

    def _write_audio(self, pcm: np.ndarray) -> None:
        af = av.AudioFrame.from_ndarray(np.asarray(pcm, np.int16).reshape(1, -1), format="s16", layout="mono")
        af.sample_rate = self.sample_rate
        af.pts = self.samples_written
        af.time_base = Fraction(1, self.sample_rate)
        self.samples_written += len(pcm)
        for packet in self._audio.encode(af):
            self._container.mux(packet)

    def close(self) -> Path:
        """Flush encoders and move the finished file into place (or leave nothing, if that fails)."""
        try:
            for packet in self._video.encode(None):
                self._container.mux(packet)
            for packet in self._audio.encode(None):
                self._container.mux(packet)
            self._container.close()
            os.replace(self._tmp, self.path)
        except (OSError, av.error.FFmpegError) as exc:
            self.abort()
            raise UserError(f"cannot finish writing {self.path}: {exc.__class__.__name__}: {exc}") from None
        return self.path

    def abort(self) -> None:
        """Drop the partial file: a failed render leaves nothing behind."""
        with contextlib.suppress(av.error.FFmpegError, ValueError, OSError):
            self._container.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def probe_durations(path: str | Path) -> tuple[float, float]:
    """(video seconds, audio seconds) as a player sees them, for tests and the render report."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0]
        vdur = float(v.duration * v.time_base) if v.duration else v.frames / float(v.average_rate)
        adur = float(a.duration * a.time_base) if a.duration else 0.0
        return vdur, adur
