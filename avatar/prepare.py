"""Prepare an avatar once: landmarks, face rig, and banks of pre-rendered mouth and eye patches, cached on disk.

Per frame the renderer then only blends a few small patches and does one small remap for head
motion, which is what makes hundreds of frames per second possible on one CPU core. All the
expensive, quality-critical work (exact mesh warps, the mouth interior) happens here, once per
avatar; the result is keyed by the file's hash, the renderer version and the parameters.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from avatar import landmarks as lm
from avatar import video_prepare
from avatar.brows import BrowRig
from avatar.eyelids import EyeLids
from avatar.face_rig import FaceFrame, eye_region, face_frame, mouth_region
from avatar.head_mask import head_weight
from avatar.lip_contour import refine_inner_lips
from avatar.mouth_build import build_mouth_banks
from avatar.orientation import SIDEWAYS_DEGREES, turn, upright_turns
from avatar.patch_mesh import PatchMesh, Rect, clip_rect
from avatar.source import load_source
from avatar.video_loop import VideoLoop
from core.config import output_size_problem
from core.errors import UserError
from core.hashing import file_sha256
from core.npz import save_npz

RENDERER_VERSION = "realtime-13"
"""Part of every cache key: 12 turns sideways and upside-down photos upright (older caches kept them as they were);
13 places a video's mouth from each frame's own landmarks and skin, adds concerned brows (negative brow levels)
to the eye bank and the smile and tongue banks to the mouth."""
BLINK_LEVELS = np.linspace(0.0, 1.0, 6, dtype=np.float32)
BROW_LEVELS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=np.float32)
"""Negative levels are concern (inner brows up and together), positive ones raised brows."""

Progress = Callable[[float], None]
"""Told the share of the preparation done (0.0 ... 1.0)."""

_ARRAYS = (
    "image", "points", "mouth_bank", "open_levels", "eye_bank", "head_weight", "mouth_mask",
    "smile_bank", "smile_levels", "tongue_bank", "tongue_alpha",
)  # fmt: skip


@dataclass
class PreparedAvatar:
    image: np.ndarray
    """The still frame everything is drawn on (BGR uint8, output size)."""
    points: np.ndarray
    """(478, 3) landmarks of the animated face in `image` pixels."""
    roi: Rect
    """The head region: every pixel outside it is the source's own in every frame."""
    mouth_rect: Rect
    eye_rect: Rect
    mouth_bank: np.ndarray
    """(openings, shapes, h, w, 3) uint8 mouth patches; opening levels in `open_levels`, shapes in SHAPE_LEVELS."""
    open_levels: np.ndarray
    eye_bank: np.ndarray
    """(blink levels, brow levels, h, w, 3) uint8 eye-and-brow patches."""
    head_weight: np.ndarray
    """(roi h, roi w) float32: how much each pixel follows head motion: 1 on the head, 0 off it and at the border."""
    mouth_mask: np.ndarray
    """(mouth h, mouth w) float32 feathered weight of the mouth patch over a video frame (0 at its border)."""
    smile_bank: np.ndarray
    """(layers, openings, shapes, h, w, 3) uint8: `mouth_bank` at the other smile amounts in `smile_levels`."""
    smile_levels: np.ndarray
    """Ascending smile amounts (0 neutral … 1 full) of `mouth_bank` (the one equal to `photo_smile`) and the
    `smile_bank` layers."""
    tongue_bank: np.ndarray
    """(openings, h, w, 3) uint8 mouth patches with the tongue raised (l, n, d, t, th) at the middle shape."""
    tongue_alpha: np.ndarray
    """(openings, h, w) uint8: where `tongue_bank` differs from the plain patch (255 = all tongue)."""
    tongue_box: Rect
    """Mouth-patch box holding all of `tongue_alpha` that is not zero."""
    photo_smile: float
    """How much the photo smiles: 0 neutral … 1 a full smile."""
    pivot: tuple[float, float]
    iod: float
    teeth: str
    source_name: str
    digest: str
    is_video: bool = False
    cache_path: Path | None = None
    prepare_seconds: float = 0.0
    load_seconds: float = 0.0
    from_cache: bool = False
    notices: list[str] = field(default_factory=list)
    loop: VideoLoop | None = None
    """For a video source: the clip's frames and head motion, onto which the mouth is laid."""

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    def summary(self) -> str:
        fx, fy, fw, fh = lm.FaceLandmarks(self.points).bbox
        mh, mw = self.mouth_bank.shape[2:4]
        source = (
            f"loaded from cache in {self.load_seconds * 1000:.0f} ms "
            f"(first preparation took {self.prepare_seconds:.1f} s)"
            if self.from_cache
            else f"prepared in {self.prepare_seconds:.1f} s"
        )
        return (
            f"{self.source_name}: {self.size[0]}×{self.size[1]} px, face {fw}×{fh} px at ({fx}, {fy}), "
            f"eye distance {self.iod:.0f} px; head region {self.roi[2] - self.roi[0]}×{self.roi[3] - self.roi[1]} px; "
            f"{self.mouth_bank.shape[0]}×{self.mouth_bank.shape[1]} mouth shapes of {mw}×{mh} px and "
            f"{self.eye_bank.shape[0]}×{self.eye_bank.shape[1]} eye/brow states; teeth {self.teeth}; "
            f"{source}; cache {self.cache_path}."
        )


