"""The CPU real-time renderer: blends pre-rendered mouth and eye patches and moves the head, per frame.

Each `render_next()` takes exactly one frame of audio from the queue (silence when it is empty),
derives the mouth from that same audio (and the visemes covering it), and draws the frame, so
sound and picture cannot drift. Per frame there is no mesh warping at all: two bilinear patch
blends, one small bicubic remap of the head (and nothing else) for motion, and a copy of the frame.
The head's 3-D turns and nods, its roll and sway are displacement fields summed into that one remap (see
`head_pose`); a gaze away (a cued expression) adds a tiny remap of the eye patch. Cued expressions (`cue`)
steer the mouth, brows, head and gaze.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import ParamSpec, TypeVar

import cv2
import numpy as np

from avatar import landmarks as lm
from avatar.banks import blend_bank
from avatar.base import Renderer, mono_pcm
from avatar.expressions import ExpressionTrack, check_cue
from avatar.head_pose import pose_fields
from avatar.lipsync import MouthDriver, MouthState
from avatar.liveliness import Liveliness, Pose
from avatar.mouth_bank import mouth_patch
from avatar.prepare import BLINK_LEVELS, BROW_LEVELS, PreparedAvatar
from avatar.prosody import ProsodyTracker
from core.errors import UserError
from core.events import Expression, Frame, Viseme, VisemeEvent

P = ParamSpec("P")
T = TypeVar("T")

PRESHARPEN = 0.06
"""Strength of the small sharpening applied to the head before it is resampled for motion. Resampling at
sub-pixel offsets is a low-pass filter (bicubic keeps ~0.6 of the photo's fine detail, bilinear ~0.4, and
skin turns waxy); this pre-compensates the average loss so a moving head stays about as sharp as the photo."""


class AudioQueue:
    """FIFO of int16 samples with exact-size pops and non-consuming peeks."""

    def __init__(self) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self._offset = 0
        self.size = 0

    def push(self, pcm: np.ndarray) -> None:
        self._chunks.append(pcm)
        self.size += len(pcm)

    def clear(self) -> None:
        self._chunks.clear()
        self._offset = 0
        self.size = 0

    def peek(self, n: int) -> np.ndarray:
        parts, need, offset = [], n, self._offset
        for chunk in self._chunks:
            take = chunk[offset : offset + need]
            parts.append(take)
            need -= len(take)
            offset = 0
            if need <= 0:
                break
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def pop(self, n: int) -> np.ndarray:
        out = self.peek(n)
        remaining = len(out)
        self.size -= remaining
        while remaining > 0:
            head = self._chunks[0]
            left = len(head) - self._offset
            if remaining >= left:
                self._chunks.popleft()
                self._offset = 0
                remaining -= left
            else:
                self._offset += remaining
                remaining = 0
        return out


def _locked(method: Callable[P, T]) -> Callable[P, T]:
    """Serialise a renderer method: a live session feeds audio from the event loop while a worker
    thread draws frames, and an interrupt may arrive from either side."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with args[0]._lock:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return wrapper


