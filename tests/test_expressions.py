"""Expressions an agent cues on a renderer: timed on the audio timeline, blended in and out, dropped by an
interrupt, and visible on the output frames (brows and irises read back by the face-mesh detector)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar import landmarks as lm
from avatar.base import Renderer
from avatar.expressions import NOD_DEGREES, SHAKE_DEGREES, TIMINGS
from avatar.lipsync import MouthState
from avatar.liveliness import Pose
from avatar.prepare import PreparedAvatar, prepare_avatar
from avatar.realtime import RealtimeRenderer
from core.errors import UserError
from core.events import CANONICAL_SAMPLE_RATE, Expression, Frame, VisemeEvent

FPS = 25
SPF = CANONICAL_SAMPLE_RATE // FPS


@pytest.fixture(scope="module")
def avatar(astronaut: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedAvatar:
    return prepare_avatar(astronaut, tmp_path_factory.mktemp("cache"))[0]


def _still(avatar: PreparedAvatar) -> RealtimeRenderer:
    """Liveliness 0: nothing moves unless a cue moves it."""
    return RealtimeRenderer(avatar, fps=FPS, liveliness=0.0, seed=0)


def _run(renderer: RealtimeRenderer, frames: int) -> list[Frame]:
    return [renderer.render_next() for _ in range(frames)]


def test_bad_cues_are_one_clear_error(avatar: PreparedAvatar) -> None:
    r = _still(avatar)
    with pytest.raises(UserError, match="unknown expression 'wink': use one of smile, neutral"):
        r.cue("wink")
    with pytest.raises(UserError, match=r"intensity 1\.5"):
        r.cue(Expression.SMILE, intensity=1.5)
    with pytest.raises(UserError, match="duration"):
        r.cue("smile", duration=0.0)
    r.cue("raised_brows", intensity=0.5)  # names work as well as members
    assert max(f.extras["brow"] for f in _run(r, 15)) == pytest.approx(0.5)


def test_a_cue_starts_with_the_speech_fed_after_it(avatar: PreparedAvatar) -> None:
    """`at` counts from the end of the queued audio: 0 = with the next speech fed, negative = before it ends."""
    r = _still(avatar)
    r.feed(np.zeros(SPF * 20, np.int16))
    r.cue(Expression.RAISED_BROWS, at=0.0)
    brows = [f.extras["brow"] for f in _run(r, 40)]
    assert brows[:21] == [0.0] * 21 and brows[22] > 0.0 and max(brows[25:35]) == pytest.approx(1.0)
    early = _still(avatar)
    early.feed(np.zeros(SPF * 20, np.int16))
    early.cue(Expression.CONCERN, at=-0.4)
    brows = [f.extras["brow"] for f in _run(early, 20)]
    assert brows[:11] == [0.0] * 11 and brows[12] < 0.0, "concern starts 0.4 s (10 frames) before the audio ends"


def test_held_expressions_blend_in_and_out(avatar: PreparedAvatar) -> None:
    r = _still(avatar)
    r.cue(Expression.SMILE, duration=1.0)
    r.cue(Expression.NEUTRAL, at=None, intensity=0.4, duration=1.0)
    smile = np.array([f.extras["smile"] for f in _run(r, 3 * FPS)])
    assert smile[0] == 0.0 and smile.max() == pytest.approx(0.6), "cues add up: smile 1 and neutral 0.4"
    assert np.abs(np.diff(smile)).max() < 0.25, "blended, not switched"
    timing = TIMINGS[Expression.SMILE]
    assert (smile[int((timing.attack + 1.0 + timing.release) * FPS) + 1 :] == 0.0).all(), "and gone again"


def test_nod_and_shake_move_the_head(avatar: PreparedAvatar) -> None:
    nod, shake = _still(avatar), _still(avatar)
    nod.cue(Expression.NOD_YES)
    shake.cue(Expression.SHAKE_NO, intensity=0.5)
    nodding, shaking = _run(nod, 2 * FPS), _run(shake, 2 * FPS)
    pitch = np.array([f.extras["pitch"] for f in nodding])
    yaw = np.array([f.extras["yaw"] for f in shaking])
    assert 0.6 * NOD_DEGREES < pitch.max() <= NOD_DEGREES and pitch.min() >= 0.0, "a yes dips the chin"
    assert np.abs([f.extras["yaw"] for f in nodding]).max() == 0.0
    assert yaw.max() > 0.25 * SHAKE_DEGREES and yaw.min() < -0.25 * SHAKE_DEGREES, "a no turns both ways"
    assert pitch[-1] == 0.0 and yaw[-1] == 0.0
    assert not np.array_equal(nodding[8].image, avatar.image)


def test_an_interrupt_drops_cues_that_had_not_started(avatar: PreparedAvatar) -> None:
    r = _still(avatar)
    r.feed(np.zeros(SPF * 10, np.int16))
    r.cue(Expression.RAISED_BROWS, at=0.0)
    _run(r, 3)
    r.reset()
    assert all(f.extras["brow"] == 0.0 for f in _run(r, 30))


def _detect(image: np.ndarray) -> lm.FaceLandmarks:
    return lm.detect_faces(image)[0]


def _peak(avatar: PreparedAvatar, expression: Expression) -> np.ndarray:
    r = _still(avatar)
    r.cue(expression)
    return _run(r, 15)[-1].image


def _above_eyes(face: lm.FaceLandmarks, ys: np.ndarray) -> float:
    """How far above the eye corners `ys` are, in eye distances (up is positive)."""
    corners = face.xy[[33, 133, 362, 263]]
    iod = float(np.linalg.norm(face.xy[263] - face.xy[33]))
    return float((corners[:, 1].mean() - np.mean(ys)) / iod)


def test_brows_are_seen_on_the_frames(avatar: PreparedAvatar) -> None:
    """Read back by the detector, relative to the eyes: a raise lifts the brows, concern lifts their inner ends
    while the outer ones stay."""
    photo = _detect(avatar.image)
    raised, concerned = (_detect(_peak(avatar, e)) for e in (Expression.RAISED_BROWS, Expression.CONCERN))
    inner, outer = [55, 285, 107, 336], [46, 276, 70, 300]

    def lift(face: lm.FaceLandmarks, ids: list[int]) -> float:
        return _above_eyes(face, face.xy[ids, 1]) - _above_eyes(photo, photo.xy[ids, 1])

    # The rig lifts the brows by 0.08 eye distances; the detector reads a bit under half of that.
    assert lift(raised, inner + outer) > 0.02
    assert lift(concerned, inner) > 0.015 and lift(concerned, inner) > lift(concerned, outer) + 0.015


def _shift(before: np.ndarray, after: np.ndarray, centre: np.ndarray, half: int) -> np.ndarray:
    """(dx, dy) pixels the content around `centre` moved between two images (template matching at 4x)."""
    x, y = np.round(centre).astype(int)
    reach = half + 8
    up = 4

    def grab(image: np.ndarray, r: int) -> np.ndarray:
        patch = cv2.cvtColor(image[y - r : y + r + 1, x - r : x + r + 1], cv2.COLOR_BGR2GRAY)
        return cv2.resize(patch, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)

    scores = cv2.matchTemplate(grab(after, reach), grab(before, half), cv2.TM_CCOEFF_NORMED)
    _, _, _, best = cv2.minMaxLoc(scores)
    return (np.array(best, dtype=np.float64) - (reach - half) * up) / up


def test_thinking_looks_up_and_away(avatar: PreparedAvatar) -> None:
    """The cue turns the gaze up and to one side; drawn, a gaze slides the irises inside the eyes (measured by
    template matching, which sees ~60% of the iris's own shift: the sclera around it moves less) while the
    lids, lashes and skin around the eye openings stay exactly as they were."""
    r = _still(avatar)
    r.cue(Expression.THINKING)
    peak = _run(r, 15)[-1]
    assert peak.extras["gaze_y"] == pytest.approx(-0.6) and abs(peak.extras["gaze_x"]) == pytest.approx(0.7)
    radius = float(np.linalg.norm(avatar.points[469, :2] - avatar.points[468, :2]))
    still = MouthState(0.0, 0.0, 0.0, False)
    openings = np.zeros(avatar.image.shape[:2], np.uint8)
    for outline in (lm.RIGHT_EYE, lm.LEFT_EYE):
        cv2.fillPoly(openings, [np.round(avatar.points[outline, :2]).astype(np.int32)], 255)
    around = cv2.dilate(openings, np.ones((5, 5), np.uint8)) == 0  # beyond the bicubic kernel's reach
    ahead = r._draw(still, Pose(0.0, 0.0, 0.0, 0.0, 0.0))
    for gx, gy in ((0.7, 0.0), (-0.7, 0.0), (0.0, -0.6)):
        image = r._draw(still, Pose(0.0, 0.0, 0.0, 0.0, 0.0, gaze_x=gx, gaze_y=gy))
        np.testing.assert_array_equal(image[around], ahead[around])
        for iris in (468, 473):
            moved = _shift(avatar.image, image, avatar.points[iris, :2], round(radius)) / r._iris  # in iris radii
            # Up and down the lids hold the iris back: the field falls off over the eye's narrow height.
            share = 0.4 if gx else 0.25
            assert moved @ np.array([gx, gy]) > share * (gx * gx + gy * gy), f"gaze {gx, gy}: iris moved {moved}"


class _MouthOnly(Renderer):
    """Contract test: an engine that cannot show expressions (like a lip-sync network) keeps the base `cue`."""

    fps = FPS

    @property
    def frame_size(self) -> tuple[int, int]:
        return (64, 64)

    def feed(self, pcm: np.ndarray, visemes: Sequence[VisemeEvent] = ()) -> None:
        del pcm, visemes

    def render_next(self) -> Frame:
        return Frame(0, np.zeros((64, 64, 3), np.uint8), np.zeros(SPF, np.int16))

    def reset(self) -> None:
        return None

    @property
    def queued_samples(self) -> int:
        return 0


def test_every_renderer_accepts_and_checks_cues() -> None:
    engine = _MouthOnly()
    engine.cue(Expression.SMILE, intensity=0.3, at=0.5, duration=2.0)
    with pytest.raises(UserError, match="unknown expression"):
        engine.cue("frown")