def _file_digest(path: Path) -> str:
    return file_sha256(path) if path.is_file() else ""


def _cache_file(cache_dir: Path, path: Path, digest: str, face_index: int | None, size: tuple[int, int] | None) -> Path:
    key = hashlib.sha256(f"{digest}|{RENDERER_VERSION}|{face_index}|{size}".encode()).hexdigest()[:20]
    return cache_dir / f"{path.stem[:40]}-{key}.npz"


def _even_size(output_size: tuple[int, int] | None) -> tuple[tuple[int, int] | None, list[str]]:
    """The output size checked and made even (H.264 stores only even sizes), with a note when it changed."""
    if output_size is None:
        return None, []
    if len(output_size) != 2:
        raise UserError(f"output size {output_size} is not usable: give [width, height]")
    width, height = (int(v) for v in output_size)
    if problem := output_size_problem(width, height):
        raise UserError(f"output size {width}x{height} cannot be used: {problem}")
    even = (width - width % 2, height - height % 2)
    if even == (width, height):
        return even, []
    return even, [f"output size {width}x{height} made even: {even[0]}x{even[1]} (H.264 video needs even sides)"]


def prepare_avatar(
    source: str | Path,
    cache_dir: Path,
    face_index: int | None = None,
    output_size: tuple[int, int] | None = None,
    progress: Progress | None = None,
) -> tuple[PreparedAvatar, list[str]]:
    """The prepared avatar for `source` and notices for the user; from the cache when nothing changed."""
    path = Path(source)
    size, size_notices = _even_size(output_size)
    start = time.perf_counter()
    digest = _file_digest(path)
    cache_path = _cache_file(Path(cache_dir), path, digest, face_index, size) if digest else None
    if cache_path is not None and cache_path.is_file():
        cached = _load(cache_path, digest)
        if cached is not None:
            cached.load_seconds = time.perf_counter() - start
            return cached, list(cached.notices)
    loaded = load_source(path, stream_video=True)
    if loaded.clip is not None:
        avatar = video_prepare.prepare_video(loaded, face_index, size, progress)
    else:
        avatar = build_avatar(loaded.frames, path.name, loaded.digest, face_index, size, progress=progress)
    avatar.notices = [*size_notices, *loaded.notices, *avatar.notices]
    avatar.prepare_seconds = time.perf_counter() - start
    if cache_path is not None:
        try:
            _save(cache_path, avatar)
            avatar.cache_path = cache_path
        except OSError as error:
            avatar.notices.append(
                f"could not write the avatar cache in {cache_dir} ({error.strerror}); preparing again next time"
            )
    return avatar, list(avatar.notices)


def _turned_point(point: np.ndarray, shape: tuple[int, ...], quarter_turns: int) -> np.ndarray:
    """Where `point` of an image of `shape` lands when the image is turned `quarter_turns` counter-clockwise."""
    height, width = shape[:2]
    x, y = point
    return np.array(
        {0: (x, y), 1: (y, width - 1 - x), 2: (width - 1 - x, height - 1 - y), 3: (height - 1 - y, x)}[
            quarter_turns % 4
        ]
    )


