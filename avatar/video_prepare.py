"""Prepare a video avatar from a clip streamed twice: once for the face's landmarks, once for the loop's frames.

The first pass tracks the face through the whole clip (frames scaled down for the mesh) and keeps only the
landmarks and the best reference frame: the most frontal one with the mouth closed, on which the mouth and
eye banks are built exactly as for a photo. The second pass decodes the clip again, crops each frame like
the reference, and measures on that frame alone where and how the animated mouth goes (`VideoLoop`). A
one-minute 1080p clip thus never sits decoded in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import cv2
import numpy as np

from avatar import landmarks as lm
from avatar import prepare
from avatar.face_rig import face_frame
from avatar.mouth_build import SHAPE_LEVELS
from avatar.orientation import turn
from avatar.source import AvatarSource, VideoClip
from avatar.video_loop import STABLE_POINTS, MouthPlacement, VideoLoop
from avatar.video_skin import ShadingFit, lower_face, skin_coloured, skin_mask
from core.errors import UserError

MIN_LOOP_SECONDS = 1.0
"""A shorter video has no idle loop worth playing back and forth: its best frame is animated as a photo."""
NATURAL_LOOP_SECONDS = 5.0
"""Below this a video's back-and-forth idle loop is noticeable (the user is told)."""
TURN_SEARCH_SECONDS = 1.0
"""The loop's two ends are picked within this far of the clip's ends, where the head moves slowest."""
MAX_FIT_ERROR = 0.1
"""Anchor misfit (eye distances, RMS) beyond which a frame's face is too unlike the reference to lay a mouth on
(a turn the affine map cannot follow, or a bad mesh fit): the nearest good frame is shown instead."""
MAX_YAW_DEGREES = 30.0
FACE_SEARCH_SECONDS = 2.0
"""How far into a clip the face is looked for to decide which way up the clip is."""
LARGE_LOOP_BYTES = 300_000_000
"""A loop whose compressed frames take more than this (a long clip at full HD) is worth a notice: it is held in
memory and in the cache, and each frame costs more to decode."""
SHADING_SMOOTH_FRAMES = 5
"""Colour gains are averaged over this many neighbouring frames: exposure drifts slowly, the mesh jitters."""

Progress = Callable[[float], None]


def prepare_video(
    source: AvatarSource, face_index: int | None, size: tuple[int, int] | None, progress: Progress | None = None
) -> prepare.PreparedAvatar:
    """The avatar for a video source: banks from its best frame, and the loop of all its frames."""
    assert source.clip is not None
    step = progress or (lambda done: None)
    clip = source.clip
    name = source.path.name
    turns, notices = _upright_turns(_first_face_frame(clip), face_index, name)
    tracker = lm.VideoLandmarkTracker(fps=clip.fps, face_index=face_index, source_name=name)
    best = _BestFrame()

    def observe(index: int, frame: np.ndarray, points: np.ndarray | None) -> None:
        best.offer(frame, points)
        if index % 10 == 0:
            step(0.35 * min(1.0, index / clip.expected_frames))

    points = tracker.track_points(_upright_frames(clip, turns), observe)
    notices += [n for n in tracker.notices if n not in notices]
    count, seconds = len(points), len(points) / clip.fps
    if best.frame is None:
        raise UserError(f"no face found in {name}: use a clip where one face looks at the camera")
    if seconds < MIN_LOOP_SECONDS:
        avatar = prepare.build_avatar([best.frame], name, source.digest, face_index, size, progress=step)
        notices.insert(
            0,
            f"video avatar {name} is only {seconds:.1f} s long: its best frame is animated like a photo "
            f"(a {NATURAL_LOOP_SECONDS:.0f}-10 s clip gives a natural idle loop)",
        )
        avatar.notices = [*notices, *(n for n in avatar.notices if n not in notices), *clip.notices]
        return avatar
    if seconds < NATURAL_LOOP_SECONDS:
        notices.append(
            f"video avatar {name} is {seconds:.1f} s long: it is played forwards and backwards as the "
            f"idle loop, which shows at this length ({NATURAL_LOOP_SECONDS:.0f}-60 s looks natural)"
        )
    avatar = prepare.build_avatar(
        [best.frame], name, source.digest, face_index, size, progress=lambda done: step(0.35 + 0.25 * done)
    )
    first, last = _loop_ends(points, clip.fps) if seconds >= NATURAL_LOOP_SECONDS else (0, count - 1)
    placement = _Placement(best.frame, face_index, name, size)
    loop = _build_loop(
        avatar, _upright_frames(clip, turns), points, tracker.found, placement, (first, last), clip.fps, step
    )
    avatar.is_video = True
    avatar.loop = loop
    if loop.jpegs.nbytes > LARGE_LOOP_BYTES:
        w, h = avatar.size
        notices.append(
            f"video avatar {name}: its {len(loop)} frames at {w}×{h} take {loop.jpegs.nbytes / 1e6:.0f} MB in memory "
            "and in the cache; a smaller --size (e.g. 720x720) or a shorter clip takes less and renders faster"
        )
    avatar.notices = [*notices, *(n for n in avatar.notices if n not in notices), *clip.notices]
    step(1.0)
    return avatar


