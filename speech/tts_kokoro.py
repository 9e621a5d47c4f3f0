"""Offline natural speech in Mandarin and English with Kokoro-82M (int8 ONNX, 24 kHz).

Kokoro reads phonemes: English goes through espeak-ng (kokoro-onnx's phonemizer, IPA), Mandarin
through `speech.text_zh` (numbers, segmentation, pinyin with tone changes) mapped to the model's
symbols; Latin words inside Chinese (names, iPhone, AI) are phonemized as English and read by the same
voice. The model renders a whole input at once and costs 0.4-0.9 s of CPU per second of speech here,
so a unit is spoken clause by clause: the first sound waits only for the first clause.

The model predicts how many 600-sample frames each phoneme lasts before it renders them; the ONNX
graph is given that tensor as a second output (in memory, at load), so every phoneme gets its exact
span in the audio: visemes from IPA for English and from the pinyin initial and final for Mandarin,
word timings from the words the phonemes were made of.

A model run cannot be interrupted between frames, but ONNX Runtime can abandon it: cancelling the
consumer sets the run's `terminate` flag, so a barge-in frees the CPU within milliseconds.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.audio import float_to_pcm16
from core.errors import UserError
from core.events import CANONICAL_SAMPLE_RATE, SpeechChunk, Viseme, VisemeEvent, WordTiming
from speech import text_zh
from speech.kokoro_voices import VOICES, installed_voices, load_voice
from speech.tts import TTSEngine
from speech.visemes import ChunkTimer, TimedPhoneme, ipa_visemes, pinyin_final_visemes, pinyin_initial_visemes
from speech.visemes import viseme_timeline as build_timeline

SAMPLE_RATE = 24_000
FRAME_SAMPLES = 600
"""Samples per predicted duration unit (the decoder's hop of 300 times its upsampling of 2)."""
DEFAULT_VOICE = "af_heart"
DEFAULT_CHINESE_VOICE = "zm_yunjian"
"""Of the two measured, the one Whisper heard best: CER 6.9% against 10.3% for zf_xiaobei
(benchmarks/results/voices.md)."""
MAX_TOKENS = 240
"""Longest phoneme input of one run (the model takes 510): a run's first audio comes after all of it."""
LEAD_SECONDS = 0.03
TAIL_SECONDS = 0.08
"""The model pads each run with silence; a run keeps this much before its first and after its last phoneme."""
SOUND_LEADS_SECONDS = 0.04
"""The sound of a phoneme starts this much before its predicted frames do (the loudness envelope best
matched the viseme timeline 30-60 ms early in both languages): events are moved earlier by as much."""
PEAK = 0.95
CHUNK_SECONDS = 0.5
"""A run's audio is handed out in chunks this long, so the renderer can start on the first one."""
_CLAUSE_END = re.compile(r"(?<=[，、；：。！？!?])\s*|(?<=[,;:])(?!\d)\s*|(?<=[.])\s+")
"""After a clause or sentence mark, but not inside a number (5,000 3:30 3.5)."""
_PUNCT = {
    "，": ",",
    "、": ",",
    "；": ";",
    "：": ":",
    "。": ".",
    "．": ".",
    "！": "!",
    "？": "?",
    ",": ",",
    ";": ";",
    ":": ":",
    ".": ".",
    "!": "!",
    "?": "?",
    "…": "…",
    "—": "—",
}
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_TONE_MARKS = "→↗↓↘"
TONE = "tone"
"""Label of a tone mark's span: no mouth shape of its own. Mid-sentence the model gives it a frame or two,
which belong to the vowel; at the end of a clause it absorbs the trailing silence (0.5 s and more)."""
MAX_TONE_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of a run's phoneme string that makes one mouth shape sequence or one word."""

    label: str
    """IPA phoneme, "initial:zh" / "final:iang" (pinyin), or a word's written text."""
    start: int
    end: int
    """Character offsets in the run's phoneme string (one character is one model token)."""


@dataclass(frozen=True, slots=True)
class Run:
    """One model input: its phonemes, what each stretch of them looks like, and which words they say."""

    phonemes: str
    shapes: list[Span]
    words: list[Span]


@functools.cache
def load_session(path: Path, threads: int) -> Any:
    """One ONNX session per model and thread count per process, with the durations exposed as an output.

    Intra-op threads do not spin while waiting: the renderer, the recogniser and the LLM share the cores.
    """
    import onnx
    import onnxruntime

    model = onnx.load(str(path))
    durations = "/encoder/Gather_output_0"
    if not any(durations in node.output for node in model.graph.node):
        raise UserError(f"{path.name} is not the Kokoro v1.0 export this engine reads durations from")
    model.graph.node.append(onnx.helper.make_node("Identity", [durations], ["duration"]))
    model.graph.output.append(onnx.helper.make_tensor_value_info("duration", onnx.TensorProto.INT64, None))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@functools.cache
def _tokenizer() -> Any:
    from kokoro_onnx.tokenizer import Tokenizer

    return Tokenizer()


_english_lock = threading.Lock()


def english_phonemes(text: str, lang: str) -> str:
    """espeak-ng IPA for English text, only symbols the model knows (kokoro-onnx's phonemizer)."""
    with _english_lock:
        return _tokenizer().phonemize(text, lang)


def _english_run(text: str, lang: str) -> Run:
    phonemes = english_phonemes(text, lang)
    shapes = [Span(ch, i, i + 1) for i, ch in enumerate(phonemes)]
    return Run(phonemes, shapes, _english_words(phonemes, _WORD.findall(text)))


def _english_words(phonemes: str, written: list[str]) -> list[Span]:
    """Written words over the phoneme words between spaces; where espeak joined or split words ("I am"
    read as one), the words share the phonemes in proportion to their letters."""
    runs = [(m.start(), m.end()) for m in re.finditer(r"[^ ,.;:!?…—\"()“”]+", phonemes)]
    if not runs or not written:
        return []
    if len(runs) == len(written):
        return [Span(w, a, b) for w, (a, b) in zip(written, runs, strict=True)]
    start, end = runs[0][0], runs[-1][1]
    total = sum(len(w) for w in written)
    spans, used = [], 0
    for w in written:
        a = start + round((end - start) * used / total)
        used += len(w)
        spans.append(Span(w, a, start + round((end - start) * used / total)))
    return spans


_IN_MANDARIN = str.maketrans(
    {"p": "pʰ", "t": "tʰ", "k": "kʰ", "b": "p", "d": "t", "ɡ": "k", "θ": "s", "ð": "t", "ˈ": None, "ˌ": None, "ː": None}
)
"""English IPA in the symbols the Mandarin voices read the way a Chinese speaker says an English word: the
voiceless stops aspirated and the voiced ones plain (Mandarin's contrast), θ/ð as s/t, no stress or length.
Unmapped, the voice read p as b and lost the stressed syllable (Python heard as 拜粉, iPhone as 爱风)."""


def _mandarin_run(text: str, english: str) -> Run:
    """Phonemes of normalized Mandarin (Latin words phonemized as `english`), words spaced as segmented."""
    parts: list[str] = []
    shapes: list[Span] = []
    words: list[Span] = []
    length = 0

    def add(piece: str) -> None:
        nonlocal length
        parts.append(piece)
        length += len(piece)

    for word in text_zh.words(text):
        if word.punct:
            mark = _PUNCT.get(word.text)
            if mark is not None:
                add(mark)
            continue
        if parts and parts[-1] not in " ":
            add(" ")
        begin = length
        if word.latin:
            phonemes = english_phonemes(word.text, english).translate(_IN_MANDARIN)
            shapes += [Span(ch, length + i, length + i + 1) for i, ch in enumerate(phonemes)]
            add(phonemes)
        else:
            for pinyin in word.syllables:
                syllable = text_zh.syllable(pinyin)
                if syllable.initial_phonemes:
                    shapes.append(Span(f"initial:{syllable.initial}", length, length + len(syllable.initial_phonemes)))
                    add(syllable.initial_phonemes)
                segmental = syllable.final_phonemes.rstrip(_TONE_MARKS)
                shapes.append(Span(f"final:{syllable.final}", length, length + len(segmental)))
                if len(segmental) < len(syllable.final_phonemes):
                    shapes.append(Span(TONE, length + len(segmental), length + len(syllable.final_phonemes)))
                add(syllable.final_phonemes)
        if length > begin:
            words.append(Span(word.text, begin, length))
    return Run("".join(parts).strip(), shapes, words)


def shape_visemes(label: str) -> tuple[Viseme, ...]:
    """Visemes of a run's stretch: a pinyin initial or final, or one IPA symbol."""
    if label == TONE:
        return ()
    kind, _, value = label.partition(":")
    if kind == "initial" and value:
        return pinyin_initial_visemes(value)
    if kind == "final" and value:
        return pinyin_final_visemes(value)
    return ipa_visemes(label)


def clauses(text: str) -> list[str]:
    """`text` cut after clause and sentence marks (a full stop only before a space: 3.5 stays whole)."""
    return [c for c in (p.strip() for p in _CLAUSE_END.split(text)) if any(ch.isalnum() for ch in c)]


def _split_long(run: Run, limit: int = MAX_TOKENS) -> Iterator[Run]:
    """A run longer than `limit` phonemes cut at word gaps (the model takes at most 510)."""
    while len(run.phonemes) > limit:
        cut = run.phonemes.rfind(" ", 0, limit)
        cut = cut if cut > 0 else limit
        yield _slice(run, 0, cut)
        run = _slice(run, cut + 1 if run.phonemes[cut : cut + 1] == " " else cut, len(run.phonemes))
    if run.phonemes:
        yield run


def _slice(run: Run, a: int, b: int) -> Run:
    def inside(spans: list[Span]) -> list[Span]:
        return [Span(s.label, s.start - a, s.end - a) for s in spans if s.start >= a and s.end <= b]

    return Run(run.phonemes[a:b], inside(run.shapes), inside(run.words))


def installed() -> dict[str, str]:
    """Kokoro voices ready to speak: name → language."""
    return installed_voices()


class KokoroTTS(TTSEngine):
    """Streams Kokoro speech at 24 kHz, clause by clause, with visemes and word timings."""

    name = "kokoro"

    def __init__(
        self, model: Path, voice: str | None = None, speed: float = 1.0, volume: float = 1.0, threads: int = 2
    ) -> None:
        name = voice or DEFAULT_VOICE
        if name not in VOICES:
            from speech.tts_select import unknown_voice_error

            raise unknown_voice_error("kokoro", name, list(VOICES))
        self.voice_name = name
        self.language = VOICES[name][0]
        self.english = "en-us" if self.language == "zh" else self.language
        self._style = load_voice(name)
        self._session = load_session(model, threads)
        self._vocab: dict[str, int] = _tokenizer().vocab
        self._speed = speed
        self._gain = volume
        # Warm-up: the first run allocates ONNX Runtime's buffers and loads the segmenter's dictionary.
        self.synthesize(self.plan("你好。" if self.language == "zh" else "Hello.")[0])

    def plan(self, text: str) -> list[Run]:
        """The model runs that speak `text`: one per clause (long clauses cut at word gaps).

        A clause is not cut shorter for an earlier first sound: cut after its fourth word, the first sound
        came 2-3x sooner but Whisper misheard words on both sides of the cut (上海到杭州 as 伤害到横着的,
        "in 1937" as "in 19, 137"), where the whole clause was heard right."""
        runs: list[Run] = []
        if self.language == "zh":
            text = text_zh.normalize(text)
        for clause in clauses(text):
            runs += _split_long(self._run_of(clause))
        return runs

    def _run_of(self, clause: str) -> Run:
        if self.language == "zh":
            return _mandarin_run(clause, self.english)
        return _english_run(clause, self.language)

    def synthesize(self, run: Run, options: Any = None) -> tuple[np.ndarray, list[TimedPhoneme], list[WordTiming]]:
        """One model run: float audio at 24 kHz (silence trimmed), its mouth shapes and word timings."""
        ids = [self._vocab[ch] for ch in run.phonemes if ch in self._vocab]
        if len(ids) != len(run.phonemes):
            keep = [ch in self._vocab for ch in run.phonemes]
            run = _reindex(run, keep)
        inputs = {
            "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
            "style": self._style[min(len(ids), len(self._style)) - 1],
            "speed": np.array([self._speed], dtype=np.float32),
        }
        audio, durations = self._session.run(None, inputs, options)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        frames = np.concatenate([[0], np.cumsum(np.asarray(durations).reshape(-1))])
        edges = np.round(frames * (len(audio) / max(1, frames[-1]))).astype(np.int64)
        first = max(0, int(edges[1]) - int(LEAD_SECONDS * SAMPLE_RATE))
        last = min(len(audio), int(edges[-2]) + int(TAIL_SECONDS * SAMPLE_RATE))
        audio = audio[first:last] * self._gain
        peak = float(np.abs(audio).max()) if len(audio) else 0.0
        if peak > PEAK:
            audio *= PEAK / peak

        def seconds(i: int) -> float:
            return max(0.0, (int(edges[1 + i]) - first) / SAMPLE_RATE - SOUND_LEADS_SECONDS)

        shapes = [
            TimedPhoneme(s.label, seconds(s.start), min(seconds(s.end), seconds(s.start) + MAX_TONE_SECONDS))
            if s.label == TONE
            else TimedPhoneme(s.label, seconds(s.start), seconds(s.end))
            for s in run.shapes
        ]
        words = [WordTiming(w.label, seconds(w.start), seconds(w.end)) for w in run.words]
        return audio, shapes, words

    async def stream(self, text: str) -> AsyncIterator[SpeechChunk]:
        if not text or not text.strip():
            return
        timer = ChunkTimer()
        position = 0.0
        for run in await asyncio.to_thread(self.plan, text):
            audio, shapes, words = await self._run(run)
            timer.add(
                [VisemeEvent(v.viseme, v.start + position, v.end + position) for v in self.timeline(shapes)],
                [WordTiming(w.text, w.start + position, w.end + position) for w in words],
            )
            position += len(audio) / SAMPLE_RATE
            pcm = float_to_pcm16(audio)
            step = int(CHUNK_SECONDS * CANONICAL_SAMPLE_RATE)
            for k in range(0, len(pcm), step):
                piece = pcm[k : k + step]
                visemes, spoken = timer.take(len(piece) / CANONICAL_SAMPLE_RATE)
                yield SpeechChunk(piece, CANONICAL_SAMPLE_RATE, visemes, spoken)
        visemes, spoken = timer.take(0.0, last=True)
        if visemes or spoken:
            yield SpeechChunk(np.zeros(0, np.int16), CANONICAL_SAMPLE_RATE, visemes, spoken)

    async def stream_progressive(self, drafts: AsyncIterable[str]) -> AsyncIterator[SpeechChunk]:
        """Speak each clause of the unit as soon as a later one has begun (it can no longer change), the
        rest when the last draft arrives: a long first sentence starts with its first clause."""
        said = 0
        text = ""
        async for text in drafts:
            done = clauses(text)
            if len(done) > 1 and _CLAUSE_END.search(text):
                ready = done[:-1]
                for clause in ready[said:]:
                    async for chunk in self.stream(clause):
                        yield chunk
                said = max(said, len(ready))
        rest = clauses(text)[said:]
        if rest:
            async for chunk in self.stream(" ".join(rest) if self.language != "zh" else "".join(rest)):
                yield chunk

    async def _run(self, run: Run) -> tuple[np.ndarray, list[TimedPhoneme], list[WordTiming]]:
        """`synthesize` off the event loop; a cancelled consumer makes ONNX Runtime abandon the run."""
        import onnxruntime

        options = onnxruntime.RunOptions()
        try:
            return await asyncio.shield(asyncio.to_thread(self.synthesize, run, options))
        except asyncio.CancelledError:
            options.terminate = True
            raise

    @staticmethod
    def timeline(shapes: list[TimedPhoneme]) -> list[VisemeEvent]:
        return build_timeline(shapes, shape_visemes)


def _reindex(run: Run, keep: list[bool]) -> Run:
    """`run` without the phonemes the model does not know, spans moved to match."""
    index = np.concatenate([[0], np.cumsum(keep)])

    def moved(spans: list[Span]) -> list[Span]:
        out = [Span(s.label, int(index[s.start]), int(index[s.end])) for s in spans]
        return [s for s in out if s.end > s.start]

    phonemes = "".join(ch for ch, k in zip(run.phonemes, keep, strict=True) if k)
    return Run(phonemes, moved(run.shapes), moved(run.words))
