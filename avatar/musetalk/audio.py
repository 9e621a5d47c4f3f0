"""Whisper audio tokens per video frame, computed incrementally as speech arrives.

MuseTalk conditions each video frame on 10 Whisper frames (50 per second) from 80 ms before the frame's
start to 120 ms after it, all hidden states of each (embeddings + every encoder layer): 10 x layers tokens.
Upstream runs Whisper over whole 30 s windows of a finished clip; a live reply arrives sentence by sentence,
so here the speech timeline is cut into 1 s blocks on a fixed grid, each encoded with 1 s of audio before it
and 0.5 s after it as context (padded to Whisper's 30 s window as upstream does). A block depends only on the
audio in its window, so features do not depend on how the audio was chunked; a block computed before its
window had fully arrived is marked provisional and computed again once more audio is there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from scipy.signal import resample_poly

from core.events import CANONICAL_SAMPLE_RATE

WHISPER_RATE = 16_000
WHISPER_FPS = 50
HOP = CANONICAL_SAMPLE_RATE // WHISPER_FPS
"""Timeline samples per Whisper frame (20 ms)."""
WINDOW_BEFORE = 4
"""Whisper frames before a video frame's own (80 ms; upstream's left padding of 2 x 2 frames)."""
WINDOW = 10
"""Whisper frames per video frame: -80 ms ... +120 ms."""
BLOCK = 50
"""Whisper frames encoded together (1 s)."""
CONTEXT_BEFORE = 50
CONTEXT_AFTER = 25

States = Callable[[np.ndarray], np.ndarray]
"""16 kHz float32 audio (<= 30 s) -> (Whisper frames, layers, dim) hidden states."""


def window_start(frame: int, fps: int) -> int:
    """The first Whisper frame of video frame `frame`'s window (negative near the start: zero features)."""
    return frame * WHISPER_FPS // fps - WINDOW_BEFORE


class StreamingFeatures:
    """One speech timeline's audio and its Whisper features. Thread-safe: audio is appended from the event loop
    while the render thread computes features, and Whisper runs outside the lock."""

    def __init__(self, states: States, layers: int, dim: int) -> None:
        self._states = states
        self.layers = layers
        self.dim = dim
        self._lock = threading.Lock()
        self._audio = np.zeros(0, np.int16)
        self._offset = 0
        """Timeline sample at which `_audio` starts (older audio no block needs any more is dropped)."""
        self._length = 0
        self._blocks: dict[int, tuple[np.ndarray, int]] = {}
        """Block -> (its (BLOCK, layers, dim) features, timeline samples there were when it was computed)."""
        self._generation = 0
        self.encoded_blocks = 0
        """Whisper passes run (for tests and benchmarks)."""

    @property
    def length(self) -> int:
        """Samples on this timeline so far."""
        return self._length

    def append(self, pcm: np.ndarray) -> None:
        with self._lock:
            self._audio = np.concatenate([self._audio, np.asarray(pcm, np.int16)])
            self._length += len(pcm)

    def clear(self) -> None:
        """Start a new timeline (after an interruption or a pause): the old audio and features are dropped."""
        with self._lock:
            self._audio = np.zeros(0, np.int16)
            self._offset = self._length = 0
            self._blocks.clear()
            self._generation += 1

    def tokens(self, frames: range, fps: int) -> np.ndarray:
        """(len(frames), WINDOW * layers, dim) float32 tokens, Whisper-frame-major as MuseTalk orders them."""
        if not frames:
            return np.zeros((0, WINDOW * self.layers, self.dim), np.float32)
        first = window_start(frames[0], fps)
        last = window_start(frames[-1], fps) + WINDOW
        span = self._span(first, last)
        out = np.empty((len(frames), WINDOW * self.layers, self.dim), np.float32)
        for i, frame in enumerate(frames):
            start = window_start(frame, fps) - first
            out[i] = span[start : start + WINDOW].reshape(-1, self.dim)
        return out

    def drop_before(self, frame: int, fps: int) -> None:
        """Forget audio and blocks no frame from `frame` on can need (a long reply keeps bounded memory)."""
        block = max(window_start(frame, fps), 0) // BLOCK
        keep_from = max(block * BLOCK - CONTEXT_BEFORE, 0) * HOP
        with self._lock:
            for k in [k for k in self._blocks if k < block]:
                del self._blocks[k]
            if keep_from > self._offset:
                self._audio = self._audio[keep_from - self._offset :]
                self._offset = keep_from

    def _span(self, first: int, last: int) -> np.ndarray:
        """Features of Whisper frames first..last-1: zeros before the timeline and after its audio."""
        out = np.zeros((last - first, self.layers, self.dim), np.float32)
        valid = -(-self._length // HOP)
        lo, hi = max(first, 0), min(last, valid)
        blocks = range(lo // BLOCK, (hi - 1) // BLOCK + 1) if hi > lo else range(0)
        for k in blocks:
            block = self._block(k)
            a, b = max(lo, k * BLOCK), min(hi, (k + 1) * BLOCK)
            out[a - first : b - first] = block[a - k * BLOCK : b - k * BLOCK]
        return out

    def _block(self, k: int) -> np.ndarray:
        start = max(k * BLOCK - CONTEXT_BEFORE, 0)
        end = (k + 1) * BLOCK + CONTEXT_AFTER
        with self._lock:
            cached = self._blocks.get(k)
            if cached is not None and (cached[1] >= end * HOP or cached[1] == self._length):
                return cached[0]
            generation, length = self._generation, self._length
            window = np.zeros((end - start) * HOP, np.int16)
            a, b = max(start * HOP, self._offset), min(end * HOP, length)
            if b > a:
                window[a - start * HOP : b - start * HOP] = self._audio[a - self._offset : b - self._offset]
        pcm16k = resample_poly(window.astype(np.float32) / 32768.0, 2, 3).astype(np.float32)
        states = self._states(pcm16k)[k * BLOCK - start : k * BLOCK - start + BLOCK]
        with self._lock:
            self.encoded_blocks += 1
            if generation == self._generation:
                self._blocks[k] = (states, length)
        return states
