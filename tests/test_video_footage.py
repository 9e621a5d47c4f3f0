"""Video avatars on real footage: a man at a webcam (Idiap, BSD-3), keyed onto a blue or a green backdrop and moved
by a smooth affine path with a fast sweep (tests/video_clips.py), measured on the output frames.

Each backdrop's clip is 4 s long and prepared once per module; speech is a real recording.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar import landmarks as lm
from avatar import quality as q
from avatar import video_quality as vq
from avatar.prepare import PreparedAvatar, prepare_avatar
from avatar.realtime import RealtimeRenderer
from avatar.video_prepare import _loop_ends
from core.audio import read_audio_file
from core.events import CANONICAL_SAMPLE_RATE, Frame
from tests import video_clips

ROOT = Path(__file__).resolve().parent.parent
FPS = 25
SECONDS = 4.0
CLOSED = 0.06
SIZE = (384, 384)


@pytest.fixture(scope="module", params=["blue", "green"])
def prepared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[PreparedAvatar, str]:
    folder = tmp_path_factory.mktemp(f"footage-{request.param}")
    clip = video_clips.hard_clip(folder, request.param, SECONDS, sweep_at=1.5)
    progress: list[float] = []
    first, _ = prepare_avatar(clip, folder / "cache", output_size=SIZE, progress=progress.append)
    assert progress == sorted(progress) and progress[-1] == 1.0
    again, _ = prepare_avatar(clip, folder / "cache", output_size=SIZE)
    assert again.from_cache and not first.from_cache, "the second start loads the prepared clip from the cache"
    assert first.loop is not None and again.loop is not None
    assert np.array_equal(again.loop.transforms, first.loop.transforms)
    return again, request.param


@pytest.fixture(scope="module")
def speaking(prepared: tuple[PreparedAvatar, str]) -> list[Frame]:
    avatar, _ = prepared
    speech = read_audio_file(ROOT / "tests" / "data" / "audio" / "en" / "counting.wav", CANONICAL_SAMPLE_RATE)
    pause = np.zeros(CANONICAL_SAMPLE_RATE // 2, np.int16)
    return q.render_speech(RealtimeRenderer(avatar, seed=0), np.concatenate([pause, speech, pause]), 960)


def test_the_whole_clip_is_the_loop(prepared: tuple[PreparedAvatar, str]) -> None:
    avatar, _ = prepared
    assert avatar.is_video and avatar.loop is not None
    assert len(avatar.loop) == SECONDS * FPS, "a clip under 5 s is used in full"


def test_lips_follow_speech_at_lag_zero(speaking: list[Frame]) -> None:
    report = q.measure_lip_sync(speaking, FPS, CANONICAL_SAMPLE_RATE, CLOSED)
    assert report.missing == 0.0
    assert report.lag == 0 and report.r_zero >= 0.6, (report.lag, report.r_zero)
    assert report.closed >= 0.9, report.closed


def test_the_source_mouth_is_replaced_in_silence(prepared: tuple[PreparedAvatar, str]) -> None:
    """The man in the clip talks; the idle avatar must not: every idle frame's mouth is measured closed."""
    avatar, _ = prepared
    loop = avatar.loop
    assert loop is not None
    renderer = RealtimeRenderer(avatar, seed=0)
    idle = [renderer.render_next().image for _ in range(len(loop))]
    own = q.lip_opening_series([loop.frame(i) for i in range(len(loop))])
    drawn = q.lip_opening_series(idle)
    assert np.nanmax(own) > 1.5 * CLOSED, "the clip's own mouth opens (otherwise this test proves nothing)"
    assert np.mean(drawn <= CLOSED) >= 0.95, np.sort(drawn)[-10:]


