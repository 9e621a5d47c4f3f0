"""Offline speech in many languages, Mandarin included, with libespeak-ng 1.52 from `espeakng-loader`.

Debian's espeak-ng 1.51 mangles Mandarin; the wheel's 1.52 library and data read it correctly, so we
talk to that library directly through ctypes. It runs in synchronous mode with phoneme events: each
synthesis call hands our callback blocks of samples plus word and phoneme events stamped with their
sample position, which is all the timing the viseme timeline needs. espeak-ng keeps one global
state (voice, callback, buffers), so every call into it holds one process-wide lock.
"""

from __future__ import annotations

import asyncio
import ctypes
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import numpy as np

from core.audio import StreamResampler
from core.errors import UserError
from core.events import CANONICAL_SAMPLE_RATE, SpeechChunk, VisemeEvent, WordTiming
from speech.text import HAN
from speech.tts import TTSEngine
from speech.tts_piper import text_blocks
from speech.visemes import PAUSES, ChunkTimer, TimedPhoneme, ipa_visemes, viseme_timeline

DEFAULT_VOICE = "en-us"
MANDARIN_VOICE = "cmn"
CHUNK_SECONDS = 0.5
"""Audio is handed on in pieces this long so a long block still starts playing at once."""

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_DEFAULT_RATE_WPM = 175
_BUFFER_MS = 100
_EDGE_PUNCTUATION = re.compile(r"^[\W_]+|[\W_]+$")


