"""Speech recognition with faster-whisper (CTranslate2 Whisper, int8 on CPU).

One `Transcriber` holds one model; `transcribe` is synchronous CPU work that callers on the
event loop run through `transcribe_async` (a worker thread). Whisper writes Mandarin in
Traditional characters about half the time, so Chinese output is converted to Simplified (an
initial prompt in Simplified Chinese was tried: it made the base model add junk characters).
"""

from __future__ import annotations

import asyncio
import difflib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.transcribe import Segment, TranscriptionInfo
from faster_whisper.utils import available_models
from opencc import OpenCC

from core.audio import resample, to_mono_float
from core.config import ASRConfig, resolve_path
from core.errors import UserError
from core.events import WordTiming
from speech.model_store import offline_whisper_base
from speech.vad import TurnEvent, UserPaused, UserStoppedSpeaking

WHISPER_RATE = 16_000
_MIN_WINDOW = 1000
"""Encoder frames (10 ms each) always kept: 10 s."""
_WINDOW_MARGIN = 500
"""Padding frames kept after the speech: 5 s."""
_LOOPING = 2.4
"""Whisper's own compression-ratio limit: above it the text repeats itself."""
_SILENCE_RMS = 1e-4
"""Digital silence (about -80 dBFS): skip the model entirely."""


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str | None
    """ISO code Whisper detected (or was told); None when there was no speech."""
    probability: float
    """Whisper's confidence in `language` (1.0 when it was given)."""
    duration: float
    """Seconds of audio transcribed."""
    words: tuple[WordTiming, ...] = ()


@lru_cache(maxsize=1)
def _to_simplified() -> OpenCC:
    return OpenCC("t2s")


def to_simplified(text: str) -> str:
    return _to_simplified().convert(text)


def looped(segments: Iterable[Segment]) -> bool:
    """Whisper's own sign of a decoder stuck repeating itself: text that zlib compresses more than 2.4×."""
    return any(s.compression_ratio > _LOOPING for s in segments)


def _looks_like_path(model: str) -> bool:
    return "/" in model or "\\" in model or model.startswith(("~", ".")) or Path(model).expanduser().exists()