def _nearest_face(image: np.ndarray, point: np.ndarray) -> lm.FaceLandmarks | None:
    """The face found in `image` nearest to `point` (the chosen face after the picture was turned or cropped)."""
    faces = lm.detect_faces(image)
    return min(faces, key=lambda f: float(np.linalg.norm(f.center - point))) if faces else None


def find_upright_face(
    frames: list[np.ndarray], index: int, face_index: int | None, name: str
) -> tuple[list[np.ndarray], int, lm.FaceLandmarks, list[str]]:
    """Find the face to animate and turn the picture (every frame of a video) so the face is upright.

    Returns the frames, the index of the reference frame, the face in it and notices for the user.
    """
    face, notice = lm.pick_face(lm.detect_faces(frames[index]), face_index, name)
    notices = [notice] if notice else []
    total = 0
    turns = upright_turns(frames[index], face)
    for _ in range(2):
        if not turns:
            break
        target = _turned_point(face.center, frames[index].shape, turns)
        frames = [turn(f, turns) for f in frames]
        found = _nearest_face(frames[index], target)
        if found is None:
            raise UserError(f"the face in {name} is lost when the picture is turned upright: use an upright photo")
        face, total = found, (total + turns) % 4
        # A face tilted near a diagonal can land on its side; a sideways fit is reliable, so it says which way.
        roll = face.pose()[2]
        turns = round(roll / 90.0) % 4 if abs(roll) > SIDEWAYS_DEGREES else 0
    if total:
        way = "upside down" if total == 2 else "on its side"
        notices.append(f"the face in {name} was {way}: the picture was turned upright")
    lm.check_face(face, name)
    if edge := lm.cut_off_edge(face, frames[index].shape[1], frames[index].shape[0]):
        raise UserError(
            f"the face in {name} is cut off at the {edge} edge of the picture: the eyes, brows and mouth "
            "(with room below it for the jaw) must all be in it; use a photo that shows the whole face"
        )
    return frames, index, face, notices


def _fitted(
    image: np.ndarray, face: lm.FaceLandmarks, size: tuple[int, int], name: str
) -> tuple[np.ndarray, lm.FaceLandmarks]:
    """The picture scaled and cropped to the output size around the face, and the face in it; an output size
    at which the face cannot be animated is blamed, not the photo."""
    tw, th = size
    scale, x0, y0 = _fit_geometry(image.shape, size, face.center)
    at = f"at output size {tw}x{th}"
    if face.width * scale < lm.MIN_FACE_PX:
        raise UserError(
            f"{at} the face in {name} is only {face.width * scale:.0f} px wide (at least {lm.MIN_FACE_PX} px is "
            "needed): use a larger --size"
        )
    placed = lm.FaceLandmarks(face.points * np.float32(scale)).translated(-x0, -y0)
    if edge := lm.cut_off_edge(placed, tw, th):
        wider = "a wider" if edge in ("left", "right") else "a taller"
        raise UserError(
            f"{at} the face in {name} does not fit: the {edge} edge cuts off part of it; use {wider} --size"
        )
    fitted = _fit(image, size, face.center)
    # The chosen face is the one nearest to where it was moved, not the largest in the crop.
    found = _nearest_face(fitted, placed.center)
    if found is None or found.width < lm.MIN_FACE_PX or lm.cut_off_edge(found, tw, th):
        raise UserError(f"{at} the face in {name} cannot be animated any more: use a larger --size")
    return fitted, found


def _fit_geometry(shape: tuple[int, ...], size: tuple[int, int], centre: np.ndarray) -> tuple[float, int, int]:
    """(scale, x0, y0): scaling by `scale` covers `size`; the crop at (x0, y0) of the scaled picture is centred
    on `centre` as far as the picture allows."""
    h, w = shape[:2]
    tw, th = size
    scale = max(tw / w, th / h)
    cx, cy = centre * scale
    x0 = int(np.clip(round(cx - tw / 2), 0, max(tw, round(w * scale)) - tw))
    y0 = int(np.clip(round(cy - th / 2), 0, max(th, round(h * scale)) - th))
    return scale, x0, y0


