"""Per-session video encoders for the live stream: H.264 (WebCodecs in the page) or JPEG (the fallback).

Plain synchronous code with no shared state: each session owns one encoder and calls it from a
worker thread (libx264, PyAV and OpenCV release the GIL while they work). The H.264 encoder is
set up for a live conversation rather than for a file: every frame in gives exactly one access
unit out at once (no B-frames, no lookahead, one thread), keyframes come on request (a turn
start, a client that lost its decoder) and at a regular interval, and SPS/PPS ride in every
keyframe, so a decoder can start from any keyframe with nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from core.errors import UserError

CODECS = ("h264", "jpeg")
H264_CRF = 23
"""Constant quality: on the 512² talking head ~4 KB per frame and PSNR ~36 dB, above JPEG q80 (~46 KB, ~35 dB)."""
MAX_BITS_PER_PIXEL = 0.3
"""Default VBV cap (bits per pixel per second of video): a ceiling for noisy photos, well above what CRF
spends on a talking head (0.12 at 512², 0.06 at 1080p) so that it only shapes bursts: at 0.2 a keyframe
requested right after another fell to 30 dB PSNR; at 0.3 (2 Mbit/s at 512², 25 fps) it stays above 32 dB."""
KEYFRAME_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class EncodedVideo:
    data: bytes
    """H.264: one Annex B access unit; JPEG: the file bytes."""
    keyframe: bool


class VideoEncoder(ABC):
    """Turns BGR frames of one fixed size into what the page decodes; one instance per session."""

    codec: str
    codec_string: str
    """What the browser needs: the WebCodecs codec string (e.g. "avc1.42C01E"), or "jpeg"."""
    width: int
    height: int
    """The size the client will decode (H.264 pads odd sizes by one pixel)."""

    @abstractmethod
    def encode(self, image_bgr: np.ndarray, *, keyframe: bool = False) -> EncodedVideo: ...

    @abstractmethod
    def close(self) -> None:
        """Release native encoder state now rather than at garbage collection; the encoder is done."""


class JpegEncoder(VideoEncoder):
    codec = "jpeg"
    codec_string = "jpeg"

    def __init__(self, width: int, height: int, quality: int) -> None:
        self.width, self.height = width, height
        self._params = [cv2.IMWRITE_JPEG_QUALITY, quality]

    def encode(self, image_bgr: np.ndarray, *, keyframe: bool = False) -> EncodedVideo:
        _check_image(image_bgr, self.width, self.height)
        ok, data = cv2.imencode(".jpg", image_bgr, self._params)
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG frame")
        return EncodedVideo(data.tobytes(), keyframe=True)

    def close(self) -> None:
        """Nothing native is held between frames."""


@dataclass(frozen=True, slots=True)
class _Level:
    idc: int
    max_mbps: int
    """Macroblocks per second."""
    max_fs: int
    """Macroblocks per frame (also bounds each dimension to sqrt(8 × max_fs) macroblocks)."""
    max_kbps: int
    """Baseline/main profile bitrate ceiling."""


_LEVELS = (  # H.264 Table A-1, from 3.0: every browser decodes it and a level is only a ceiling
    _Level(30, 40_500, 1_620, 10_000),
    _Level(31, 108_000, 3_600, 14_000),
    _Level(32, 216_000, 5_120, 20_000),
    _Level(40, 245_760, 8_192, 20_000),
    _Level(41, 245_760, 8_192, 50_000),
    _Level(42, 522_240, 8_704, 50_000),
    _Level(50, 589_824, 22_080, 135_000),
    _Level(51, 983_040, 36_864, 240_000),
    _Level(52, 2_073_600, 36_864, 240_000),
)
BASELINE_PROFILE_IDC = 0x42
BASELINE_CONSTRAINTS = 0xC0
"""constraint_set0 and constraint_set1, as libx264 writes them for baseline (decodable by main-profile decoders)."""


def h264_level(width: int, height: int, fps: int, max_kbps: int) -> int:
    """The smallest level_idc whose limits hold this stream, so the codec string names a decoder that can play it."""
    mb_w, mb_h = -(-width // 16), -(-height // 16)
    for level in _LEVELS:
        side = (8 * level.max_fs) ** 0.5
        if (
            mb_w * mb_h <= level.max_fs
            and mb_w <= side
            and mb_h <= side
            and mb_w * mb_h * fps <= level.max_mbps
            and max_kbps <= level.max_kbps
        ):
            return level.idc
    raise UserError(
        f"{width}×{height} at {fps} fps is beyond H.264 level 5.2 (e.g. 4096×2304 at 30 fps): "
        "use a smaller output size, a lower fps or the jpeg codec"
    )


def default_bitrate(width: int, height: int, fps: int) -> int:
    return int(width * height * fps * MAX_BITS_PER_PIXEL)


def h264_codec_string(level: int) -> str:
    return f"avc1.{BASELINE_PROFILE_IDC:02X}{BASELINE_CONSTRAINTS:02X}{level:02X}"


def x264_options(
    width: int,
    height: int,
    fps: int,
    bitrate: int,
    *,
    keyframe_seconds: float = KEYFRAME_SECONDS,
    preset: str = "ultrafast",
    annexb: bool = True,
) -> dict[str, str]:
    """libx264 settings for a live talking head, shared with the RTMP push.

    ultrafast: 1.2 ms per 512² frame for ~25% more bytes than veryfast (benchmarks/results/codec.md).
    CRF with a VBV cap of one second: quality where the picture is easy, bounded bursts where it is not.
    `annexb=False` leaves the bitstream format to the container (FLV wants SPS/PPS once, in its header).
    """
    kbps = max(bitrate // 1000, 1)
    params: dict[str, str | int] = {
        "keyint": max(round(keyframe_seconds * fps), 1),
        "scenecut": 0,  # keyframes only on schedule and on request: predictable bandwidth
        "bframes": 0,
        "rc-lookahead": 0,
        "sync-lookahead": 0,
        "threads": 1,  # parallelism comes from sessions; more threads would add delay or contention
        "level": f"{h264_level(width, height, fps, kbps) / 10:.1f}",
        "vbv-maxrate": kbps,
        "vbv-bufsize": kbps,
        # How to turn the pixels back into RGB: cv2's I420 conversion is BT.601 (smpte170m) on sRGB (BT.709
        # primaries). Chromium ignores the matrix unless primaries and transfer are given too, and then decodes
        # as BT.709: green came out 216 instead of 255 and PSNR fell from 35.7 to 30.3 dB.
        "colorprim": "bt709",
        "transfer": "bt709",
        "colormatrix": "smpte170m",
    }
    if annexb:
        params |= {"repeat-headers": 1, "annexb": 1}
    return {
        "preset": preset,
        "tune": "zerolatency",
        "profile": "baseline",
        "crf": str(H264_CRF),
        "forced-idr": "1",
        "x264-params": ":".join(f"{k}={v}" for k, v in params.items()),
    }


def even_size(width: int, height: int) -> tuple[int, int]:
    """4:2:0 video needs even sides: odd ones grow by one pixel."""
    return width + width % 2, height + height % 2


def yuv420_frame(image_bgr: np.ndarray, width: int, height: int) -> av.VideoFrame:
    """BGR to an I420 frame of the (even) encoded size; OpenCV's conversion is ~7× faster than swscale's here."""
    pad_x, pad_y = width - image_bgr.shape[1], height - image_bgr.shape[0]
    if pad_x or pad_y:
        image_bgr = cv2.copyMakeBorder(image_bgr, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
    return av.VideoFrame.from_ndarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2YUV_I420), format="yuv420p")


class H264Encoder(VideoEncoder):
    codec = "h264"

    def __init__(
        self, width: int, height: int, fps: int, bitrate: int, keyframe_seconds: float, preset: str = "ultrafast"
    ) -> None:
        self._source = (width, height)
        self.width, self.height = even_size(width, height)
        options = x264_options(self.width, self.height, fps, bitrate, keyframe_seconds=keyframe_seconds, preset=preset)
        self.codec_string = h264_codec_string(h264_level(self.width, self.height, fps, max(bitrate // 1000, 1)))
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, "yuv420p"
        ctx.time_base = Fraction(1, fps)
        ctx.framerate = Fraction(fps)
        ctx.thread_count = 1
        ctx.options = options
        ctx.open()
        self._ctx: av.VideoCodecContext | None = ctx
        self._pts = 0

    def encode(self, image_bgr: np.ndarray, *, keyframe: bool = False) -> EncodedVideo:
        if self._ctx is None:
            raise RuntimeError("this H.264 encoder is closed")
        _check_image(image_bgr, *self._source)
        frame = yuv420_frame(image_bgr, self.width, self.height)
        frame.pts = self._pts
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I  # with forced-idr: an IDR, headers included
        self._pts += 1
        packets = self._ctx.encode(frame)
        if len(packets) != 1:
            raise RuntimeError(f"libx264 returned {len(packets)} packets for one frame; the live settings were lost")
        return EncodedVideo(bytes(packets[0]), keyframe=packets[0].is_keyframe)

    def close(self) -> None:
        self._ctx = None


def _check_image(image: np.ndarray, width: int, height: int) -> None:
    if image.shape != (height, width, 3) or image.dtype != np.uint8:
        raise ValueError(f"expected a {width}×{height} BGR uint8 frame, got shape {image.shape} {image.dtype}")


def create_encoder(
    codec: str,
    width: int,
    height: int,
    fps: int,
    *,
    jpeg_quality: int = 80,
    bitrate: int | None = None,
    keyframe_seconds: float = KEYFRAME_SECONDS,
) -> VideoEncoder:
    """A fresh encoder for one session; `bitrate` (bit/s) caps H.264 (default: MAX_BITS_PER_PIXEL)."""
    if codec not in CODECS:
        raise UserError(f"unknown video codec {codec!r}: use one of {', '.join(CODECS)}")
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise UserError(f"video size {width}×{height} is not usable: each side must be 16 to 8192 px")
    if not 1 <= fps <= 120:
        raise UserError(f"video fps {fps} is not usable: give 1 to 120")
    if codec == "jpeg":
        if not 1 <= jpeg_quality <= 100:
            raise UserError(f"JPEG quality {jpeg_quality} is not usable: give 1 to 100")
        return JpegEncoder(width, height, jpeg_quality)
    if bitrate is not None and bitrate < 50_000:
        raise UserError(f"video bitrate {bitrate} bit/s is too low for H.264: give at least 50000")
    if keyframe_seconds <= 0:
        raise UserError(f"keyframe interval {keyframe_seconds} s is not usable: give a positive number of seconds")
    return H264Encoder(width, height, fps, bitrate or default_bitrate(width, height, fps), keyframe_seconds)