def _upright_turns(first: np.ndarray, face_index: int | None, name: str) -> tuple[int, list[str]]:
    """Quarter turns that put the clip's face upright (a phone clip filmed sideways without a rotation tag)."""
    turned, _, _, notices = prepare.find_upright_face([first], 0, face_index, name)
    return next(t for t in range(4) if _same(turn(first, t), turned[0])), notices


def _first_face_frame(clip: VideoClip) -> np.ndarray:
    """The first frame (of every fifth, within the first two seconds) that shows a face, else the first frame: a
    clip may open on a fade or an empty room."""
    first = None
    for index, frame in enumerate(clip.frames()):
        if index >= FACE_SEARCH_SECONDS * clip.fps:
            break
        first = frame if first is None else first
        if index % 5 == 0 and lm.detect_faces(frame):
            return frame
    assert first is not None
    return first


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b)


def _upright_frames(clip: VideoClip, turns: int) -> Iterator[np.ndarray]:
    for frame in clip.frames():
        yield turn(frame, turns)


class _BestFrame:
    """The most frontal frame with the mouth closed, kept while the clip streams past (one frame in memory)."""

    def __init__(self) -> None:
        self.frame: np.ndarray | None = None
        self.score = np.inf

    def offer(self, frame: np.ndarray, points: np.ndarray | None) -> None:
        if points is None:
            return
        face = lm.FaceLandmarks(points)
        yaw, pitch, _ = face.pose()
        score = abs(yaw) / 10 + abs(pitch) / 15 + lm.mouth_opening(face) * 10
        if score < self.score and lm.cut_off_edge(face, frame.shape[1], frame.shape[0]) is None:
            self.frame, self.score = frame.copy(), score


