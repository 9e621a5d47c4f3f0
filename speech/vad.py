"""Voice activity and turn ends on a live microphone stream (Silero VAD, the copy inside faster-whisper).

faster-whisper runs Silero over a whole file at once; here the same ONNX model runs on 32 ms
frames as they arrive, carrying its LSTM state and 64-sample context from call to call, so
the probabilities are the same however the stream was chunked.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.audio import StreamResampler, float_to_pcm16, to_mono_float
from core.config import VADConfig
from core.errors import UserError

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

VAD_RATE = 16_000
FRAME = 512
"""Samples per Silero frame at 16 kHz (32 ms), the size the model was trained on."""
_CONTEXT = 64
_HYSTERESIS = 0.15
"""Speech continues until the probability drops this far below the start threshold."""
FRAME_SECONDS = FRAME / VAD_RATE


@lru_cache(maxsize=1)
def _session() -> InferenceSession:
    """One ONNX session for every detector: `run` is thread-safe and each detector keeps its own state."""
    import onnxruntime
    from faster_whisper.utils import get_assets_path

    models = sorted(Path(get_assets_path()).glob("silero_vad*.onnx"))
    if not models:
        raise UserError("the Silero VAD model is missing from faster-whisper: reinstall faster-whisper")
    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    return onnxruntime.InferenceSession(str(models[-1]), providers=["CPUExecutionProvider"], sess_options=opts)


class SileroVAD:
    """Speech probability per 512-sample frame of 16 kHz audio, streaming."""

    def __init__(self) -> None:
        self._session = _session()
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), np.float32)
        self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(_CONTEXT, np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Probabilities for `len(audio) // 512` frames (float32 in [-1, 1]; the length must be whole frames)."""
        if len(audio) % FRAME:
            raise ValueError("audio length must be a multiple of 512 samples")
        if len(audio) == 0:
            return np.zeros(0, np.float32)
        frames = audio.astype(np.float32, copy=False).reshape(-1, FRAME)
        contexts = np.concatenate([self._context[None], frames[:-1, -_CONTEXT:]])
        batch = np.concatenate([contexts, frames], axis=1)
        probs, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self._context = frames[-1, -_CONTEXT:].copy()
        return np.asarray(probs, np.float32).reshape(-1)


@dataclass(frozen=True, slots=True)
class UserStartedSpeaking:
    """The user has been speaking for `min_speech_ms` (time to stop the avatar: barge-in)."""

    start: float
    """Stream time (s) the speech began."""
    at: float
    """Stream time (s) it was confirmed, `min_speech_ms` later."""


@dataclass(frozen=True, slots=True)
class UserPaused:
    """`post_roll_ms` of silence inside a turn. If the silence lasts until the turn ends, the turn's
    audio will be exactly `audio`, so recognition can start now instead of `end_of_turn_ms` later."""

    start: float
    end: float
    at: float
    audio: np.ndarray = field(repr=False)
    sample_rate: int = VAD_RATE


@dataclass(frozen=True, slots=True)
class UserStoppedSpeaking:
    """End of the user's turn: `end_of_turn_ms` of silence, the length cap, or the end of the stream."""

    start: float
    end: float
    """Stream time (s) of the end of the last speech frame."""
    at: float
    """Stream time (s) the turn end was decided."""
    audio: np.ndarray = field(repr=False)
    """The utterance, int16 mono at `sample_rate`, from a little before `start` to a little after `end`."""
    sample_rate: int = VAD_RATE
    truncated: bool = False
    """True when the utterance hit the length cap and was cut while the user was still talking."""

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


TurnEvent = UserStartedSpeaking | UserPaused | UserStoppedSpeaking


