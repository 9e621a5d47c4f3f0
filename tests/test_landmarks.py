"""mediapipe face mesh on the real sample portrait and real photos: geometry, selection rules, tracking."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar import landmarks as lm
from avatar.landmarks import FaceLandmarks, VideoLandmarkTracker, detect_faces, select_face
from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
PORTRAIT = ROOT / "assets" / "avatars" / "astronaut.png"
IMAGES = ROOT / "tests" / "data" / "images"


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return cv2.imread(str(PORTRAIT))


@pytest.fixture(scope="module")
def face(portrait: np.ndarray) -> FaceLandmarks:
    faces = detect_faces(portrait)
    assert len(faces) == 1
    return faces[0]


def _crosses(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    def side(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    return side(p1, p2, q1) * side(p1, p2, q2) < 0 and side(q1, q2, p1) * side(q1, q2, p2) < 0


def _is_simple_polygon(points: np.ndarray) -> bool:
    """No two non-adjacent edges cross: what a correctly ordered contour gives and a scrambled one does not."""
    n = len(points)
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]
    return not any(
        _crosses(*edges[i], *edges[j]) for i in range(n) for j in range(i + 2, n) if not (i == 0 and j == n - 1)
    )


def _polygon_contains(polygon: np.ndarray, points: np.ndarray) -> bool:
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    return all(cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in points)


def test_portrait_face_geometry(face: FaceLandmarks) -> None:
    assert face.points.shape == (478, 3) and face.points.dtype == np.float32
    x, y, w, h = face.bbox
    # The astronaut's face sits in the upper middle of the 512×512 photo, about 90 px wide.
    assert 150 < x < 210 and 50 < y < 100 and 80 < w < 110 and 95 < h < 125
    xy = face.xy
    eyes_y = xy[np.r_[lm.LEFT_EYE, lm.RIGHT_EYE], 1].mean()
    assert xy[lm.LEFT_BROW, 1].mean() < eyes_y < xy[lm.NOSE_TIP, 1] < xy[lm.LIPS_OUTER, 1].mean() < xy[lm.CHIN, 1]
    # Subject's right eye is on the image's left.
    assert xy[lm.RIGHT_EYE, 0].mean() < xy[lm.NOSE_TIP, 0] < xy[lm.LEFT_EYE, 0].mean()
    assert xy[lm.MOUTH_CORNERS[0], 0] < xy[lm.MOUTH_CORNERS[1], 0]
    yaw, pitch, roll = face.pose()
    assert abs(yaw) < 10 and abs(pitch) < 20 and abs(roll) < 10


def test_contours_are_ordered_polygons(face: FaceLandmarks) -> None:
    xy = face.xy
    # Inner lips lie inside the outer lips; the outline encloses every landmark of the features.
    assert _polygon_contains(xy[lm.LIPS_OUTER], xy[lm.LIPS_INNER])
    assert _polygon_contains(xy[lm.FACE_OVAL], xy[np.r_[lm.LIPS_OUTER, lm.LEFT_EYE, lm.RIGHT_EYE]])
    for polygon in (lm.LIPS_OUTER, lm.LIPS_INNER, lm.LEFT_EYE, lm.RIGHT_EYE, lm.FACE_OVAL, lm.LEFT_BROW, lm.RIGHT_BROW):
        assert _is_simple_polygon(xy[polygon])
    assert not _is_simple_polygon(xy[lm.LIPS_OUTER[[0, 5, 1, 6, 2, 7, 3]]])  # the check can fail
    for upper, lower in (
        (lm.LIPS_OUTER_UPPER, lm.LIPS_OUTER_LOWER),
        (lm.LIPS_INNER_UPPER, lm.LIPS_INNER_LOWER),
        (lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER),
        (lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER),
    ):
        assert upper[0] == lower[0] and upper[-1] == lower[-1]
        assert (xy[upper[1:-1], 1] <= xy[lower[1:-1], 1] + 0.5).all()


def test_openings(face: FaceLandmarks) -> None:
    # The astronaut smiles with her teeth showing: the lips are apart, the eyes open.
    assert 0.08 < lm.mouth_opening(face) < 0.3
    left, right = lm.eye_openings(face)
    assert 0.2 < left < 0.45 and 0.2 < right < 0.45
    closed = face.points.copy()
    closed[lm.LIPS_INNER_LOWER] = closed[lm.LIPS_INNER_UPPER]
    closed[lm.LEFT_EYE_UPPER] = closed[lm.LEFT_EYE_LOWER]
    shut = FaceLandmarks(closed)
    assert lm.mouth_opening(shut) == pytest.approx(0.0, abs=1e-6)
    assert lm.eye_openings(shut)[0] == pytest.approx(0.0, abs=1e-6)
    # Openings are ratios: scaling the whole face changes nothing.
    assert lm.mouth_opening(FaceLandmarks(face.points * 3)) == pytest.approx(lm.mouth_opening(face), rel=1e-5)


def test_pose_follows_image_rotation_and_mirroring(portrait: np.ndarray, face: FaceLandmarks) -> None:
    _, _, roll0 = face.pose()
    rotation = cv2.getRotationMatrix2D((256, 256), 20, 1.0)  # counter-clockwise on the image
    turned = cv2.warpAffine(portrait, rotation, (512, 512), borderMode=cv2.BORDER_REFLECT)
    _, _, roll = detect_faces(turned)[0].pose()
    assert roll - roll0 == pytest.approx(-20, abs=6)
    cameraman = cv2.imread(str(IMAGES / "cameraman.png"))
    yaw = detect_faces(cameraman)[0].pose()[0]
    mirrored_yaw = detect_faces(np.ascontiguousarray(cameraman[:, ::-1]))[0].pose()[0]
    assert yaw > 35 and mirrored_yaw < -35  # he looks into his camera, towards the image's right


def test_select_face_errors(portrait: np.ndarray) -> None:
    with pytest.raises(UserError, match=r"no face found in cat\.png: use a photo where one face looks at the camera"):
        select_face(detect_faces(cv2.imread(str(IMAGES / "cat.png"))), None, "cat.png")
    with pytest.raises(UserError, match=r"turned \d+° away from the camera"):
        select_face(detect_faces(cv2.imread(str(IMAGES / "cameraman.png"))), None, "cameraman.png")
    small = cv2.resize(portrait, (256, 256), interpolation=cv2.INTER_AREA)
    with pytest.raises(UserError, match=r"only \d+ px wide; at least 60 px is needed"):
        select_face(detect_faces(small), None, "small.png")


def test_several_faces_largest_first(portrait: np.ndarray) -> None:
    group = np.full((512, 960, 3), 200, np.uint8)
    group[:, :512] = portrait
    group[56:456, 540:940] = cv2.resize(portrait, (400, 400), interpolation=cv2.INTER_AREA)
    faces = detect_faces(group)
    assert len(faces) == 2
    assert faces[0].width > faces[1].width and faces[0].center[0] < 512 < faces[1].center[0]
    chosen, notice = select_face(faces, None, "group.png")
    assert chosen is faces[0]
    assert notice == "found 2 faces in group.png; animating the largest (use --face-index N to choose)"
    chosen, notice = select_face(faces, 1, "group.png")
    assert chosen is faces[1] and notice is None
    with pytest.raises(UserError, match=r"--face-index 2 is out of range: group.png has 2 faces"):
        select_face(faces, 2, "group.png")


def test_small_face_in_large_photo_is_found(portrait: np.ndarray, face: FaceLandmarks) -> None:
    canvas = np.full((2000, 2000, 3), 128, np.uint8)
    canvas[1400:1912, 1300:1812] = portrait
    found = detect_faces(canvas)
    assert len(found) == 1
    offset = np.array([1300, 1400], dtype=np.float32)
    assert np.abs(found[0].xy - offset - face.xy).mean() < 3.0


def test_detection_is_thread_safe(portrait: np.ndarray, face: FaceLandmarks) -> None:
    results: list[list[FaceLandmarks]] = []
    threads = [threading.Thread(target=lambda: results.append(detect_faces(portrait))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    for faces in results:
        assert np.allclose(faces[0].points, face.points, atol=0.01)


def _moving_clip(portrait: np.ndarray, count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The portrait sliding sideways on a larger canvas: a real face with a known trajectory."""
    shifts = np.round(40 * np.sin(np.linspace(0, 2 * np.pi, count))).astype(int)
    frames = []
    for shift in shifts:
        canvas = np.full((512, 640, 3), 90, np.uint8)
        canvas[:, 64 + shift : 576 + shift] = portrait
        frames.append(canvas)
    return frames, shifts