def _fit(image: np.ndarray, size: tuple[int, int], centre: np.ndarray) -> np.ndarray:
    """Scale to cover `size` and crop around the face."""
    h, w = image.shape[:2]
    tw, th = size
    scale, x0, y0 = _fit_geometry(image.shape, size, centre)
    resized = cv2.resize(
        image,
        (max(tw, round(w * scale)), max(th, round(h * scale))),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
    )
    return np.ascontiguousarray(resized[y0 : y0 + th, x0 : x0 + tw])


def build_avatar(
    frames: list[np.ndarray],
    name: str,
    digest: str,
    face_index: int | None = None,
    size: tuple[int, int] | None = None,
    progress: Progress | None = None,
) -> PreparedAvatar:
    """The avatar for a photo (a video's reference frame too: `video_prepare` adds the loop)."""
    step = progress or (lambda done: None)
    notices: list[str] = []
    frames, index, face, found_notices = find_upright_face(frames, 0, face_index, name)
    notices += found_notices
    image = frames[index]
    if size is not None and (image.shape[1], image.shape[0]) != size:
        image, face = _fitted(image, face, size, name)
    step(0.05)
    xy = refine_inner_lips(image, face.xy.astype(np.float64), face_frame(face.xy).iod)
    points = face.points.copy()
    points[:, :2] = xy
    h, w = image.shape[:2]
    frame = face_frame(xy)
    iod = frame.iod

    ex0, ey0, ex1, ey1 = eye_region(xy, iod)
    eye_rect = clip_rect((ex0, ey0, ex1, min(ey1, xy[lm.NOSE_TIP][1] - 0.05 * iod)), w, h)
    mx0, my0, mx1, my1 = mouth_region(xy, frame)
    mouth_rect = clip_rect((mx0, max(my0, eye_rect[3]), mx1, my1), w, h)

    mouths = build_mouth_banks(image, xy, frame, mouth_rect, lambda done: step(0.05 + 0.8 * done))

    eye_rig = BrowRig(xy, frame)
    eye_mesh = PatchMesh(xy, eye_rect, iod)
    lids = EyeLids(image, xy, frame, eye_rect)
    brow_maps = [eye_mesh.warp_map(*eye_rig.controls(float(brow))) for brow in BROW_LEVELS]
    ew, eh = eye_mesh.size
    eye_bank = np.empty((len(BLINK_LEVELS), len(BROW_LEVELS), eh, ew, 3), np.uint8)
    for i, blink in enumerate(BLINK_LEVELS):
        closed = lids.paint(float(blink))
        for j, maps in enumerate(brow_maps):
            eye_bank[i, j] = cv2.remap(
                closed, maps[..., 0], maps[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
            )
    step(0.9)

    roi, weight, pivot = _head_region(image, xy, frame, (mouth_rect, eye_rect))
    step(1.0)
    return PreparedAvatar(
        image=np.ascontiguousarray(image),
        points=points,
        roi=roi,
        mouth_rect=mouth_rect,
        eye_rect=eye_rect,
        mouth_bank=mouths.mouth_bank,
        open_levels=mouths.open_levels,
        eye_bank=eye_bank,
        head_weight=weight,
        mouth_mask=_mouth_mask(xy, mouth_rect, iod),
        pivot=pivot,
        iod=iod,
        teeth="reused from the photo" if mouths.colours.reuse_teeth else "synthesized (the photo shows none)",
        source_name=name,
        digest=digest,
        notices=notices,
        smile_bank=mouths.smile_bank,
        smile_levels=mouths.smile_levels,
        tongue_bank=mouths.tongue_bank,
        tongue_alpha=mouths.tongue_alpha,
        tongue_box=mouths.tongue_box,
        photo_smile=mouths.photo_smile,
    )


def _head_region(
    image: np.ndarray, xy: np.ndarray, frame: FaceFrame, patches: tuple[Rect, ...]
) -> tuple[Rect, np.ndarray, tuple[float, float]]:
    """The head region (the head's silhouette and the animated patches), and a weight that is 1 on the head
    and exactly 0 on everything around it, so head motion never drags the background along."""
    h, w = image.shape[:2]
    weight = head_weight(image, xy, frame.iod)
    ys, xs = np.nonzero(weight)
    margin = 2
    box = [xs.min() - margin, ys.min() - margin, xs.max() + 1 + margin, ys.max() + 1 + margin]
    for x0, y0, x1, y1 in patches:
        box = [min(box[0], x0 - margin), min(box[1], y0 - margin), max(box[2], x1 + margin), max(box[3], y1 + margin)]
    roi = clip_rect(tuple(box), w, h)
    x0, y0, x1, y1 = roi
    region = np.ascontiguousarray(weight[y0:y1, x0:x1])
    chin = xy[lm.CHIN]
    pivot = (float(chin[0]), float(chin[1] + 0.6 * frame.iod))
    return roi, region, pivot


def _mouth_mask(xy: np.ndarray, rect: Rect, iod: float) -> np.ndarray:
    """Where the animated mouth patch replaces a video frame: the lower face and the jaw's travel below it,
    feathered, and exactly 0 at the patch border."""
    x0, y0, x1, y1 = rect
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round(xy[lm.FACE_OVAL] - (x0, y0)).astype(np.int32)], 255)
    radius = max(1, round(0.3 * iod))
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    weight = mask.astype(np.float32) / 255.0
    sigma = max(1.0, 0.06 * iod)
    weight = cv2.GaussianBlur(weight, (0, 0), sigma)
    ys, xs = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
    border = np.minimum.reduce([xs, x1 - x0 - 1 - xs, ys, y1 - y0 - 1 - ys]) / max(2.0, 0.12 * iod)
    return (weight * np.clip(border, 0.0, 1.0)).astype(np.float32)


