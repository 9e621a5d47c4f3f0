"""Speed of the offline TTS engines: time to first audio and real-time factor.

Time to first audio is measured from calling `stream()` on a 12-word sentence to receiving the first
`SpeechChunk`; the real-time factor is the time to stream the whole sentence (and a paragraph) over
the seconds of speech produced. Medians over repeats, because this machine's two cores are shared.
piper is also measured without its early first piece (the whole sentence through the encoder before
the first decoder window), which is what the early cut saves. Writes benchmarks/results/tts.md.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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


async def measure(engine: TTSEngine, text: str) -> tuple[float, float, float]:
    """(time to first audio, total streaming time, seconds of audio)."""
    started = time.perf_counter()
    first = None
    seconds = 0.0
    async for chunk in engine.stream(text):
        if first is None:
            first = time.perf_counter() - started
        seconds += chunk.duration
    return first or 0.0, time.perf_counter() - started, seconds


def bench(engine: TTSEngine, sentence: str = SENTENCE, paragraph: str = PARAGRAPH) -> dict[str, float]:
    asyncio.run(measure(engine, "Warm up."))
    ttfa, rtf, para_rtf = [], [], []
    for _ in range(REPEATS):
        first, total, seconds = asyncio.run(measure(engine, sentence))
        ttfa.append(first)
        rtf.append(total / seconds)
        _, total, seconds = asyncio.run(measure(engine, paragraph))
        para_rtf.append(total / seconds)
    return {
        "ttfa": statistics.median(ttfa),
        "ttfa_max": max(ttfa),
        "rtf": statistics.median(rtf),
        "para_rtf": statistics.median(para_rtf),
    }


def main() -> int:
    assert len(SENTENCE.split()) == 12
    rows = []
    started = time.perf_counter()
    piper = PiperTTS()
    piper_load = time.perf_counter() - started
    rows.append(("piper (en_US-joe-medium)", piper_load, bench(piper)))
    rows.append(("piper, no early first piece", 0.0, bench(PiperTTS(first_piece_words=0))))
    started = time.perf_counter()
    espeak = EspeakTTS("en-us")
    espeak_load = time.perf_counter() - started
    rows.append(("espeak-ng 1.52 (en-us)", espeak_load, bench(espeak)))
    mandarin = bench(EspeakTTS("cmn"), CHINESE_SENTENCE, CHINESE_PARAGRAPH)
    rows.append(("espeak-ng 1.52 (cmn, Mandarin text)", 0.0, mandarin))

    lines = [
        f"TTS speed on this machine ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end), "
        f"medians over {REPEATS} runs. Targets: first audio ≤ {TTFA_TARGET * 1000:.0f} ms, "
        f"real-time factor ≤ {RTF_TARGET}.",
        "",
        "| engine | load (s) | first audio, 12 words (ms) | worst (ms) | RTF sentence | RTF paragraph |",
        "|---|---|---|---|---|---|",
    ]
    for name, load, r in rows:
        load_text = f"{load:.2f}" if load else "shared"
        lines.append(
            f"| {name} | {load_text} | {r['ttfa'] * 1000:.0f} | {r['ttfa_max'] * 1000:.0f} "
            f"| {r['rtf']:.3f} | {r['para_rtf']:.3f} |"
        )
    lines += [
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
