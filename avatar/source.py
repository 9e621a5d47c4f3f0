"""Load the user's avatar file (a portrait photo or a short video) into BGR frames.

Everything the user can get wrong about the file itself is caught here and reported as one
`UserError` line, so the renderer only ever sees decoded, size-bounded frames. The sha256 of the
file bytes is the cache key for preparation: a changed file gets a fresh preparation.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from core.errors import UserError

MIN_IMAGE_SIDE = 64
"""Below this no face in the picture can be big enough to animate."""
MAX_IMAGE_PIXELS = 80_000_000
"""Larger photos (beyond 10000×8000) are refused: decoding them alone would take gigabytes."""
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff"}
"""A file named like a photo that does not decode as one is a damaged photo, never tried as a video."""
_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}

VIDEO_MEMORY_BUDGET = 1_500_000_000
"""Bytes of decoded frames we keep for a video source; longer/larger clips are downscaled to fit."""


@dataclass
class AvatarSource:
    path: Path
    frames: list[np.ndarray]
    """BGR uint8; one frame for a photo, every decoded frame for a video."""
    fps: float | None
    """None for a photo."""
    digest: str
    """sha256 of the file bytes."""
    notices: list[str] = field(default_factory=list)
    """Things the user should know about how the file was adapted (e.g. a video downscaled)."""
    clip: VideoClip | None = None
    """A streamed video (`load_source(stream_video=True)`): `frames` holds only its first frame."""

    @property
    def is_video(self) -> bool:
        return self.fps is not None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        height, width = self.frames[0].shape[:2]
        return width, height


def load_source(
    path: str | Path, max_seconds: float = 60.0, max_height: int = 1080, stream_video: bool = False
) -> AvatarSource:
    """The decoded photo, or the video: every frame, or (`stream_video`) its first frame and a clip to stream."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"avatar file not found: {path}")
    if path.is_dir():
        raise UserError(f"avatar path is a folder, not a file: {path} (give a photo or a video)")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read avatar file {path}: {error.strerror or error}") from error
    if not data:
        raise UserError(f"avatar file is empty: {path}")
    digest = hashlib.sha256(data).hexdigest()

    kind = still_image_format(data)
    image = _decode_still(data, kind, path, max_height) if kind else _decode_image(data)
    if image is not None:
        return AvatarSource(path, [_checked_image(image, path, max_height)], None, digest)
    if path.suffix.lower() in PHOTO_SUFFIXES:
        raise UserError(
            f"avatar image {path.name} is damaged or not a picture: its bytes are not PNG, JPEG, WebP, BMP or TIFF "
            "data; use the original photo"
        )
    if stream_video:
        clip = open_video(path, max_seconds, max_height)
        return AvatarSource(path, [next(clip.frames())], clip.fps, digest, clip=clip)
    frames, fps, notices = _decode_video(path, max_seconds, max_height)
    return AvatarSource(path, frames, fps, digest, notices)