def _save(path: Path, avatar: PreparedAvatar) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "version": RENDERER_VERSION,
        "roi": avatar.roi,
        "mouth_rect": avatar.mouth_rect,
        "eye_rect": avatar.eye_rect,
        "pivot": avatar.pivot,
        "iod": avatar.iod,
        "teeth": avatar.teeth,
        "source_name": avatar.source_name,
        "digest": avatar.digest,
        "is_video": avatar.is_video,
        "prepare_seconds": avatar.prepare_seconds,
        "notices": avatar.notices,
        "loop_fps": avatar.loop.fps if avatar.loop is not None else None,
        "loop_feather": avatar.loop.placement.feather if avatar.loop and avatar.loop.placement else None,
        "tongue_box": avatar.tongue_box,
        "photo_smile": avatar.photo_smile,
    }
    arrays = {name: getattr(avatar, name) for name in _ARRAYS}
    if avatar.loop is not None:
        arrays.update({f"loop_{name}": array for name, array in avatar.loop.arrays().items()})
    save_npz(path, meta, arrays)


def _load(path: Path, digest: str) -> PreparedAvatar | None:
    """The cached avatar, or None when the file is unreadable, corrupt or from another version."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in _ARRAYS}
            loop = None
            if meta["loop_fps"] is not None:
                feather = meta["loop_feather"]
                names = VideoLoop.array_names(with_placement=feather is not None)
                loop = VideoLoop.from_arrays({name: data[f"loop_{name}"] for name in names}, meta["loop_fps"], feather)
        if meta["version"] != RENDERER_VERSION or meta["digest"] != digest:
            return None
        return PreparedAvatar(
            **arrays,
            roi=tuple(meta["roi"]),
            mouth_rect=tuple(meta["mouth_rect"]),
            eye_rect=tuple(meta["eye_rect"]),
            pivot=tuple(meta["pivot"]),
            iod=float(meta["iod"]),
            teeth=meta["teeth"],
            source_name=meta["source_name"],
            digest=meta["digest"],
            is_video=bool(meta["is_video"]),
            cache_path=path,
            prepare_seconds=float(meta["prepare_seconds"]),
            from_cache=True,
            notices=list(meta["notices"]),
            loop=loop,
            tongue_box=tuple(meta["tongue_box"]),
            photo_smile=float(meta["photo_smile"]),
        )
    except Exception:  # any damage to the cache file means: prepare again
        return None
