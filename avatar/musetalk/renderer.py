"""MuseTalkRenderer: the `Renderer` contract (exact audio per frame, interruptible) around the MuseTalk networks.

Speech frames are drawn ahead in small batches (`batch_size` frames per network pass: bigger batches use a GPU
better, each frame adds one frame time of latency) and handed out one per `render_next()`, each with exactly its
own samples. Idle frames are the avatar's own template frames (the photo, or the video's idle loop) without any
network pass, so a silent avatar costs nothing and speech starts from the untouched face.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

import cv2
import numpy as np

from avatar.base import Renderer, mono_pcm
from avatar.musetalk.audio import StreamingFeatures
from avatar.musetalk.prepare import MuseTalkAvatar
from avatar.realtime import AudioQueue
from core.errors import UserError
from core.events import Frame, VisemeEvent


class MuseTalkRenderer(Renderer):
    def __init__(self, avatar: MuseTalkAvatar, fps: int = 25, batch_size: int = 4) -> None:
        if not 1 <= fps <= 120 or self.sample_rate % fps:
            raise UserError(
                f"fps {fps} is not usable: pick one that divides {self.sample_rate} (e.g. 20, 24, 25, 30, 40)"
            )
        if batch_size < 1:
            raise UserError(f"musetalk.batch_size must be at least 1, got {batch_size}")
        self.fps = fps
        self.avatar = avatar
        self.batch_size = batch_size
        nets = avatar.networks
        self._features = StreamingFeatures(nets.whisper_states, nets.audio_layers, nets.audio_dim)
        self._queue = AudioQueue()
        self._ahead: deque[np.ndarray] = deque()
        """Speech frames already drawn, in order, starting at `_speech_frame`."""
        self._speech_frame = 0
        """The next speech frame on the current timeline (what its audio tokens are looked up by)."""
        self._index = 0
        self._generation = 0
        """Bumped by every reset, so a batch drawn across an interruption is thrown away."""
        self._silence = np.zeros(self.samples_per_frame, np.int16)
        self._silence.setflags(write=False)
        self._lock = threading.Lock()
        self.batches = 0
        """Network passes run (for tests and benchmarks)."""

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.avatar.size

    @property
    def queued_samples(self) -> int:
        return self._queue.size

    def feed(self, pcm: np.ndarray, visemes: Sequence[VisemeEvent] = ()) -> None:
        """Queue speech; visemes are not needed (the network reads the audio itself)."""
        pcm = mono_pcm(pcm, self.sample_rate)
        if len(pcm) == 0:
            return
        with self._lock:
            self._queue.push(pcm.copy())
            self._features.append(pcm)

    def reset(self) -> None:
        with self._lock:
            self._end_timeline()

    def _end_timeline(self) -> None:
        self._queue.clear()
        self._ahead.clear()
        self._features.clear()
        self._speech_frame = 0
        self._generation += 1

    def render_next(self) -> Frame:
        while True:
            with self._lock:
                if self._queue.size == 0:
                    if self._features.length:
                        self._end_timeline()  # a pause ends the timeline: the next reply starts a fresh one
                    return self._idle_frame()
                if self._ahead:
                    return self._speech_frame_out()
                spf = self.samples_per_frame
                count = min(self.batch_size, -(-self._queue.size // spf))
                frames = range(self._speech_frame, self._speech_frame + count)
                indices = range(self._index, self._index + count)
                generation = self._generation
            images = self._draw(frames, indices)  # the slow part runs unlocked: feed() and reset() stay instant
            with self._lock:
                if generation == self._generation:
                    self._ahead.extend(images)
                    self._features.drop_before(frames.start, self.fps)

    def _idle_frame(self) -> Frame:
        index = self._index
        self._index += 1
        image = self.avatar.template_image(self.avatar.template_at(index / self.fps))
        return Frame(index=index, image=image, audio=self._silence, speaking=False)

    def _speech_frame_out(self) -> Frame:
        spf = self.samples_per_frame
        audio = self._queue.pop(spf)
        if len(audio) < spf:
            padding = np.zeros(spf - len(audio), np.int16)
            audio = np.concatenate([audio, padding])
            self._features.append(padding)  # the timeline keeps the silence the listener hears
        index = self._index
        self._index += 1
        self._speech_frame += 1
        return Frame(index=index, image=self._ahead.popleft(), audio=audio, speaking=True)

    def _draw(self, frames: range, indices: range) -> list[np.ndarray]:
        avatar = self.avatar
        templates = [avatar.template_at(i / self.fps) for i in indices]
        tokens = self._features.tokens(frames, self.fps)
        faces = avatar.networks.generate(avatar.inputs[templates], tokens)
        self.batches += 1
        return [self._paste(avatar.template_image(t), faces[k], t) for k, t in enumerate(templates)]

    def _paste(self, image: np.ndarray, face_rgb: np.ndarray, template: int) -> np.ndarray:
        """The generated face resized into its box and blended in through the feathered lower-face mask."""
        x0, y0, x1, y1 = (int(v) for v in self.avatar.boxes[template])
        size = (x1 - x0, y1 - y0)
        face = cv2.resize(face_rgb[:, :, ::-1], size, interpolation=cv2.INTER_LINEAR).astype(np.float32)
        weight = cv2.resize(self.avatar.masks[template], size, interpolation=cv2.INTER_LINEAR).astype(np.float32)
        region = image[y0:y1, x0:x1].astype(np.float32)
        region += (face - region) * (weight[..., None] / 255.0)
        image[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
        return image