def _loop_ends(points: np.ndarray, fps: float) -> tuple[int, int]:
    """First and last frames of the ping-pong loop: where the head moves least near the clip's ends, so the
    reversal of its motion shows least."""
    anchors = points[:, STABLE_POINTS, :2]
    speed = np.linalg.norm(np.diff(anchors, axis=0), axis=2).mean(axis=1)
    speed = np.convolve(np.pad(speed, 2, mode="edge"), np.ones(5) / 5, mode="valid")
    window = max(1, min(int(TURN_SEARCH_SECONDS * fps), len(points) // 4))
    first = int(np.argmin(speed[:window]))
    last = len(points) - 1 - int(np.argmin(speed[::-1][:window]))
    return first, last


class _Placement:
    """How each clip frame is cropped to the output, exactly like the reference frame the banks were built on."""

    def __init__(self, reference: np.ndarray, face_index: int | None, name: str, size: tuple[int, int] | None) -> None:
        self.size = size
        self.centre = np.zeros(2)
        self.scale, self.x0, self.y0 = 1.0, 0, 0
        if size is not None:
            face, _ = lm.pick_face(lm.detect_faces(reference), face_index, name)
            self.centre = face.center
            self.scale, self.x0, self.y0 = prepare._fit_geometry(reference.shape, size, face.center)

    def image(self, frame: np.ndarray) -> np.ndarray:
        return frame if self.size is None else prepare._fit(frame, self.size, self.centre)

    def points(self, points: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
        if self.size is None:
            return points[:, :2]
        h, w = frame_shape[:2]
        tw, th = self.size
        sx, sy = max(tw, round(w * self.scale)) / w, max(th, round(h * self.scale)) / h
        return points[:, :2] * (sx, sy) - (self.x0, self.y0)


def _build_loop(
    avatar: prepare.PreparedAvatar,
    frames: Iterator[np.ndarray],
    points: np.ndarray,
    found: np.ndarray,
    placement: _Placement,
    ends: tuple[int, int],
    fps: float,
    step: Progress,
) -> VideoLoop:
    first, last = ends
    count = last - first + 1
    reference = avatar.points[:, :2].astype(np.float64)
    x0, y0 = avatar.mouth_rect[:2]
    ref_iod = avatar.iod
    feather = max(1.0, 0.05 * ref_iod)
    fit = ShadingFit(_neutral_patch(avatar), _reference_skin(avatar))
    to_rect = np.array([[1.0, 0, x0], [0, 1.0, y0], [0, 0, 1.0]])
    transforms = np.zeros((count, 2, 3), np.float32)
    shading = np.zeros((count, 3, 3), np.float32)
    outlines = np.zeros((count, len(lower_face(reference, feather)[0]), 2), np.float32)
    drops = np.zeros_like(outlines)
    good = np.zeros(count, bool)
    encoded: list[np.ndarray] = []
    for index, frame in enumerate(frames):
        if index < first:
            continue
        if index > last:
            break
        i = index - first
        image = placement.image(frame)
        xy = placement.points(points[index], frame.shape).astype(np.float64)
        matrix, error = _affine(reference[STABLE_POINTS], xy[STABLE_POINTS])
        iod = face_frame(xy).iod
        transforms[i] = matrix
        outlines[i], drops[i] = lower_face(xy, feather * iod / ref_iod)
        gain = fit.fit(image, xy, matrix @ to_rect, iod)
        yaw = lm.FaceLandmarks(points[index]).pose()[0]
        good[i] = bool(found[index]) and gain is not None and error < MAX_FIT_ERROR * iod and abs(yaw) < MAX_YAW_DEGREES
        shading[i] = gain if gain is not None else np.array([[1.0, 0, 0]] * 3, np.float32)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, VideoLoop.QUALITY])
        if not ok:
            raise UserError(f"cannot compress the frames of {avatar.source_name}")
        encoded.append(data.reshape(-1))
        if i % 10 == 0:
            step(0.6 + 0.4 * i / count)
    if not good.any():
        raise UserError(
            f"the face in {avatar.source_name} cannot be followed through the clip: use a clip where the face "
            "stays frontal and in view"
        )
    count = len(encoded)
    offsets = np.zeros(count + 1, np.int64)
    offsets[1:] = np.cumsum([len(e) for e in encoded])
    shading = _smoothed(shading[:count], good[:count])
    placement = MouthPlacement(
        shown=_nearest_good(good[:count]),
        shading=shading,
        outlines=outlines[:count],
        drops=drops[:count],
        rect=np.array(avatar.mouth_rect, np.int64),
        mask=avatar.mouth_mask,
        feather=feather,
    )
    gains = np.ascontiguousarray(shading[:, :, 0])
    return VideoLoop(np.concatenate(encoded), offsets, transforms[:count], gains, float(fps), placement)


def _affine(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares affine map source → target and its RMS misfit (px)."""
    design = np.hstack([source, np.ones((len(source), 1))])
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = design @ solution - target
    return solution.T.astype(np.float32), float(np.sqrt(np.mean(np.sum(residual**2, axis=1))))


def _neutral_patch(avatar: prepare.PreparedAvatar) -> np.ndarray:
    """The closed, neutral mouth patch: the reference's skin as the colour fit compares it with a frame."""
    closed = int(np.argmin(np.abs(avatar.open_levels)))
    neutral = int(np.argmin(np.abs(SHAPE_LEVELS)))
    return avatar.mouth_bank[closed, neutral]


def _reference_skin(avatar: prepare.PreparedAvatar) -> np.ndarray:
    x0, y0, x1, y1 = avatar.mouth_rect
    xy = avatar.points[:, :2]
    skin = skin_coloured(avatar.image, skin_mask(avatar.image, xy, avatar.iod))
    return skin[y0:y1, x0:x1] & (avatar.mouth_mask > 0.5)


def _nearest_good(good: np.ndarray) -> np.ndarray:
    """For each frame, itself when good, else the nearest good frame."""
    indices = np.flatnonzero(good)
    positions = np.arange(len(good))
    nearest = np.abs(positions[:, None] - indices[None, :]).argmin(axis=1)
    return indices[nearest].astype(np.int32)


def _smoothed(shading: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Gains averaged over neighbouring good frames (a frame without its own fit takes its neighbours')."""
    weight = good.astype(np.float64)
    kernel = np.ones(SHADING_SMOOTH_FRAMES)
    total = np.apply_along_axis(lambda s: np.convolve(s, kernel, mode="same"), 0, shading * weight[:, None, None])
    norm = np.convolve(weight, kernel, mode="same")[:, None, None]
    fallback = shading[good].mean(axis=0) if good.any() else shading.mean(axis=0)
    return np.where(norm > 0, total / np.maximum(norm, 1e-9), fallback).astype(np.float32)