def test_the_lower_face_keeps_the_frame_colour(prepared: tuple[PreparedAvatar, str], speaking: list[Frame]) -> None:
    """Cheek-to-chin colour difference (CIELAB ΔE) on output frames stays within 3 units of the clip's own."""
    avatar, _ = prepared
    loop = avatar.loop
    assert loop is not None
    drawn, own = [], []
    for frame in speaking[::5]:
        drawn.append(vq.cheek_to_chin(frame.image))
        own.append(vq.cheek_to_chin(loop.frame(loop.index_at(frame.index / FPS))))
    assert abs(np.nanmedian(drawn) - np.nanmedian(own)) < 3.0, (np.nanmedian(drawn), np.nanmedian(own))


def test_the_mouth_never_reaches_the_backdrop(prepared: tuple[PreparedAvatar, str], speaking: list[Frame]) -> None:
    """Pixels the renderer changed are face, never the coloured cloth around it, even with the jaw open."""
    avatar, colour = prepared
    loop = avatar.loop
    assert loop is not None
    channel = {"blue": 0, "green": 1}[colour]
    changed_total, on_cloth = 0, 0
    for frame in speaking:
        source = loop.frame(loop.index_at(frame.index / FPS)).astype(np.int16)
        changed = np.abs(frame.image.astype(np.int16) - source).max(axis=2) > 12
        others = np.delete(source, channel, axis=2).max(axis=2)
        cloth = source[..., channel] > others + 50
        changed_total += int(changed.sum())
        on_cloth += int((changed & cloth).sum())
    assert changed_total > 0
    assert on_cloth <= 0.002 * changed_total, (on_cloth, changed_total)


def test_a_lost_face_shows_the_nearest_good_frame(tmp_path: Path) -> None:
    """Frames where the face cannot be found (a fade-in, a cut to an empty picture) are never drawn on: the
    nearest tracked frame is shown instead."""
    frames, fps = video_clips.read_frames(video_clips.CALM, 2.0)
    for i in (0, 1, 2, 3, 4, 5, 24, 25, 26):
        frames[i] = np.full_like(frames[i], 128)
    clip = video_clips.write_frames(tmp_path / "covered.mp4", frames, fps)
    avatar, _ = prepare_avatar(clip, tmp_path / "cache")
    loop = avatar.loop
    assert loop is not None and loop.placement is not None
    assert [int(loop.placement.shown[i]) for i in (0, 5, 6)] == [6, 6, 6]
    assert [int(loop.placement.shown[i]) for i in range(22, 29)] == [22, 23, 23, 23, 27, 27, 28]
    assert [loop.index_at(i / FPS) for i in range(22, 29)] == [22, 23, 23, 23, 27, 27, 28]
    renderer = RealtimeRenderer(avatar, seed=0)
    idle = [renderer.render_next().image for _ in range(29)]
    assert lm.detect_faces(idle[0]) and lm.detect_faces(idle[25]), "a face is shown where the clip had none"


def test_loop_turns_around_where_the_head_is_slowest() -> None:
    positions = np.concatenate([np.linspace(0, 10, 20), np.full(5, 10.0), np.linspace(10, 40, 100), np.full(8, 40.0)])
    points = np.zeros((len(positions), lm.NUM_LANDMARKS, 3), np.float32)
    points[:, :, 0] = positions[:, None]
    first, last = _loop_ends(points, 25.0)
    assert 19 <= first <= 25 and last >= len(positions) - 8


def test_large_frames_are_tracked_scaled_down_in_their_own_pixels() -> None:
    """The mesh sees a frame at most `work_height` high; the landmarks come back in the full frame's pixels."""
    frames, _ = video_clips.read_frames(video_clips.CALM, 0.4)
    large = [cv2.resize(f, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC) for f in frames]
    small = lm.VideoLandmarkTracker(work_height=240).track_points(large)
    full = lm.VideoLandmarkTracker(work_height=720).track_points(large)
    width = np.ptp(full[0, :, 0])
    assert width > 180
    assert np.abs(small[:, lm.NOSE_TIP, :2] - full[:, lm.NOSE_TIP, :2]).max() < 0.03 * width