class _EventId(ctypes.Union):
    _fields_ = (("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8))


class _Event(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    )


class _Voice(ctypes.Structure):
    _fields_ = (
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    )


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Synthesis:
    """What one synthesis call produced: samples at `sample_rate`, phonemes and words in seconds."""

    sample_rate: int
    audio: list[np.ndarray] = field(default_factory=list)
    phonemes: list[tuple[str, int]] = field(default_factory=list)
    words: list[tuple[int, int, int]] = field(default_factory=list)
    """(first character, length, sample) of each word, characters counted from 1 as espeak does."""

    @property
    def samples(self) -> int:
        return sum(len(a) for a in self.audio)

    def timed_phonemes(self) -> list[TimedPhoneme]:
        """Each phoneme lasts until the next event; the last until the audio ends."""
        total = self.samples
        out: list[TimedPhoneme] = []
        for k, (name, sample) in enumerate(self.phonemes):
            end = self.phonemes[k + 1][1] if k + 1 < len(self.phonemes) else total
            out.append(TimedPhoneme(name, sample / self.sample_rate, min(end, total) / self.sample_rate))
        return out

    def word_timings(self, text: str) -> list[WordTiming]:
        """Words named from the input text, ending where their last sounding phoneme ends.

        A word's text runs to the next word's first character: espeak reports a length of one for a
        Mandarin word of two characters (你好), so its own length is only used for the last word of
        a text that is not CJK.
        """
        timed = self.timed_phonemes()
        out: list[WordTiming] = []
        for k, (position, length, sample) in enumerate(self.words):
            start = sample / self.sample_rate
            nxt = self.words[k + 1] if k + 1 < len(self.words) else None
            limit = nxt[2] / self.sample_rate if nxt else float("inf")
            ends = [t.end for t in timed if start <= t.start < limit and t.phoneme not in PAUSES]
            stop = nxt[0] - 1 if nxt else (len(text) if HAN.search(text) else position - 1 + length)
            name = _EDGE_PUNCTUATION.sub("", text[position - 1 : stop])
            if ends and name:
                out.append(WordTiming(name, start, max(ends)))
        return out


class _Library:
    """The process-wide libespeak-ng, initialised once; use only while holding `lock`."""

    lock = threading.Lock()
    _instance: _Library | None = None

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        self.lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
        self.lib.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
        self.lib.espeak_Synth.argtypes = (
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        )
        self.lib.espeak_ListVoices.argtypes = (ctypes.c_void_p,)
        self.lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data, options)
        if self.sample_rate <= 0:
            raise UserError("espeak-ng could not start: reinstall espeakng-loader==0.2.4")
        self._target: Synthesis | None = None
        self._cancel: threading.Event | None = None
        self._callback = _Callback(self._on_audio)  # kept alive as long as the library
        self.lib.espeak_SetSynthCallback(self._callback)
        self.voices = self._list_voices()

    @classmethod
    def get(cls) -> _Library:
        """The shared instance; call with `lock` held."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _list_voices(self) -> dict[str, str]:
        """Language code → voice name for every voice in the bundled data."""
        voices: dict[str, str] = {}
        table = self.lib.espeak_ListVoices(None)
        i = 0
        while table[i]:
            voice = table[i].contents
            # A run of (priority byte, language name, NUL) entries, ended by a zero priority byte.
            # Walked byte by byte: reading a fixed length could run past the library's memory.
            entry = ctypes.cast(voice.languages, ctypes.c_void_p).value
            while entry is not None and ctypes.string_at(entry, 1) != b"\0":
                name = ctypes.string_at(entry + 1)
                voices.setdefault(name.decode(), voice.name.decode())
                entry += len(name) + 2
            i += 1
        return voices

    def _on_audio(self, wav: ctypes.Array, count: int, events: ctypes.Array) -> int:
        target = self._target
        if target is None:
            return 1
        if count > 0:
            # Not np.ctypeslib.as_array: it creates (and ctypes keeps forever) a new array type for every
            # buffer length, a slow leak over hours of varied text.
            target.audio.append(np.frombuffer(ctypes.string_at(wav, 2 * count), np.int16).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                name = bytes(event.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                target.phonemes.append((name, event.sample))
            elif event.type == _EVENT_WORD:
                target.words.append((event.text_position, event.length, event.sample))
            i += 1
        return 1 if self._cancel is not None and self._cancel.is_set() else 0

    def synthesize(
        self, text: str, voice: str, rate: int, volume: int, pitch: int, cancel: threading.Event
    ) -> Synthesis:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise UserError(f"espeak-ng cannot load voice {voice!r}")
        self.lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
        self.lib.espeak_SetParameter(_PARAM_VOLUME, volume, 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        result = Synthesis(self.sample_rate)
        data = text.encode("utf-8")
        self._target, self._cancel = result, cancel
        try:
            self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        finally:
            self._target, self._cancel = None, None
        return result


def installed_voices() -> dict[str, str]:
    """Language codes espeak-ng can speak (en-us, cmn, fr, ...) → voice names."""
    with _Library.lock:
        return dict(_Library.get().voices)


def synthesize(
    text: str,
    voice: str = DEFAULT_VOICE,
    rate: int = _DEFAULT_RATE_WPM,
    volume: int = 100,
    pitch: int = 50,
    cancel: threading.Event | None = None,
) -> Synthesis:
    """Speak `text` with espeak-ng (blocking, serialised with every other espeak call in the process)."""
    with _Library.lock:
        return _Library.get().synthesize(text, voice, rate, volume, pitch, cancel or threading.Event())


class EspeakTTS(TTSEngine):
    """Streams espeak-ng speech at 24 kHz with visemes from its phoneme events and word timings."""

    name = "espeak"

    def __init__(self, voice: str | None = None, speed: float = 1.0, volume: float = 1.0, pitch: int = 50) -> None:
        voices = installed_voices()
        self.voice = voice or DEFAULT_VOICE
        if self.voice not in voices:
            from speech.tts_select import unknown_voice_error

            raise unknown_voice_error("espeak", self.voice, list(voices))
        self._rate = max(80, min(450, round(_DEFAULT_RATE_WPM * speed)))
        self._volume = max(0, min(200, round(100 * volume)))
        self._pitch = max(0, min(99, pitch))

    async def stream(self, text: str) -> AsyncIterator[SpeechChunk]:
        if not text or not text.strip():
            return
        resampler: StreamResampler | None = None
        timer = ChunkTimer()
        position = 0.0
        cancel = threading.Event()
        try:
            for block in text_blocks(text):
                result = await asyncio.to_thread(
                    synthesize, block, self.voice, self._rate, self._volume, self._pitch, cancel
                )
                if not result.samples:
                    continue
                rate = result.sample_rate
                resampler = resampler or StreamResampler(rate, CANONICAL_SAMPLE_RATE)
                timer.add(
                    [
                        VisemeEvent(v.viseme, v.start + position, v.end + position)
                        for v in viseme_timeline(result.timed_phonemes(), ipa_visemes)
                    ],
                    [WordTiming(w.text, w.start + position, w.end + position) for w in result.word_timings(block)],
                )
                position += result.samples / rate
                for piece in _pieces(np.concatenate(result.audio), int(CHUNK_SECONDS * rate)):
                    pcm = resampler.process(piece)
                    if len(pcm):
                        visemes, words = timer.take(len(pcm) / CANONICAL_SAMPLE_RATE)
                        yield SpeechChunk(pcm, CANONICAL_SAMPLE_RATE, visemes, words)
            if resampler is not None:
                pcm = resampler.process(np.zeros(0, np.int16), last=True)
                visemes, words = timer.take(len(pcm) / CANONICAL_SAMPLE_RATE, last=True)
                if len(pcm) or visemes or words:
                    yield SpeechChunk(pcm, CANONICAL_SAMPLE_RATE, visemes, words)
        finally:
            cancel.set()


def _pieces(audio: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(audio), size):
        yield audio[start : start + size]
