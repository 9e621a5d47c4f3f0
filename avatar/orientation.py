"""Which way up a face is in its picture, and the quarter turns that put it upright.

Phone photos often arrive sideways or upside down (the EXIF rotation lost on the way). mediapipe's
face mesh finds the axis of a turned face reliably, but not which end is up: on a face that is more
than about 100° from upright it fits an upright-looking mesh with the eyes on the mouth (its roll is
then off by 180°). So the mesh gives the two candidate orientations, and mediapipe's face detectors,
which score a face far higher the right way up than upside down, choose between them.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from avatar import landmarks as lm

_ROTATIONS = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}
SIDEWAYS_DEGREES = 45.0
"""A face rolled further than this lies closer to its side than upright; up to ~100° the mesh fits it correctly."""
_detectors = threading.local()


def turn(image: np.ndarray, quarter_turns: int) -> np.ndarray:
    """The image turned `quarter_turns` × 90° counter-clockwise."""
    quarter_turns %= 4
    return np.ascontiguousarray(cv2.rotate(image, _ROTATIONS[quarter_turns])) if quarter_turns else image


def upright_turns(image: np.ndarray, face: lm.FaceLandmarks) -> int:
    """Quarter turns counter-clockwise that bring `face` (found in `image`) nearest to upright.

    Turning the picture a quarter counter-clockwise lowers the face's roll by 90°, so the mesh's roll
    names one candidate; the other is half a turn away, in case the mesh was fitted upside down.
    """
    _, _, roll = face.pose()
    candidate = round(roll / 90.0) % 4
    other = (candidate + 2) % 4
    return candidate if _upright_score(image, face, candidate) >= _upright_score(image, face, other) else other


def _upright_score(image: np.ndarray, face: lm.FaceLandmarks, quarter_turns: int) -> float:
    """How sure both face detectors (near and far range) are of `face` in the picture turned this way."""
    turned = cv2.cvtColor(turn(image, quarter_turns), cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    x, y = face.center
    centre = {0: (x, y), 1: (y, width - 1 - x), 2: (width - 1 - x, height - 1 - y), 3: (height - 1 - y, x)}
    cx, cy = centre[quarter_turns]
    th, tw = turned.shape[:2]
    score = 0.0
    for detector in _face_detectors():
        with lm.native_stderr_silenced():
            result = detector.process(turned)
        scores = [
            float(d.score[0])
            for d in getattr(result, "detections", None) or []
            if np.hypot(
                (d.location_data.relative_bounding_box.xmin + d.location_data.relative_bounding_box.width / 2) * tw
                - cx,
                (d.location_data.relative_bounding_box.ymin + d.location_data.relative_bounding_box.height / 2) * th
                - cy,
            )
            < face.width
        ]
        score += max(scores, default=0.0)
    return score


def _face_detection() -> ModuleType:
    from mediapipe.python.solutions import face_detection

    return face_detection


def _face_detectors() -> tuple[Any, Any]:
    """The short- and full-range detectors, one pair per thread (mediapipe graphs are not thread-safe)."""
    if not hasattr(_detectors, "pair"):
        module = _face_detection()
        _detectors.pair = tuple(module.FaceDetection(model_selection=m, min_detection_confidence=0.1) for m in (0, 1))
    return _detectors.pair