def still_image_format(data: bytes) -> str | None:
    """The photo format the file's first bytes announce (JPEG, PNG, WebP, BMP, TIFF), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _SIGNATURES.items() if data.startswith(magic)), None)


def _decode_still(data: bytes, kind: str, path: Path, max_height: int) -> np.ndarray:
    """Decode a file that announces itself as a photo; a damaged one is an error, never a video or a part-picture.

    Decoders disagree about damage: OpenCV's JPEG reader may return the picture with its missing part
    filled in grey, and ffmpeg (the video route) decodes a cut-off JPEG as a one-frame video with a green
    lower part. Pillow reports a cut-off file as truncated, so it checks the bytes before OpenCV decodes them.
    """
    broken = UserError(
        f"avatar image {path.name} is truncated or corrupted (its {kind} data is incomplete or damaged): "
        "use the complete original file"
    )
    too_large = (
        f"avatar image {path.name} is larger than {MAX_IMAGE_PIXELS // 1_000_000} megapixels: use a smaller copy"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about damaged TIFF/EXIF on stderr: we say it in one line
            probe = Image.open(io.BytesIO(data))
            width, height = probe.size
            if width * height > MAX_IMAGE_PIXELS:
                raise UserError(too_large.replace("larger than", f"{width}×{height} px, larger than"))
            if probe.format == "JPEG":
                probe.draft("RGB", (width // 8, height // 8))  # every byte is still decoded, at an eighth the cost
            probe.load()
    except Image.DecompressionBombError:  # Pillow's own limit (far above ours) trips while reading the header
        raise UserError(too_large) from None
    except (OSError, SyntaxError, ValueError):
        raise broken from None
    image = _decode_image(data, _jpeg_flag(width, height, max_height) if kind == "JPEG" else None)
    if image is None:
        raise broken
    return image


def _jpeg_flag(width: int, height: int, max_height: int) -> int:
    """The OpenCV flag that decodes a JPEG (no alpha to look for) straight at 1/8, 1/4 or 1/2 size when it is
    far larger than needed: a 48-megapixel phone photo then costs 0.05 s to decode instead of 0.5 s, and
    nothing is lost, since the frame is scaled down to `max_height` anyway (the shorter side decides,
    whatever the EXIF rotation). The reduced flags apply the EXIF orientation like IMREAD_COLOR."""
    reduced = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))
    return next((flag for factor, flag in reduced if min(width, height) // factor >= max_height), cv2.IMREAD_COLOR)


def _decode_image(data: bytes, colour_flag: int | None = None) -> np.ndarray | None:
    """Decode still images from memory (so non-ASCII paths work); None when the bytes are not an image."""
    buffer = np.frombuffer(data, np.uint8)
    if colour_flag is not None:
        return cv2.imdecode(buffer, colour_flag)
    raw = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if raw is None:
        return None
    if raw.ndim == 3 and raw.shape[2] == 4:
        return _flatten_alpha(raw)
    # IMREAD_COLOR applies the EXIF orientation and converts grey / 16-bit to BGR uint8.
    return cv2.imdecode(buffer, cv2.IMREAD_COLOR)


def _flatten_alpha(bgra: np.ndarray) -> np.ndarray:
    """Composite a transparent image over white: transparent pixels carry arbitrary colour otherwise."""
    if bgra.dtype != np.uint8:
        bgra = (bgra.astype(np.float32) / 257.0).round().astype(np.uint8)
    alpha = bgra[:, :, 3:4].astype(np.float32) / 255.0
    colour = bgra[:, :, :3].astype(np.float32)
    return (colour * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)


def _checked_image(image: np.ndarray, path: Path, max_height: int) -> np.ndarray:
    height, width = image.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise UserError(
            f"avatar image {path.name} is only {width}×{height} px: use a portrait at least "
            f"{MIN_IMAGE_SIDE * 4} px high with the face filling a good part of it"
        )
    return _fit_height(image, max_height)


def _fit_height(image: np.ndarray, max_height: int) -> np.ndarray:
    height, width = image.shape[:2]
    if height <= max_height:
        return np.ascontiguousarray(image)
    scale = max_height / height
    size = (max(1, round(width * scale)), max_height)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


@dataclass
class VideoClip:
    """A video file read frame by frame (never held whole in memory): opened and checked once, decoded per pass.

    Clips are decoded twice during preparation (landmarks, then the loop's frames) instead of being kept,
    so a 60 s 1080p clip costs one frame of memory rather than gigabytes.
    """

    path: Path
    fps: float
    expected_frames: int
    """From the container's declared duration (an estimate for progress; the decoded count decides)."""
    max_seconds: float
    max_height: int
    notices: list[str] = field(default_factory=list)

    def frames(self) -> Iterator[np.ndarray]:
        """Upright BGR frames at most `max_height` high; a clip damaged part-way yields the frames before the damage."""
        limit = int(np.ceil(self.max_seconds * self.fps)) + 1
        count = 0
        with _open_container(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for frame in container.decode(stream):
                    if count >= limit:
                        raise UserError(
                            f"avatar video {self.path.name} is longer than {self.max_seconds:.0f} s "
                            "(trim it to a 5–60 s clip of the face)"
                        )
                    count += 1
                    yield _fit_height(_upright(frame.to_ndarray(format="bgr24"), frame.rotation), self.max_height)
            except av.error.FFmpegError as error:
                if not count:
                    raise UserError(
                        f"avatar video {self.path.name} is corrupted or uses an unsupported codec"
                    ) from error
                notice = f"avatar video {self.path.name} is damaged after frame {count}; using the frames before it"
                if notice not in self.notices:
                    self.notices.append(notice)
        if not count:
            raise UserError(f"avatar video {self.path.name} contains no decodable frames")


def open_video(path: str | Path, max_seconds: float = 60.0, max_height: int = 1080) -> VideoClip:
    """Check a video file (readable, has a video track, not too long, not too small) without decoding it all."""
    path = Path(path)
    with _open_container(path) as container:
        if not container.streams.video:
            raise UserError(f"{path.name} has no video track: give a portrait photo or a video of the face")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        declared = _declared_seconds(container, stream)
    if declared is not None and declared > max_seconds + 0.5:
        raise UserError(
            f"avatar video {path.name} is {declared:.0f} s long; the limit is {max_seconds:.0f} s "
            "(trim it to a 5–60 s clip of the face)"
        )
    expected = max(1, round(fps * min(max_seconds, declared or max_seconds)))
    clip = VideoClip(path, fps, expected, max_seconds, max_height)
    first = next(clip.frames())
    if min(first.shape[:2]) < MIN_IMAGE_SIDE:
        height, width = first.shape[:2]
        raise UserError(f"avatar video {path.name} is only {width}×{height} px: use a larger video of the face")
    return clip


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise UserError(
            f"cannot open {path.name}: it is damaged or not a supported image (PNG, JPEG, WebP, BMP) or video file"
        ) from error


def _decode_video(path: Path, max_seconds: float, max_height: int) -> tuple[list[np.ndarray], float, list[str]]:
    clip = open_video(path, max_seconds, max_height)
    target_height = _height_within_budget(*_first_size(clip), clip.expected_frames, max_height)
    notices = []
    if target_height < min(max_height, _first_size(clip)[1]):
        notices.append(
            f"avatar video {path.name} was scaled to {target_height} px high to keep its frames in "
            "memory (use a shorter clip for full resolution)"
        )
    frames = [_fit_height(frame, target_height) for frame in clip.frames()]
    return frames, clip.fps, notices + clip.notices


def _first_size(clip: VideoClip) -> tuple[int, int]:
    height, width = next(clip.frames()).shape[:2]
    return width, height


def _declared_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """Apply the container's display rotation (phones store portrait video sideways plus a rotation tag)."""
    quarter_turns = round(rotation / 90) % 4
    codes = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}
    return cv2.rotate(image, codes[quarter_turns]) if quarter_turns else image


def _height_within_budget(width: int, height: int, expected_frames: float, max_height: int) -> int:
    """The frame height that keeps the whole decoded clip under VIDEO_MEMORY_BUDGET bytes."""
    target = min(max_height, height)
    aspect = width / height
    if 3 * aspect * target * target * expected_frames <= VIDEO_MEMORY_BUDGET:
        return target
    budget = int(np.sqrt(VIDEO_MEMORY_BUDGET / expected_frames / (3 * aspect)))
    return max(MIN_IMAGE_SIDE, budget - budget % 2)
