"""What a viewer sees: the background stays put, the face stays sharp, round vowels look round, a vowel after
p/b/m opens, blinks take several frames. Measured on real portraits (the astronaut and Grace Hopper, whose
flag and collar sit right behind her head) with real speech, the output read back by mediapipe."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest

from avatar import landmarks as lm
from avatar import quality as q
from avatar.prepare import BROW_LEVELS, PreparedAvatar, prepare_avatar
from avatar.realtime import RealtimeRenderer
from core.audio import read_audio_file
from core.events import CANONICAL_SAMPLE_RATE, Viseme, VisemeEvent

ROOT = Path(__file__).resolve().parent.parent
GRACE = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
SPF = CANONICAL_SAMPLE_RATE // 25


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def astronaut_avatar(astronaut: Path, cache: Path) -> PreparedAvatar:
    return prepare_avatar(astronaut, cache)[0]


@pytest.fixture(scope="module")
def grace_avatar(cache: Path) -> PreparedAvatar:
    return prepare_avatar(GRACE, cache)[0]


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return read_audio_file(ROOT / "tests" / "data" / "audio" / "en" / "quick_brown_fox.wav", CANONICAL_SAMPLE_RATE)


def _full_weight(avatar: PreparedAvatar) -> np.ndarray:
    weight = np.zeros(avatar.image.shape[:2], np.float32)
    x0, y0, x1, y1 = avatar.roi
    weight[y0:y1, x0:x1] = avatar.head_weight
    return weight


def _speak(avatar: PreparedAvatar, pcm: np.ndarray, liveliness: float = 1.0) -> list:
    r = RealtimeRenderer(avatar, liveliness=liveliness, seed=3)
    r.feed(pcm)
    frames = []
    while r.queued_samples:
        frames.append(r.render_next())
    return frames


@pytest.mark.parametrize("who", ["astronaut_avatar", "grace_avatar"])
def test_head_motion_leaves_the_background_pixel_stable(who: str, request: pytest.FixtureRequest, speech) -> None:
    avatar: PreparedAvatar = request.getfixturevalue(who)
    weight = _full_weight(avatar)
    off_head = weight == 0.0
    in_patch = np.zeros_like(off_head)
    for x0, y0, x1, y1 in (avatar.mouth_rect, avatar.eye_rect):
        in_patch[y0:y1, x0:x1] = True  # the jaw's own travel over the neck is drawn in the mouth patch
    head = weight > 0.9
    frames = _speak(avatar, speech)
    moved = 0
    for frame in frames:
        np.testing.assert_array_equal(frame.image[off_head & ~in_patch], avatar.image[off_head & ~in_patch])
        moved += int(np.abs(frame.image[head].astype(int) - avatar.image[head]).max() > 8)
    assert moved > len(frames) // 2, "the head itself must move"
    # The head region is the head, not a blob around it: beside the head and under the chin is background.
    xy, iod = avatar.points[:, :2], avatar.iod
    chin = xy[lm.CHIN]
    for dx, dy in ((-2.3, -1.5), (2.3, -1.5), (-1.4, 0.8), (1.4, 0.8), (0.0, 1.6)):
        x, y = np.round(chin + np.array([dx, dy]) * iod).astype(int)
        assert weight[y, x] == 0.0, f"background at ({dx}, {dy}) eye distances from the chin moves with the head"


def test_moving_face_stays_sharp(astronaut_avatar: PreparedAvatar, speech: np.ndarray) -> None:
    mask = q.face_mask(astronaut_avatar.points, astronaut_avatar.image.shape)
    frames = [f.image for f in _speak(astronaut_avatar, speech)]
    kept = q.detail_kept(frames[::4], astronaut_avatar.image, mask)
    still = q.detail_kept([f.image for f in _speak(astronaut_avatar, speech, liveliness=0.0)][::4],
                          astronaut_avatar.image, mask)  # fmt: skip
    assert kept > 0.75, f"head motion keeps only {kept:.2f} of the photo's fine detail"
    assert still > 0.95


def _corner_distance(image: np.ndarray) -> float:
    face = lm.detect_faces(image)[0]
    left, right = face.xy[lm.MOUTH_CORNERS]
    return float(np.linalg.norm(right - left))


@pytest.mark.parametrize("who", ["astronaut_avatar", "grace_avatar"])
def test_rounded_vowels_bring_the_corners_in(who: str, request: pytest.FixtureRequest, speech) -> None:
    avatar: PreparedAvatar = request.getfixturevalue(who)
    pcm = speech[int(0.2 * CANONICAL_SAMPLE_RATE) : int(1.0 * CANONICAL_SAMPLE_RATE)]
    widths = {}
    for viseme in (Viseme.OU, Viseme.E):
        r = RealtimeRenderer(avatar, liveliness=0.0, seed=0)
        r.feed(pcm, [VisemeEvent(viseme, 0.0, len(pcm) / CANONICAL_SAMPLE_RATE)])
        frames = [r.render_next() for _ in range(len(pcm) // SPF)]
        loudest = max(frames, key=lambda f: f.extras["energy"])
        widths[viseme] = _corner_distance(loudest.image)
    assert widths[Viseme.OU] < 0.85 * widths[Viseme.E], f"mouth width on OU vs E (px): {widths}"


def test_vowel_after_a_bilabial_opens(astronaut_avatar: PreparedAvatar, speech: np.ndarray) -> None:
    """'my': the lips are shut during the m and the a right after it still opens most of the way."""
    pcm = speech[int(0.3 * CANONICAL_SAMPLE_RATE) : int(0.7 * CANONICAL_SAMPLE_RATE)]

    def openings(visemes: list[VisemeEvent]) -> list[float]:
        r = RealtimeRenderer(astronaut_avatar, liveliness=0.0, seed=0)
        r.feed(pcm, visemes)
        return [r.render_next().mouth_open for _ in range(len(pcm) // SPF)]

    after_m = openings([VisemeEvent(Viseme.PP, 0.0, 0.12), VisemeEvent(Viseme.AA, 0.12, 0.2)])
    alone = openings([VisemeEvent(Viseme.SIL, 0.0, 0.12), VisemeEvent(Viseme.AA, 0.12, 0.2)])
    assert after_m[1] == 0.0, "shut during the m"
    vowel = 3  # the frame centred on 0.14 s
    assert after_m[vowel] > 0.4 and after_m[vowel] > 0.6 * alone[vowel], (after_m, alone)


def test_blinks_last_several_frames(astronaut_avatar: PreparedAvatar) -> None:
    r = RealtimeRenderer(astronaut_avatar, liveliness=1.0, seed=11)
    blinks = np.array([r.render_next().extras["blink"] for _ in range(25 * 20)])
    closed = blinks > 0.0
    starts = np.flatnonzero(closed[1:] & ~closed[:-1]) + 1
    assert len(starts) >= 3
    for start in starts:
        length = int(np.argmax(~closed[start:]))
        assert 3 <= length <= 7, f"a blink of {length} frames at 25 fps"
        assert 0.0 < blinks[start] < 1.0, "the lid passes half-closed on its way down"
        assert blinks[start : start + length].max() == 1.0


def test_a_closed_lid_covers_the_eye_and_moves_nothing_else(grace_avatar: PreparedAvatar) -> None:
    """Grace Hopper's glasses rim runs just above her eyes: a blink must leave it where it is."""
    avatar = grace_avatar
    rest = int(np.flatnonzero(BROW_LEVELS == 0.0)[0])
    open_eyes, shut = avatar.eye_bank[0, rest].astype(int), avatar.eye_bank[-1, rest].astype(int)
    x0, y0 = avatar.eye_rect[:2]
    eyes = np.zeros(open_eyes.shape[:2], np.uint8)
    for outline in (lm.RIGHT_EYE, lm.LEFT_EYE):
        cv2.fillPoly(eyes, [np.round(avatar.points[outline, :2] - (x0, y0)).astype(np.int32)], 255)
    reach = round(0.12 * avatar.iod)
    near = cv2.dilate(eyes, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0
    assert np.abs(shut - open_eyes)[~near].max() == 0, "the blink moved pixels away from the eyes"
    # Inside the outline the closed lid is skin: no dark pupil, no bright catchlight left.
    lid = shut[eyes > 0].mean(axis=1)
    around = open_eyes[near & (eyes == 0)].mean(axis=1)
    assert np.percentile(lid, 5) > np.percentile(around, 5) - 10
    assert lid.max() < around.max() + 10
