"""Loading avatar photos and videos: the real sample portrait, files written by real encoders, and bad input."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from avatar.source import load_source
from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
PORTRAIT = ROOT / "assets" / "avatars" / "astronaut.png"
SPEECH = ROOT / "tests" / "data" / "audio" / "en" / "hello_world.wav"


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 25, rotation: int = 0) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())


def _panning_frames(count: int) -> list[np.ndarray]:
    portrait = cv2.imread(str(PORTRAIT))
    return [np.roll(portrait, i, axis=1) for i in range(count)]


def test_photo_loads_as_one_frame_with_file_digest() -> None:
    source = load_source(PORTRAIT)
    assert not source.is_video and source.fps is None
    assert len(source.frames) == 1
    frame = source.frames[0]
    assert frame.shape == (512, 512, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame, cv2.imread(str(PORTRAIT)))
    assert source.digest == hashlib.sha256(PORTRAIT.read_bytes()).hexdigest()
    assert source.size == (512, 512)


def test_non_ascii_path_and_jpeg_webp_bmp(tmp_path: Path) -> None:
    portrait = cv2.imread(str(PORTRAIT))
    for extension in (".jpg", ".webp", ".bmp"):
        ok, encoded = cv2.imencode(extension, portrait)
        assert ok
        path = tmp_path / f"头像 é{extension}"
        path.write_bytes(encoded.tobytes())
        frame = load_source(path).frames[0]
        assert frame.shape == portrait.shape
        assert np.abs(frame.astype(int) - portrait).mean() < 6  # lossy formats stay close to the original


def test_large_photo_is_downscaled_keeping_aspect(tmp_path: Path) -> None:
    portrait = cv2.imread(str(PORTRAIT))
    wide = cv2.resize(portrait, (2400, 1600))
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), wide)
    frame = load_source(path, max_height=1080).frames[0]
    assert frame.shape == (1080, 1620, 3)


def test_transparent_png_is_flattened_on_white(tmp_path: Path) -> None:
    portrait = cv2.imread(str(PORTRAIT))
    bgra = cv2.cvtColor(portrait, cv2.COLOR_BGR2BGRA)
    bgra[:100, :, 3] = 0
    bgra[:100, :, :3] = 0  # transparent pixels with black colour behind them
    path = tmp_path / "cutout.png"
    cv2.imwrite(str(path), bgra)
    frame = load_source(path).frames[0]
    assert (frame[:100] == 255).all()
    assert np.array_equal(frame[100:], portrait[100:])


def test_video_frames_and_rate(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    _write_video(path, _panning_frames(50))
    source = load_source(path)
    assert source.is_video and source.fps == pytest.approx(25.0)
    assert len(source.frames) == 50
    assert source.frames[0].shape == (512, 512, 3)
    assert source.digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_phone_video_rotation_is_applied(tmp_path: Path) -> None:
    """Phones store portrait video sideways with a display rotation; the frames must come out upright."""
    upright = cv2.imread(str(PORTRAIT))[:, 64:448]
    sideways = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)
    path = tmp_path / "phone.mp4"
    _write_video(path, [sideways] * 10, rotation=-90)
    frame = load_source(path).frames[0]
    assert frame.shape == upright.shape
    assert np.abs(frame.astype(int) - upright).mean() < 4


def test_long_high_resolution_video_is_scaled_to_fit_memory() -> None:
    from avatar.source import VIDEO_MEMORY_BUDGET, _height_within_budget

    assert _height_within_budget(1920, 1080, 25 * 8, 1080) == 1080
    height = _height_within_budget(1920, 1080, 25 * 60, 1080)
    assert height < 1080 and 3 * height * height * 1920 / 1080 * 25 * 60 <= VIDEO_MEMORY_BUDGET


def test_video_longer_than_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.mp4"
    _write_video(path, _panning_frames(75))
    with pytest.raises(UserError, match=r"3 s long; the limit is 2 s"):
        load_source(path, max_seconds=2.0)


def test_missing_folder_and_empty(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_source(tmp_path / "nobody.png")
    with pytest.raises(UserError, match="folder"):
        load_source(tmp_path)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        load_source(empty)


def test_corrupted_and_unsupported_files(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(PORTRAIT.read_bytes()[:200])
    text = tmp_path / "notes.txt"
    text.write_text("not a picture", encoding="utf-8")
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    for path in (truncated, text, noise):
        with pytest.raises(UserError) as caught:
            load_source(path)
        assert "\n" not in str(caught.value)
        assert path.name in str(caught.value)


def test_audio_file_has_no_video_track(tmp_path: Path) -> None:
    path = tmp_path / "speech.wav"
    shutil.copy(SPEECH, path)
    with pytest.raises(UserError, match="no video track"):
        load_source(path)


def test_tiny_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "icon.png"
    cv2.imwrite(str(path), cv2.resize(cv2.imread(str(PORTRAIT)), (40, 40)))
    with pytest.raises(UserError, match=r"only 40×40 px"):
        load_source(path)


def test_damaged_videos(tmp_path: Path) -> None:
    """A cut-off MP4 has lost its index (refused); a cut-off Matroska stream keeps its first frames."""
    mp4, mkv = tmp_path / "clip.mp4", tmp_path / "clip.mkv"
    _write_video(mp4, _panning_frames(50))
    _write_video(mkv, _panning_frames(50))
    cut_mp4, cut_mkv = tmp_path / "cut.mp4", tmp_path / "cut.mkv"
    cut_mp4.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    cut_mkv.write_bytes(mkv.read_bytes()[: mkv.stat().st_size * 19 // 20])  # the key frame is ~80% of the file
    with pytest.raises(UserError, match=r"cut\.mp4: it is damaged"):
        load_source(cut_mp4)
    source = load_source(cut_mkv)
    assert 5 < len(source.frames) < 50
