"""A photo's idle loop for MuseTalk: a few seconds of the CPU engine's own idle motion (blinks, breathing, small
head motion), so a photo avatar is as alive under MuseTalk as under the CPU engine.

MuseTalk repaints only the lower face of each template frame; the eyes and the head's motion come from the
template. A photo has one frame, so without this the avatar would be frozen. The loop is treated exactly like a
video avatar's idle loop (played back and forth, one set of latents per frame), with each frame's head motion
as a similarity transform of the photo's landmarks.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar import landmarks as lm
from avatar.prepare import PreparedAvatar
from avatar.realtime import RealtimeRenderer
from avatar.video_loop import STABLE_POINTS, VideoLoop
from core.errors import UserError

IDLE_SECONDS = 4.0
IDLE_FPS = 25
SEED = 0


def photo_idle_loop(avatar: PreparedAvatar, liveliness: float) -> VideoLoop | None:
    """The CPU engine's idle frames of `avatar` and the head's motion in each; None for a frozen portrait."""
    if liveliness <= 0:
        return None
    renderer = RealtimeRenderer(avatar, fps=IDLE_FPS, liveliness=liveliness, seed=SEED)
    base = avatar.points[STABLE_POINTS, :2].astype(np.float64)
    count = round(IDLE_SECONDS * IDLE_FPS)
    encoded, transforms = [], np.empty((count, 2, 3), np.float32)
    for i in range(count):
        frame = renderer.render_next()
        transforms[i] = _head_transform(frame.image, base)
        ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, VideoLoop.QUALITY])
        if not ok:
            raise UserError(f"cannot compress the idle frames of {avatar.source_name}")
        encoded.append(data.reshape(-1))
    offsets = np.zeros(count + 1, np.int64)
    offsets[1:] = np.cumsum([len(e) for e in encoded])
    return VideoLoop(np.concatenate(encoded), offsets, transforms, np.ones((count, 3), np.float32), float(IDLE_FPS))


def _head_transform(image: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Where the head went in one idle frame: an affine fit of the re-detected stable landmarks (turns and nods
    included, which a roll-and-shift transform would miss); no motion when the face is not found."""
    faces = lm.detect_faces(image, max_faces=1)
    if not faces:
        return np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    found = faces[0].xy[STABLE_POINTS].astype(np.float64)
    design = np.hstack([base, np.ones((len(base), 1))])
    solution, *_ = np.linalg.lstsq(design, found, rcond=None)
    return solution.T.astype(np.float32)