class TurnDetector:
    """Turns a microphone stream into user-started / paused / stopped-speaking events.

    Feed chunks of any length (int16 or float, mono, interleaved or (frames, channels), at
    `sample_rate`). Speech starts when the probability reaches `threshold` and has lasted
    `min_speech_ms`; it continues while the probability stays above `threshold - 0.15`; the
    turn ends after `end_of_turn_ms` below that. Memory stays bounded: an utterance is capped
    at `max_utterance_s` (the turn ends there and a new one starts if the user keeps talking).
    """

    def __init__(
        self,
        cfg: VADConfig | None = None,
        sample_rate: int = VAD_RATE,
        channels: int = 1,
        *,
        pre_roll_ms: int = 300,
        post_roll_ms: int = 200,
        max_utterance_s: float = 30.0,
    ) -> None:
        if sample_rate < 8000 or channels < 1:
            raise UserError(f"unsupported microphone format: {sample_rate} Hz, {channels} channel(s)")
        self.cfg = cfg or VADConfig()
        self.sample_rate = sample_rate
        self.channels = channels
        self._on = self.cfg.threshold
        self._off = max(0.01, self.cfg.threshold - _HYSTERESIS)
        self._min_speech = _frames(self.cfg.min_speech_ms)
        self._end_of_turn = _frames(self.cfg.end_of_turn_ms)
        self._post_roll = _frames(post_roll_ms)
        self._max_frames = max(1, int(max_utterance_s / FRAME_SECONDS))
        self._vad = SileroVAD()
        self._resampler = StreamResampler(sample_rate, VAD_RATE)
        self._pre_roll: deque[np.ndarray] = deque(maxlen=_frames(pre_roll_ms))
        self._pending = np.zeros(0, np.int16)
        self._frames_seen = 0
        self._utterance: list[np.ndarray] = []
        self._onset = 0  # frame index where the current speech began
        self._last_speech = 0  # frame index of the last speech frame
        self._state = "idle"  # idle -> onset (not yet min_speech) -> speaking
        self.last_probability = 0.0

    @property
    def speaking(self) -> bool:
        return self._state == "speaking"

    @property
    def speech_end(self) -> float:
        """Stream time (s) at the end of the latest speech frame: how long the user has really been talking
        for barge-in, without the trailing silence the detector waits through before ending a turn."""
        return (self._last_speech + 1) * FRAME_SECONDS

    @property
    def time(self) -> float:
        """Stream time (s) processed so far."""
        return self._frames_seen * FRAME_SECONDS

    def feed(self, pcm: np.ndarray) -> list[TurnEvent]:
        return self._process(self._resampler.process(self._to_mono16(pcm)))

    def flush(self) -> list[TurnEvent]:
        """End of the stream: process what is buffered and end an unfinished turn."""
        tail = self._resampler.process(np.zeros(0, np.int16), last=True)
        events = self._process(tail)
        if len(self._pending):
            events += self._process(np.zeros(FRAME - len(self._pending), np.int16))
        if self._state == "speaking":
            events.append(self._end_turn(self._frames_seen - 1, truncated=False))
        self._state = "idle"
        self._utterance = []
        return events

    def _to_mono16(self, pcm: np.ndarray) -> np.ndarray:
        a = np.asarray(pcm)
        if a.ndim == 1 and self.channels > 1:
            if len(a) % self.channels:
                raise UserError(f"interleaved audio length {len(a)} is not a multiple of {self.channels} channels")
            a = a.reshape(-1, self.channels)
        if a.ndim == 2:
            if a.shape[1] != self.channels:
                if a.shape[0] != self.channels:
                    raise UserError(f"audio shape {a.shape} does not match {self.channels} channel(s)")
                a = a.T
            if a.dtype == np.int16:  # integer downmix: no float round trip on the hot path
                return (a.sum(axis=1, dtype=np.int32) // self.channels).astype(np.int16)
            return float_to_pcm16(to_mono_float(a.reshape(-1)).reshape(a.shape).mean(axis=1))
        if a.ndim != 1:
            raise UserError(f"audio must be 1-D or (frames, channels), got shape {a.shape}")
        return a if a.dtype == np.int16 else float_to_pcm16(to_mono_float(a))

    def _process(self, pcm16: np.ndarray) -> list[TurnEvent]:
        if len(pcm16) == 0:
            return []
        data = np.concatenate([self._pending, pcm16]) if len(self._pending) else pcm16
        whole = len(data) - len(data) % FRAME
        self._pending = data[whole:].copy()
        if not whole:
            return []
        frames = data[:whole].reshape(-1, FRAME)
        probs = self._vad(frames.reshape(-1).astype(np.float32) / 32768.0)
        events: list[TurnEvent] = []
        for frame, p in zip(frames, probs, strict=True):
            event = self._step(frame, float(p))
            if event is not None:
                events.append(event)
            self._frames_seen += 1
        self.last_probability = float(probs[-1])
        return events

    def _step(self, frame: np.ndarray, p: float) -> TurnEvent | None:
        k = self._frames_seen
        if self._state == "idle":
            if p >= self._on:
                self._state, self._onset, self._last_speech = "onset", k, k
                self._utterance = [*self._pre_roll, frame]
                self._pre_roll.clear()
                return self._maybe_confirm(k)
            self._pre_roll.append(frame)
            return None
        self._utterance.append(frame)
        if p >= self._off:
            self._last_speech = k
        if self._state == "onset":
            if p < self._off:  # a click or a breath, not speech: back to listening
                for f in self._utterance[-self._pre_roll.maxlen :] if self._pre_roll.maxlen else ():
                    self._pre_roll.append(f)
                self._utterance, self._state = [], "idle"
                return None
            return self._maybe_confirm(k)
        if k - self._last_speech >= self._end_of_turn:
            return self._end_turn(k, truncated=False)
        if k - self._last_speech == max(1, self._post_roll):
            return UserPaused(
                self._onset * FRAME_SECONDS,
                (self._last_speech + 1) * FRAME_SECONDS,
                (k + 1) * FRAME_SECONDS,
                self._turn_audio(k),
            )
        if len(self._utterance) >= self._max_frames:
            return self._end_turn(k, truncated=True)
        return None

    def _maybe_confirm(self, k: int) -> UserStartedSpeaking | None:
        if k - self._onset + 1 >= self._min_speech:
            self._state = "speaking"
            return UserStartedSpeaking(self._onset * FRAME_SECONDS, (k + 1) * FRAME_SECONDS)
        return None

    def _turn_audio(self, k: int) -> np.ndarray:
        """The utterance with at most `post_roll_ms` of its trailing silence."""
        keep = len(self._utterance) - max(0, k - self._last_speech - self._post_roll)
        return np.concatenate(self._utterance[:keep]) if keep > 0 else np.zeros(0, np.int16)

    def _end_turn(self, k: int, truncated: bool) -> UserStoppedSpeaking:
        audio = self._turn_audio(k)
        for f in self._utterance[-self._pre_roll.maxlen :] if self._pre_roll.maxlen else ():
            self._pre_roll.append(f)
        event = UserStoppedSpeaking(
            start=self._onset * FRAME_SECONDS,
            end=(self._last_speech + 1) * FRAME_SECONDS,
            at=(k + 1) * FRAME_SECONDS,
            audio=audio,
            truncated=truncated,
        )
        self._utterance, self._state = [], "idle"
        return event


def _frames(ms: int) -> int:
    return max(0, round(ms / 1000 / FRAME_SECONDS))