class RealtimeRenderer(Renderer):
    def __init__(self, avatar: PreparedAvatar, fps: int = 25, liveliness: float = 1.0, seed: int | None = None) -> None:
        if not 1 <= fps <= 120 or self.sample_rate % fps:
            raise UserError(
                f"fps {fps} is not usable: pick one that divides {self.sample_rate} (e.g. 20, 24, 25, 30, 40)"
            )
        self.fps = fps
        self.avatar = avatar
        self.liveliness_amount = liveliness
        self._queue = AudioQueue()
        self._visemes: list[tuple[Viseme, float, float]] = []
        self._fed = 0
        """Samples ever fed (the end of the queue on the renderer's own audio timeline)."""
        self._consumed = 0
        self._index = 0
        spf = self.samples_per_frame
        self._half = spf // 2
        self._history = np.zeros(self._half, np.float32)
        self._driver = MouthDriver(self.sample_rate, spf)
        photo_yaw = lm.FaceLandmarks(avatar.points).pose()[0]
        self._life = Liveliness(fps, avatar.iod, liveliness, seed, photo_yaw)
        self._prosody = ProsodyTracker(fps, self.sample_rate)
        self._expressions = ExpressionTrack(fps, seed)
        self._silence = np.zeros(spf, np.int16)
        self._silence.setflags(write=False)  # shared by every idle frame: no consumer may change it
        self._lock = threading.Lock()

        x0, y0, x1, y1 = avatar.roi
        self._roi_base = np.ascontiguousarray(avatar.image[y0:y1, x0:x1])
        self._mouth_slice = self._local_slice(avatar.mouth_rect)
        self._eye_slice = self._local_slice(avatar.eye_rect)
        ys, xs = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float32)
        px, py = avatar.pivot[0] - x0, avatar.pivot[1] - y0
        w = avatar.head_weight
        self._moving = np.ascontiguousarray(np.repeat((w > 0)[..., None], 3, axis=2))
        fields = pose_fields(avatar.points, avatar.roi, w, avatar.iod)
        self._iris = fields.iris_radius
        # Every head motion is a weighted sum of these fixed fields (see `_head_maps`).
        self._grid = (xs, ys)
        self._planes = tuple(
            np.ascontiguousarray(p, np.float32) for p in (w * (xs - px), w * (ys - py), w, fields.depth)
        )
        # The gaze moves the irises on the photo itself (before the head moves), inside the eye patch only.
        self._gaze = np.ascontiguousarray(fields.gaze[self._eye_slice])
        self._eye_y, self._eye_x = np.mgrid[0 : self._gaze.shape[0], 0 : self._gaze.shape[1]].astype(np.float32)
        k = PRESHARPEN
        self._presharpen = np.array([[0, -k, 0], [-k, 1 + 4 * k, -k], [0, -k, 0]], np.float32)

    def _local_slice(self, rect: tuple[int, int, int, int]) -> tuple[slice, slice]:
        x0, y0 = self.avatar.roi[:2]
        return slice(rect[1] - y0, rect[3] - y0), slice(rect[0] - x0, rect[2] - x0)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.avatar.size

    @property
    def queued_samples(self) -> int:
        return self._queue.size

    @_locked
    def feed(self, pcm: np.ndarray, visemes: Sequence[VisemeEvent] = ()) -> None:
        pcm = mono_pcm(pcm, self.sample_rate)
        if len(pcm) == 0:
            return
        start = self._fed / self.sample_rate
        for event in visemes:
            self._visemes.append((Viseme(event.viseme), start + event.start, start + event.end))
        self._queue.push(pcm.copy())
        self._fed += len(pcm)

    @_locked
    def cue(
        self,
        expression: Expression | str,
        intensity: float = 1.0,
        at: float | None = None,
        duration: float | None = None,
    ) -> None:
        chosen = check_cue(expression, intensity, duration)
        start = self._index
        if at is not None:
            queued_frames = -(-self._queue.size // self.samples_per_frame)
            start = max(start, start + queued_frames + round(float(at) * self.fps))
        self._expressions.add(chosen, start, float(intensity), duration)

    @_locked
    def reset(self) -> None:
        self._queue.clear()
        self._visemes.clear()
        self._consumed = self._fed
        self._history[:] = 0.0
        self._driver.reset()
        self._prosody.reset()
        self._expressions.drop_after(self._index)

    @_locked
    def render_next(self) -> Frame:
        spf = self.samples_per_frame
        speaking = self._queue.size > 0
        audio = self._queue.pop(spf) if speaking else self._silence
        if len(audio) < spf:
            audio = np.concatenate([audio, np.zeros(spf - len(audio), np.int16)])
        frame_start = self._consumed
        if speaking:
            self._consumed += spf
            # A padded last frame inserts silence into the timeline: later audio (and its visemes) starts after it.
            self._fed = max(self._fed, self._consumed)
        ahead = self._queue.peek(self._half)
        current = audio.astype(np.float32) / 32768.0
        window = np.concatenate([self._history, current, ahead.astype(np.float32) / 32768.0])
        if len(window) < 2 * spf:
            window = np.concatenate([window, np.zeros(2 * spf - len(window), np.float32)])
        self._history = current[-self._half :]
        centre = (frame_start + spf / 2) / self.sample_rate
        self._visemes = [v for v in self._visemes if v[2] > centre - 0.3]
        state = self._driver.step(window, self._visemes if speaking else [], centre)
        prosody = self._prosody.step(window, state.energy, speaking)
        pose = self._life.step(prosody, speaking, self._expressions.state(self._index))
        if self.avatar.loop is not None:
            patch = mouth_patch(self.avatar, state, smile=pose.smile)
            image = self.avatar.loop.draw(patch, state.opening, self._index / self.fps)
        else:
            image = self._draw(state, pose)
        frame = Frame(
            index=self._index,
            image=image,
            audio=audio,
            speaking=speaking,
            mouth_open=max(state.opening, 0.0),
            extras={
                "shape": state.shape,
                "blink": pose.blink,
                "brow": pose.brow,
                "energy": state.energy,
                "yaw": float(np.degrees(pose.yaw)),
                "pitch": float(np.degrees(pose.pitch)),
                "roll": float(np.degrees(pose.angle)),
                "smile": pose.smile,
                "gaze_x": pose.gaze_x,
                "gaze_y": pose.gaze_y,
                "stress": prosody.stress,
            },
        )
        self._index += 1
        return frame

    def _draw(self, state: MouthState, pose: Pose) -> np.ndarray:
        avatar = self.avatar
        roi = self._roi_base.copy()
        roi[self._mouth_slice] = mouth_patch(avatar, state, smile=pose.smile)
        eyes = blend_bank(avatar.eye_bank, BLINK_LEVELS, pose.blink, BROW_LEVELS, pose.brow)
        if pose.gaze_x or pose.gaze_y:
            map_x = self._eye_x - np.float32(pose.gaze_x * self._iris) * self._gaze
            map_y = self._eye_y - np.float32(pose.gaze_y * self._iris) * self._gaze
            eyes = cv2.remap(eyes, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        roi[self._eye_slice] = eyes
        if pose.dx or pose.dy or pose.angle or pose.yaw or pose.pitch:
            map_x, map_y = self._head_maps(pose)
            sharp = cv2.filter2D(roi, -1, self._presharpen, borderType=cv2.BORDER_REPLICATE)
            moved = cv2.remap(sharp, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
            np.copyto(roi, moved, where=self._moving)
        out = avatar.image.copy()
        x0, y0, x1, y1 = avatar.roi
        out[y0:y1, x0:x1] = roi
        return out

    def _head_maps(self, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
        """Backward maps: each pixel samples where the head's motion (roll about the pivot, sway, turn, nod)
        brought it from. OpenCV's single-threaded scaled adds, not a BLAS product: BLAS threads spin on a
        loaded machine and made a frame 5x slower."""
        c1, s = float(np.cos(pose.angle)) - 1.0, float(np.sin(pose.angle))
        wx, wy, w, depth = self._planes
        maps = []
        for grid, weights in (
            (self._grid[0], ((wx, -c1), (wy, s), (w, -pose.dx), (depth, -pose.yaw))),
            (self._grid[1], ((wx, -s), (wy, -c1), (w, -pose.dy), (depth, -pose.pitch))),
        ):
            out = grid
            for plane, k in weights:
                if k:
                    out = cv2.scaleAdd(plane, k, out)
            maps.append(out)
        return maps[0], maps[1]