def test_tracker_follows_the_face_and_fills_gaps(portrait: np.ndarray, face: FaceLandmarks) -> None:
    frames, shifts = _moving_clip(portrait, 40)
    blank = np.full_like(frames[0], 90)
    frames[20] = frames[21] = blank  # the face leaves for two frames
    track = VideoLandmarkTracker(fps=25.0, source_name="clip.mp4").track(frames)
    assert len(track) == 40
    nose_x = np.array([f.xy[lm.NOSE_TIP, 0] for f in track])
    expected = face.xy[lm.NOSE_TIP, 0] + 64 + shifts
    assert np.abs(nose_x - expected).max() < 4.0  # including the interpolated gap
    raw = VideoLandmarkTracker(fps=25.0, smooth=False).track(frames)

    # The face only slides sideways, so any vertical frame-to-frame motion of the lips is mesh jitter (raw ~0.09 px,
    # smoothed ~0.02 px).
    def jitter(faces: list[FaceLandmarks]) -> float:
        return float(np.std(np.diff([f.xy[lm.LIPS_OUTER].mean(axis=0)[1] for f in faces])))

    assert jitter(track) < 0.5 * jitter(raw)


def test_tracker_refuses_a_clip_without_the_face(portrait: np.ndarray) -> None:
    frames, _ = _moving_clip(portrait, 20)
    for i in range(5, 20):
        frames[i] = np.full_like(frames[i], 90)
    with pytest.raises(UserError, match=r"not visible in 15 of 20 frames of clip\.mp4"):
        VideoLandmarkTracker(source_name="clip.mp4").track(frames)
