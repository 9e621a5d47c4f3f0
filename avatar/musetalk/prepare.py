"""MuseTalk's per-avatar preparation, done once and cached on disk: face boxes, UNet inputs and blend masks.

It builds on the CPU renderer's prepared avatar (the upright, fitted photo or the video's idle loop and our
own landmarks), so both engines see the same face. Per template frame (one for a photo, every loop frame for
a video) it stores the face box, the UNet's 8x32x32 image input ([lower-half-masked latent, reference latent])
and a feathered lower-face mask; at run time only Whisper, the UNet, the VAE decoder and the paste-back run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from avatar import landmarks as lm
from avatar.musetalk.networks import CROP, MuseTalkNetworks
from avatar.prepare import RENDERER_VERSION, PreparedAvatar

PREPARE_VERSION = "musetalk-1"
CHIN_MARGIN_PX = 10
"""Room below the lowest landmark (MuseTalk 1.5's extra margin), so an opening jaw stays inside the crop."""
NOSE_BRIDGE = 195
"""The landmark the box is symmetric about (the lower nose bridge, the 68-point scheme's point 29)."""
ENCODE_BATCH = 8


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
    cache_path: Path | None = None
    from_cache: bool = False
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.base.size

    def template_at(self, seconds: float) -> int:
        loop = self.base.loop
        return loop.index_at(seconds) if loop is not None else 0

    def template_image(self, index: int) -> np.ndarray:
        """A fresh copy of template frame `index` (the caller draws on it)."""
        return avatar_frame(self.base, index).copy()

    def summary(self) -> str:
        how = "loaded from cache" if self.from_cache else "prepared"
        return (
            f"{self.base.summary()} MuseTalk: {len(self.boxes)} template frame(s) {how} in {self.seconds:.1f} s "
            f"on {self.networks.device}; cache {self.cache_path}."
        )


def template_points(avatar: PreparedAvatar) -> list[np.ndarray]:
    """Landmarks (478, 2) of every template frame: the photo's, or the reference face carried by each loop frame's
    similarity transform (the clip's landmarks are not re-detected: that is what the loop's transforms are for)."""
    xy = avatar.points[:, :2].astype(np.float64)
    if avatar.loop is None:
        return [xy]
    ones = np.ones((len(xy), 1))
    return [np.hstack([xy, ones]) @ m.astype(np.float64).T for m in avatar.loop.transforms]


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
) -> MuseTalkAvatar:
    """MuseTalk's preparation of `avatar`, from the cache when the avatar and the VAE weights are unchanged."""
    start = time.perf_counter()
    step = progress or (lambda done: None)
    key = hashlib.sha256(
        f"{avatar.digest}|{RENDERER_VERSION}|{PREPARE_VERSION}|{avatar.size}|{networks.weights.identity('vae')}|".encode()
        + np.ascontiguousarray(avatar.points).tobytes()
    ).hexdigest()[:20]
    path = Path(cache_dir).expanduser() / f"{Path(avatar.source_name).stem[:40]}-musetalk-{key}.npz"
    cached = _load(path)
    if cached is not None:
        step(1.0)
        boxes, inputs, masks = cached
        return MuseTalkAvatar(avatar, networks, boxes, inputs, masks, path, True, time.perf_counter() - start)
    points = template_points(avatar)
    width, height = avatar.size
    boxes = np.array([face_box(xy, width, height) for xy in points], np.int32)
    inputs = np.empty((len(points), 8, CROP // 8, CROP // 8), np.float32)
    masks = np.empty((len(points), CROP, CROP), np.uint8)
    for first in range(0, len(points), ENCODE_BATCH):
        chunk = range(first, min(first + ENCODE_BATCH, len(points)))
        crops = np.stack([crop(avatar_frame(avatar, i), tuple(boxes[i])) for i in chunk])
        inputs[chunk.start : chunk.stop, :4] = networks.encode(crops, half_mask=True)
        inputs[chunk.start : chunk.stop, 4:] = networks.encode(crops)
        for i in chunk:
            masks[i] = blend_mask(points[i], tuple(boxes[i]), avatar.iod)
        step(chunk.stop / len(points))
    notices: list[str] = []
    try:
        _save(path, boxes, inputs, masks)
    except OSError as error:
        notices.append(
            f"could not write the MuseTalk cache in {cache_dir} ({error.strerror}); preparing again next time"
        )
        path = None  # type: ignore[assignment]
    return MuseTalkAvatar(avatar, networks, boxes, inputs, masks, path, False, time.perf_counter() - start, notices)


def avatar_frame(avatar: PreparedAvatar, index: int) -> np.ndarray:
    return avatar.loop.frame(index) if avatar.loop is not None else avatar.image


def _save(path: Path, boxes: np.ndarray, inputs: np.ndarray, masks: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f, meta=np.array(json.dumps({"version": PREPARE_VERSION})), boxes=boxes, inputs=inputs, masks=masks
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The cached arrays, or None when the file is missing, unreadable or from another version."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if json.loads(str(data["meta"]))["version"] != PREPARE_VERSION:
                return None
            return data["boxes"], data["inputs"], data["masks"]
    except Exception:  # any damage to the cache file means: prepare again
        return None
