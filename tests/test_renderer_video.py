"""Video avatars: the clip's own motion is played back and forth, with the animated mouth laid onto the face.

The clip is made from the real sample portrait, moved and turned over time like a presenter's head, while the
exposure drifts: a controlled case beside the real footage of tests/test_video_footage.py.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from avatar import landmarks as lm
from avatar.prepare import PreparedAvatar, prepare_avatar
from avatar.realtime import RealtimeRenderer
from core.audio import read_audio_file
from core.events import CANONICAL_SAMPLE_RATE

ROOT = Path(__file__).resolve().parent.parent
FPS = 25


def _head_motion(image: np.ndarray, t: float) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D((224.0, 300.0), 2.0 * np.sin(2 * np.pi * t / 2.0), 1.0)
    matrix[:, 2] += (6 * np.sin(2 * np.pi * t / 3.0), 3 * np.sin(2 * np.pi * t / 1.5))
    moved = cv2.warpAffine(image, matrix, (512, 512), borderMode=cv2.BORDER_REFLECT)
    return cv2.convertScaleAbs(moved, alpha=1.0 - 0.06 * t)  # the camera's exposure drifts darker


@pytest.fixture(scope="module")
def clip(astronaut: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "presenter.mp4"
    image = cv2.imread(str(astronaut))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 512, 512, "yuv420p"
        stream.options = {"crf": "12"}
        for i in range(3 * FPS):
            frame = av.VideoFrame.from_ndarray(_head_motion(image, i / FPS), format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def avatar(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedAvatar:
    cache = tmp_path_factory.mktemp("cache")
    prepared, _ = prepare_avatar(clip, cache)
    again, _ = prepare_avatar(clip, cache)
    assert again.from_cache and again.loop is not None
    assert np.array_equal(again.loop.transforms, prepared.loop.transforms)  # type: ignore[union-attr]
    return again


def test_idle_plays_the_clip_back_and_forth(avatar: PreparedAvatar) -> None:
    loop = avatar.loop
    assert loop is not None and len(loop) == 3 * FPS
    assert [loop.index_at(i / FPS) for i in (0, 1, 74, 75, 76, 148, 149)] == [0, 1, 74, 73, 72, 0, 1]
    r = RealtimeRenderer(avatar, seed=0)
    frames = [r.render_next() for _ in range(2 * len(loop))]
    assert all(f.mouth_open == 0.0 for f in frames)
    for i in (0, 30, 74, 100):
        clip_frame = loop.frame(loop.index_at(i / FPS))
        same = np.all(frames[i].image == clip_frame, axis=2)
        assert same[:60].all() and same[-40:].all(), "away from the face every pixel is the clip's own"
    x0, y0, x1, y1 = avatar.mouth_rect
    for i in (0, 74):
        clip_frame = loop.frame(loop.index_at(i / FPS))
        drawn, own = frames[i].image[y0:y1, x0:x1].mean(), clip_frame[y0:y1, x0:x1].mean()
        assert abs(drawn - own) < 3.0, f"the laid-on mouth must follow the clip's exposure ({drawn:.1f} vs {own:.1f})"
    tops = [lm.detect_faces(f.image)[0].xy[lm.FOREHEAD] for f in (frames[0], frames[12])]
    assert np.linalg.norm(tops[0] - tops[1]) > 2.0, "the head moves as in the clip"


def test_mouth_follows_speech_on_the_moving_head(avatar: PreparedAvatar) -> None:
    speech = read_audio_file(ROOT / "tests" / "data" / "audio" / "en" / "hello_world.wav", CANONICAL_SAMPLE_RATE)
    r = RealtimeRenderer(avatar, seed=0)
    r.feed(np.concatenate([np.zeros(CANONICAL_SAMPLE_RATE // 2, np.int16), speech]))
    frames = []
    while r.queued_samples:
        frames.append(r.render_next())
    opening = np.array([f.mouth_open for f in frames])
    widest = frames[int(np.argmax(opening))]
    silent = frames[3]
    assert silent.mouth_open == 0.0 and widest.mouth_open > 0.5
    measured_open = lm.mouth_opening(lm.detect_faces(widest.image)[0])
    measured_closed = lm.mouth_opening(lm.detect_faces(silent.image)[0])
    assert measured_closed < 0.05 < measured_open, (measured_closed, measured_open)