class _SingleEncodeWhisper(WhisperModel):
    """Whisper that encodes each window once, and only as much of it as a short turn needs.

    Language auto-detection makes faster-whisper run the encoder (most of the CPU cost) twice on
    the same window: once to detect, once to decode. Decoding drops the feature extractor's
    trailing partial frame and detection does not, so detection is given the same trimmed
    features and the encoder output is reused. If a future faster-whisper changes this, the
    cache simply misses: slower, never wrong.

    Whisper always encodes 30 s, zero-padded. With `short_window` the padding is cut to
    `_MIN_WINDOW` frames or the speech plus `_WINDOW_MARGIN`, whichever is longer: about half the
    CPU for a 5 s turn. Cut much closer the decoder loses its cue for the end of speech and loops
    ("Hello Hello Hello ..."); the transcriber checks for that and decodes again in full.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._last: tuple[np.ndarray, ctranslate2.StorageView] | None = None
        self.encoder_runs = 0
        self.short_window = True

    def detect_language(
        self, audio: np.ndarray | None = None, features: np.ndarray | None = None, **kwargs: object
    ) -> tuple[str, float, list[tuple[str, float]]]:
        if audio is None and features is not None and features.shape[-1] > 1:
            features = features[..., :-1]
        return super().detect_language(audio=audio, features=features, **kwargs)

    def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
        if self._last is not None and np.array_equal(self._last[0], features):
            return self._last[1]
        self.encoder_runs += 1
        window = features
        if self.short_window:
            batch = features if features.ndim == 3 else features[None]
            content = np.flatnonzero(np.any(batch != 0, axis=(0, 1)))
            frames = (content[-1] + 1 if len(content) else 0) + _WINDOW_MARGIN
            if frames < batch.shape[-1]:
                window = np.ascontiguousarray(batch[..., : max(_MIN_WINDOW, frames)])
        output = super().encode(window)
        self._last = (features.copy(), output)
        return output

    def forget_encoding(self) -> None:
        self._last = None


def _load_model(cfg: ASRConfig, cpu_threads: int) -> WhisperModel:
    if cfg.model is None:
        source = str(offline_whisper_base(cfg.cache_dir))
    elif _looks_like_path(cfg.model):
        folder = resolve_path(Path(cfg.model))
        if not (folder / "model.bin").is_file():
            raise UserError(f"asr.model {cfg.model!r} is not a faster-whisper model folder (no model.bin in {folder})")
        source = str(folder)
    elif cfg.model not in available_models():
        close = difflib.get_close_matches(cfg.model, available_models(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"unknown Whisper model {cfg.model!r}{hint}: use a model name, a local folder, or null")
    else:
        source = cfg.model
    try:
        return _SingleEncodeWhisper(source, device=cfg.device, compute_type=cfg.compute_type, cpu_threads=cpu_threads)
    except OSError as exc:
        if source == cfg.model:
            raise UserError(
                f"cannot download the Whisper model {cfg.model!r} (offline?): set asr.model to null for the "
                "bundled offline model, or to a local model folder"
            ) from None
        raise UserError(f"cannot load the speech model from {source}: {exc}") from None
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"cannot load the speech model ({cfg.device}/{cfg.compute_type}): {exc}") from None


class Transcriber:
    """Whisper on whole utterances (the turn detector decides where they end).

    Greedy decoding without timestamps by default (see benchmarks/bench_asr_vad.py for the
    beam-size trade-off), and at most two temperature fallbacks so a garbled turn cannot stall
    the reply with six full decodes.
    """

    def __init__(
        self,
        cfg: ASRConfig | None = None,
        *,
        beam_size: int = 1,
        word_timestamps: bool = False,
        cpu_threads: int = 0,
        short_window: bool = True,
    ) -> None:
        self.cfg = cfg or ASRConfig()
        self.beam_size = beam_size
        self.word_timestamps = word_timestamps
        started = time.perf_counter()
        self._model = _load_model(self.cfg, cpu_threads)
        self._model.short_window = short_window
        self.load_seconds = time.perf_counter() - started
        self._lock = threading.Lock()
        self.full_window_retries = 0
        """Turns decoded again with the full 30 s window because the short one looped."""

    def transcribe(self, pcm: np.ndarray, sample_rate: int = WHISPER_RATE, language: str | None = None) -> Transcript:
        """Text of one utterance: int16 or float samples, mono or (frames, channels), any rate.

        `language` overrides the configured one; both None means auto-detect.
        """
        if sample_rate <= 0:
            raise UserError(f"invalid sample rate {sample_rate}")
        audio = resample(to_mono_float(pcm), sample_rate, WHISPER_RATE)
        duration = len(audio) / WHISPER_RATE
        language = language or self.cfg.language
        if len(audio) < WHISPER_RATE // 10 or float(np.sqrt(np.mean(audio**2))) < _SILENCE_RMS:
            return Transcript("", None, 0.0, duration)
        with self._lock:
            segments, info = self._decode_guarded(audio, language)
        text = "".join(s.text for s in segments).strip()
        if not text:
            return Transcript("", None, 0.0, duration)
        words: list[WordTiming] = []
        for seg in segments:
            words += [WordTiming(w.word.strip(), w.start, w.end) for w in seg.words or ()]
        if info.language == "zh":
            text = to_simplified(text)
            words = [WordTiming(to_simplified(w.text), w.start, w.end) for w in words]
        return Transcript(text, info.language, float(info.language_probability), duration, tuple(words))

    def _decode_guarded(self, audio: np.ndarray, language: str | None) -> tuple[list[Segment], TranscriptionInfo]:
        """Decode on the short window; if the decoder looped there, decode again on the full 30 s one."""
        segments, info = self._decode(audio, language)
        if not self._model.short_window or not looped(segments):
            return segments, info
        self.full_window_retries += 1
        self._model.short_window = False
        try:
            return self._decode(audio, language)
        finally:
            self._model.short_window = True

    def _decode(self, audio: np.ndarray, language: str | None) -> tuple[list[Segment], TranscriptionInfo]:
        try:
            segments, info = self._model.transcribe(
                audio,
                language=language,
                beam_size=self.beam_size,
                without_timestamps=not self.word_timestamps,
                word_timestamps=self.word_timestamps,
                vad_filter=True,
                vad_parameters={"min_silence_duration_ms": 500, "speech_pad_ms": 200},
                condition_on_previous_text=False,
                temperature=(0.0, 0.4, 0.8),
            )
            return list(segments), info
        except ValueError as exc:
            raise UserError(f"speech recognition failed: {exc}") from None
        finally:
            self._model.forget_encoding()

    async def transcribe_async(
        self, pcm: np.ndarray, sample_rate: int = WHISPER_RATE, language: str | None = None
    ) -> Transcript:
        """Same as `transcribe`, off the event loop."""
        return await asyncio.to_thread(self.transcribe, pcm, sample_rate, language)


class TurnTranscriber:
    """Transcribes user turns, starting at the pause before a turn ends.

    The turn detector waits `end_of_turn_ms` of silence before it ends a turn; it announces the
    pause `post_roll_ms` into that silence with exactly the audio the turn will carry. Starting
    recognition then hides most of the wait; if the user talks on, the early result is ignored
    (its CPU time is the price). Use from the event loop: `observe` every event, `finish` a turn.
    """

    def __init__(self, transcriber: Transcriber, language: str | None = None) -> None:
        self.transcriber = transcriber
        self.language = language
        self._early: tuple[UserPaused, asyncio.Task[Transcript]] | None = None
        self.reused = 0
        """How many turns were answered by the early transcription (for metrics and tests)."""

    def observe(self, event: TurnEvent) -> None:
        if isinstance(event, UserPaused):
            task = asyncio.create_task(self.transcriber.transcribe_async(event.audio, event.sample_rate, self.language))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # an unused result may fail quietly
            self._early = (event, task)

    async def finish(self, turn: UserStoppedSpeaking) -> Transcript:
        early, self._early = self._early, None
        if early is not None:
            paused, task = early
            if (paused.start, paused.end) == (turn.start, turn.end) and np.array_equal(paused.audio, turn.audio):
                self.reused += 1
                return await task
        return await self.transcriber.transcribe_async(turn.audio, turn.sample_rate, self.language)
