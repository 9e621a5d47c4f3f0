"""Audio decoding and conversion at the edges: any file, rate or channel count in; mono PCM16 out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import soxr

from core.errors import UserError


def to_mono_float(samples: np.ndarray) -> np.ndarray:
    """Convert to mono float32 in [-1, 1]; 2-D input is (frames, channels), the interleaved layout.

    The layout is fixed rather than guessed from the shape: a short stereo chunk of one frame,
    (1, 2), would otherwise be read as two frames of one channel.
    """
    a = np.asarray(samples)
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    elif a.dtype == np.int32:
        a = a.astype(np.float32) / 2147483648.0
    elif a.dtype == np.uint8:
        a = (a.astype(np.float32) - 128.0) / 128.0
    else:
        a = a.astype(np.float32, copy=False)
    if a.ndim == 2:
        a = a.mean(axis=1)
    return a


def float_to_pcm16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def pcm16_to_float(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768.0


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample mono audio; keeps the dtype (int16 in, int16 out)."""
    if src_rate == dst_rate or len(samples) == 0:
        return samples
    if samples.dtype == np.int16:
        return float_to_pcm16(soxr.resample(pcm16_to_float(samples), src_rate, dst_rate))
    return soxr.resample(samples.astype(np.float32, copy=False), src_rate, dst_rate).astype(np.float32)


class StreamResampler:
    """Resamples a stream chunk by chunk without clicks at chunk borders."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._stream = None if src_rate == dst_rate else soxr.ResampleStream(src_rate, dst_rate, 1, dtype="float32")

    def process(self, pcm: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return pcm
        return float_to_pcm16(self._stream.resample_chunk(pcm16_to_float(pcm), last=last))


def iter_audio_file(path: str | Path, rate: int, chunk_seconds: float = 1.0) -> Iterator[np.ndarray]:
    """Decode any audio (or video with audio) file to mono PCM16 at `rate`, in bounded chunks.

    Memory stays constant however long the file is.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"audio file not found: {p}")
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, OSError) as exc:
        raise UserError(
            f"cannot read audio from {p}: not a recognisable audio file ({exc.__class__.__name__})"
        ) from None
    with container:
        if not container.streams.audio:
            raise UserError(f"{p} has no audio track")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        target = int(rate * chunk_seconds)
        pending: list[np.ndarray] = []
        size = 0
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    size += out.samples
                    if size >= target:
                        yield np.concatenate(pending)
                        pending, size = [], 0
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise UserError(f"cannot decode audio in {p}: the file is corrupted ({exc.__class__.__name__})") from None
        if pending:
            yield np.concatenate(pending)


def read_audio_file(path: str | Path, rate: int) -> np.ndarray:
    """Whole-file convenience for short clips (tests, ASR of one utterance)."""
    chunks = list(iter_audio_file(path, rate))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def write_wav(path: str | Path, pcm: np.ndarray, rate: int) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype=np.int16).tobytes())
