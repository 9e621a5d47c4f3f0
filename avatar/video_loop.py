"""A video avatar's idle loop: the clip's own frames played back and forth, with where the face is in each.

The mouth and jaw are animated on one reference frame (the patch banks); each loop frame carries
the similarity transform that maps the reference face onto its face, so the animated mouth can
be laid onto the moving head. Frames are kept JPEG-compressed (decoded one per rendered frame),
so a clip costs tens of megabytes in memory and in the cache instead of gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from avatar.landmarks import VideoLandmarkTracker
from core.errors import UserError

MAX_LOOP_SECONDS = 10.0
"""Longest stretch of the clip used for the idle loop (played forwards then backwards)."""
STABLE_POINTS = np.array(
    [33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 10, 151, 9, 8, 234, 454, 127, 356, 70, 300, 105, 334, 46, 276]
)
"""Landmarks that do not move with the mouth or the lids: they carry the head's motion."""
LOWER_FACE = np.array(
    [234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 2]
)
"""Cheeks, jaw and chin up to the nose: where the colour of the laid-on mouth is matched."""


@dataclass
class VideoLoop:
    jpegs: np.ndarray
    """All frames' JPEG bytes, concatenated (uint8)."""
    offsets: np.ndarray
    """(frames + 1,) int64: frame i is jpegs[offsets[i]:offsets[i + 1]]."""
    transforms: np.ndarray
    """(frames, 2, 3) float32: reference-frame pixels → this frame's pixels."""
    gains: np.ndarray
    """(frames, 3) float32 per-channel colour gain of the lower face relative to the reference frame, so the
    laid-on mouth follows the clip's exposure and white-balance drift."""
    fps: float

    QUALITY: ClassVar[int] = 92

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def frame(self, index: int) -> np.ndarray:
        data = self.jpegs[self.offsets[index] : self.offsets[index + 1]]
        return cv2.imdecode(data, cv2.IMREAD_COLOR)

    def index_at(self, seconds: float) -> int:
        """Ping-pong: forwards through the loop, then backwards, so it never jumps."""
        n = len(self)
        if n <= 1:
            return 0
        period = 2 * n - 2
        position = round(seconds * self.fps) % period
        return position if position < n else period - position


def loop_length(frames: int, fps: float) -> int:
    return max(1, min(frames, int(MAX_LOOP_SECONDS * fps)))


def _lower_face_gain(reference: np.ndarray, frame: np.ndarray, matrix: np.ndarray, mask: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    placed = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_NEAREST) > 0
    source = mask > 0
    if placed.sum() < 16 or source.sum() < 16:
        return np.ones(3, np.float32)
    ratio = frame[placed].reshape(-1, 3).mean(axis=0) / np.maximum(reference[source].reshape(-1, 3).mean(axis=0), 1.0)
    return np.clip(ratio, 0.7, 1.4).astype(np.float32)


def build_loop(
    frames: list[np.ndarray],
    fps: float,
    reference: np.ndarray,
    reference_xy: np.ndarray,
    face_index: int | None,
    name: str,
) -> tuple[VideoLoop, list[str]]:
    """Track the face through the first seconds of the clip and compress the frames."""
    count = loop_length(len(frames), fps)
    clip = frames[:count]
    tracker = VideoLandmarkTracker(fps=fps, face_index=face_index, source_name=name)
    track = tracker.track(clip)
    transforms = np.empty((count, 2, 3), np.float32)
    gains = np.empty((count, 3), np.float32)
    anchors = reference_xy[STABLE_POINTS].astype(np.float32)
    lower_face = np.zeros(reference.shape[:2], np.uint8)
    cv2.fillPoly(lower_face, [np.round(reference_xy[LOWER_FACE]).astype(np.int32)], 255)
    for i, face in enumerate(track):
        matrix, _ = cv2.estimateAffinePartial2D(anchors, face.xy[STABLE_POINTS].astype(np.float32))
        if matrix is None:
            raise UserError(f"cannot follow the face through {name}: use a steadier clip of the face")
        transforms[i] = matrix
        gains[i] = _lower_face_gain(reference, clip[i], matrix, lower_face)
    encoded = []
    for frame in clip:
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, VideoLoop.QUALITY])
        if not ok:
            raise UserError(f"cannot compress the frames of {name}")
        encoded.append(data.reshape(-1))
    offsets = np.zeros(count + 1, np.int64)
    offsets[1:] = np.cumsum([len(e) for e in encoded])
    notices = list(tracker.notices)
    if len(frames) > count:
        notices.append(loop_notice(name))
    return VideoLoop(np.concatenate(encoded), offsets, transforms, gains, float(fps)), notices


def loop_notice(name: str) -> str:
    return f"video avatar {name}: the first {MAX_LOOP_SECONDS:.0f} s of the clip are used as the idle loop"
