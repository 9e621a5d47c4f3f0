"""MuseTalk's per-avatar preparation, done once and cached on disk: face boxes, UNet inputs and blend masks.

It builds on the CPU renderer's prepared avatar (the upright, fitted photo or the video's idle loop and our
own landmarks), so both engines see the same face. Per template frame (every frame of a video's idle loop, or
of a photo's few seconds of the CPU engine's idle motion; the photo itself when liveliness is 0) it stores the
face box, the UNet's 8x32x32 image input ([lower-half-masked latent, reference latent]) and a feathered
lower-face mask; at run time only Whisper, the UNet, the VAE decoder and the paste-back run.
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
from avatar.musetalk.idle import IDLE_SECONDS, photo_idle_loop
from avatar.musetalk.networks import CROP, MuseTalkNetworks
from avatar.prepare import RENDERER_VERSION, PreparedAvatar
from avatar.video_loop import VideoLoop
from core.npz import save_npz

PREPARE_VERSION = "musetalk-2"
CHIN_MARGIN_PX = 10
"""Room below the lowest landmark (MuseTalk 1.5's extra margin), so an opening jaw stays inside the crop."""
NOSE_BRIDGE = 195
"""The landmark the box is symmetric about (the lower nose bridge, the 68-point scheme's point 29)."""
ENCODE_BATCH = 8
LOOP_ARRAYS = ("jpegs", "offsets", "transforms", "gains")


@dataclass
class MuseTalkAvatar:
    base: PreparedAvatar
    networks: MuseTalkNetworks
    boxes: np.ndarray
    """(templates, 4) int32 face boxes x0, y0, x1, y1 in frame pixels."""
    inputs: np.ndarray
    """(templates, 8, 32, 32) float32: the lower-half-masked latent, then the reference latent."""
    masks: np.ndarray
    """(templates, 256, 256) uint8: how much of the generated face replaces the frame, over the crop."""
    loop: VideoLoop | None
    """The template frames: a video's idle loop, a photo's synthetic one, or None (the photo, frozen)."""
    cache_path: Path | None = None
    from_cache: bool = False
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.base.size

    def template_at(self, seconds: float) -> int:
        return self.loop.index_at(seconds) if self.loop is not None else 0

    def template_image(self, index: int) -> np.ndarray:
        """A fresh copy of template frame `index` (the caller draws on it)."""
        return self.loop.frame(index) if self.loop is not None else self.base.image.copy()

    def summary(self) -> str:
        how = "loaded from cache" if self.from_cache else "prepared"
        return (
            f"{self.base.summary()} MuseTalk: {len(self.boxes)} template frame(s) {how} in {self.seconds:.1f} s "
            f"on {self.networks.device}; cache {self.cache_path}."
        )


def template_points(avatar: PreparedAvatar, loop: VideoLoop | None) -> list[np.ndarray]:
    """Landmarks (478, 2) of every template frame: the photo's, or the reference face carried by each loop frame's
    similarity transform (the clip's landmarks are not re-detected: that is what the loop's transforms are for)."""
    xy = avatar.points[:, :2].astype(np.float64)
    if loop is None:
        return [xy]
    ones = np.ones((len(xy), 1))
    return [np.hstack([xy, ones]) @ m.astype(np.float64).T for m in loop.transforms]


def face_box(xy: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """MuseTalk 1.5's box: the landmarks' width, from the lowest landmark (plus a margin) up to as far above the
    nose bridge as that is below it."""
    bottom = float(xy[:, 1].max())
    bridge = float(xy[NOSE_BRIDGE, 1])
    top = bridge - (bottom - bridge)
    x0, x1 = int(np.floor(xy[:, 0].min())), int(np.ceil(xy[:, 0].max()))
    y0, y1 = int(np.floor(top)), int(np.ceil(bottom + CHIN_MARGIN_PX))
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def blend_mask(xy: np.ndarray, box: tuple[int, int, int, int], iod: float) -> np.ndarray:
    """(256, 256) uint8 weight over the crop: the face below the nose, widened for the jaw's travel, feathered,
    and 0 at the crop's border so the paste-back has no seam (upstream uses a face-parsing network here)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(xy[lm.FACE_OVAL] - (x0, y0)).astype(np.int32)], 255)
    radius = max(1, round(0.25 * iod))
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    mask[: max(0, round(float(xy[lm.NOSE_TIP, 1]) - y0)), :] = 0
    weight = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(1.0, 0.08 * iod))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    border = np.minimum.reduce([xs, w - 1 - xs, ys, h - 1 - ys]) / max(2.0, 0.1 * iod)
    weight *= np.clip(border, 0.0, 1.0)
    return np.round(cv2.resize(weight, (CROP, CROP), interpolation=cv2.INTER_AREA) * 255).astype(np.uint8)


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The face box resized to 256x256 (aspect not kept, as upstream), RGB for the VAE."""
    x0, y0, x1, y1 = box
    face = cv2.resize(image[y0:y1, x0:x1], (CROP, CROP), interpolation=cv2.INTER_LANCZOS4)
    return np.ascontiguousarray(face[:, :, ::-1])


def prepare_musetalk(
    avatar: PreparedAvatar,
    networks: MuseTalkNetworks,
    cache_dir: Path,
    progress: Callable[[float], None] | None = None,
    liveliness: float = 1.0,
) -> MuseTalkAvatar:
    """MuseTalk's preparation of `avatar`, from the cache when the avatar, the liveliness and the VAE weights are
    unchanged."""
    start = time.perf_counter()
    step = progress or (lambda done: None)
    lively = liveliness if avatar.loop is None else None
    key = hashlib.sha256(
        f"{avatar.digest}|{RENDERER_VERSION}|{PREPARE_VERSION}|{avatar.size}|{lively}|{IDLE_SECONDS}|"
        f"{networks.weights.identity('vae')}|".encode()
        + np.ascontiguousarray(avatar.points).tobytes()
    ).hexdigest()[:20]
    path = Path(cache_dir).expanduser() / f"{Path(avatar.source_name).stem[:40]}-musetalk-{key}.npz"
    cached = _load(path)
    if cached is not None:
        step(1.0)
        boxes, inputs, masks, loop = cached
        loop = avatar.loop or loop
        return MuseTalkAvatar(avatar, networks, boxes, inputs, masks, loop, path, True, time.perf_counter() - start)
    loop = avatar.loop or photo_idle_loop(avatar, liveliness)
    points = template_points(avatar, loop)
    width, height = avatar.size
    boxes = np.array([face_box(xy, width, height) for xy in points], np.int32)
    inputs = np.empty((len(points), 8, CROP // 8, CROP // 8), np.float32)
    masks = np.empty((len(points), CROP, CROP), np.uint8)
    for first in range(0, len(points), ENCODE_BATCH):
        chunk = range(first, min(first + ENCODE_BATCH, len(points)))
        crops = np.stack([crop(loop.frame(i) if loop else avatar.image, tuple(boxes[i])) for i in chunk])
        inputs[chunk.start : chunk.stop, :4] = networks.encode(crops, half_mask=True)
        inputs[chunk.start : chunk.stop, 4:] = networks.encode(crops)
        for i in chunk:
            masks[i] = blend_mask(points[i], tuple(boxes[i]), avatar.iod)
        step(chunk.stop / len(points))
    notices: list[str] = []
    try:
        _save(path, boxes, inputs, masks, loop if avatar.loop is None else None)
    except OSError as error:
        notices.append(
            f"could not write the MuseTalk cache in {cache_dir} ({error.strerror}); preparing again next time"
        )
        path = None  # type: ignore[assignment]
    seconds = time.perf_counter() - start
    return MuseTalkAvatar(avatar, networks, boxes, inputs, masks, loop, path, False, seconds, notices)


def _save(path: Path, boxes: np.ndarray, inputs: np.ndarray, masks: np.ndarray, loop: VideoLoop | None) -> None:
    """Atomically; a photo's synthetic idle loop goes with it (a video's own loop is in the CPU cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"version": PREPARE_VERSION, "loop_fps": loop.fps if loop is not None else None}
    arrays = {"boxes": boxes, "inputs": inputs, "masks": masks}
    if loop is not None:
        arrays.update({f"loop_{name}": getattr(loop, name) for name in LOOP_ARRAYS})
    save_npz(path, meta, arrays)


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, VideoLoop | None] | None:
    """The cached arrays and synthetic loop, or None when the file is missing, unreadable or from another version."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta["version"] != PREPARE_VERSION:
                return None
            loop = None
            if meta["loop_fps"] is not None:
                loop = VideoLoop(**{name: data[f"loop_{name}"] for name in LOOP_ARRAYS}, fps=float(meta["loop_fps"]))
            return data["boxes"], data["inputs"], data["masks"], loop
    except Exception:  # any damage to the cache file means: prepare again
        return None
