"""The offline voices side by side: Kokoro-82M, piper and espeak-ng, in Mandarin and English.

Each voice speaks 20 Mandarin or 20 English sentences written for this benchmark (numbers, dates, money,
names, mixed Chinese-English) and never used to tune the engines. An independent recogniser, the
shipped Whisper base, transcribes what each voice said (language given, greedy decoding); the error is
the character error rate for Mandarin (both sides in Simplified characters with numbers written out the
same way) and the word error rate for English. Time to first audio runs from `stream()` to the first
`SpeechChunk`; the real-time factor is the time to stream a sentence over the seconds of speech.

Every voice runs in its own process (so its memory is its own: peak RSS after loading and after
speaking), one after the other, and Whisper only after all of them. Kokoro runs with 1 and with 2
ONNX threads, on the shared machine as it is and again with one core kept busy by a spinning process,
which is what a live session's renderer and LLM do to the voice. Writes benchmarks/results/voices.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core.events import SpeechChunk  # noqa: E402
from speech.tts import TTSEngine  # noqa: E402

MANDARIN = [
    "北京今天的最高气温是28度，最低气温是15度。",
    "王小明在2023年9月1日进入清华大学学习计算机。",
    "这部手机的价格是3999元，比去年便宜了10%。",
    "请在下午4:30之前把报告发到我的邮箱。",
    "我们公司的会议定在星期三上午十点，地点在三楼会议室。",
    "他用Python写了一个小程序，每天自动备份数据。",
    "上海到杭州的高铁只需要一个小时左右。",
    "这本书一共有356页，我已经读了一半。",
    "李老师说，学习语言最重要的是坚持每天练习。",
    "请问附近有没有便宜又好吃的餐厅？",
    "我们下周去看看新开的博物馆吧。",
    "这个项目的预算大约是120万元。",
    "张伟和刘芳是大学同学，毕业以后一直保持联系。",
    "春节期间，超过2亿人乘坐火车回家过年。",
    "你可以试一试这个新的翻译软件，效果很不错。",
    "今年的销售额增长了25%，超过了预期。",
    "小猫在沙发上睡得很香，一动也不动。",
    "我的电话号码是13912345678，有事请打给我。",
    "这次考试他考了98分，是全班第一名。",
    "周末我们打算去公园散散步，顺便拍几张照片。",
]
ENGLISH = [
    "The train to Boston leaves at 7:45 tomorrow morning.",
    "Doctor Patel said the results would be ready in three days.",
    "Our company grew by 15% last year, mostly in Europe.",
    "Please send the invoice for $2,500 to the accounting team.",
    "Maria and James have lived in Seattle since 2019.",
    "The museum opens at nine and closes at five on weekdays.",
    "I bought twelve eggs, a loaf of bread and some fresh cheese.",
    "The new laptop has 16 gigabytes of memory and a fast processor.",
    "Could you tell me where the nearest pharmacy is?",
    "The meeting was moved to Thursday because of the storm.",
    "Mount Everest is about 8,849 meters high.",
    "She wrote her first novel when she was only nineteen.",
    "The weather in London was cold and rainy all week.",
    "We use Python and JavaScript to build our web services.",
    "The bridge was finished in 1937 after four years of work.",
    "Please remember to water the plants while I am away.",
    "The children played football in the park until sunset.",
    "His flight from Tokyo landed two hours late.",
    "Turn left at the second traffic light and park behind the bank.",
    "The library has more than 300,000 books in its collection.",
]
SPEED_SENTENCES = 6
"""Sentences per speed-only run (1 thread, busy core): enough for a median, short enough to repeat."""
RESULTS = ROOT / "benchmarks" / "results" / "voices.md"
REUSE = Path(os.environ["BENCH_VOICES_REUSE"]) if os.environ.get("BENCH_VOICES_REUSE") else None
"""A folder for each run's WAVs and timings, kept between invocations (unset: fresh temporary folders)."""


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _make(engine: str, voice: str, threads: int) -> TTSEngine:
    if engine == "kokoro":
        from speech.model_store import offline_kokoro
        from speech.tts_kokoro import KokoroTTS

        return KokoroTTS(offline_kokoro(Path("~/.cache/digital-human/models")), voice, threads=threads)
    if engine == "piper":
        from speech.tts_piper import PiperTTS

        return PiperTTS(voice)  # its own thread count: min(4, cores)
    from speech.tts_espeak import EspeakTTS

    return EspeakTTS(voice)


async def _speak(tts: TTSEngine, text: str) -> tuple[np.ndarray, float, float]:
    started = time.perf_counter()
    first = None
    pcm = []
    async for item in tts.stream(text):
        if isinstance(item, SpeechChunk):
            first = first if first is not None else time.perf_counter() - started
            pcm.append(item.pcm)
    return np.concatenate(pcm), first or 0.0, time.perf_counter() - started


def worker(engine: str, voice: str, threads: int, lang: str, count: int, out: Path) -> None:
    """One voice in this process: load it, speak the sentences, write WAVs and a JSON of timings."""
    rss_start = _rss_mb()
    started = time.perf_counter()
    tts = _make(engine, voice, threads)
    load = time.perf_counter() - started
    rss_loaded = _rss_mb()
    sentences = (MANDARIN if lang == "zh" else ENGLISH)[:count]
    rows = []
    for i, text in enumerate(sentences):
        cpu = os.times()
        pcm, first, total = asyncio.run(_speak(tts, text))
        used = sum(os.times()[:2]) - sum(cpu[:2])
        with wave.open(str(out / f"{i:02d}.wav"), "wb") as f:
            f.setnchannels(1), f.setsampwidth(2), f.setframerate(24000), f.writeframes(pcm.tobytes())
        seconds = len(pcm) / 24000
        rows.append({"first": first, "rtf": total / seconds, "cpu_rtf": used / seconds, "seconds": seconds})
    summary = {"load": load, "rss_start": rss_start, "rss_loaded": rss_loaded, "rss_peak": _rss_mb(), "rows": rows}
    (out / "timings.json").write_text(json.dumps(summary))


def _run(engine: str, voice: str, threads: int, lang: str, count: int, busy: bool) -> tuple[Path, dict]:
    """One voice's worker; with `REUSE` set, a run already in that folder is read instead (a rerun after
    an interruption on the shared machine)."""
    out = REUSE / f"{engine}-{voice}-{threads}-{lang}-{count}-{int(busy)}" if REUSE else None
    if out is not None and (out / "timings.json").is_file():
        return out, json.loads((out / "timings.json").read_text())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    else:
        out = Path(tempfile.mkdtemp(prefix=f"voices-{engine}-{voice}-{threads}-"))
    spinner = None
    if busy:
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        subprocess.run(
            [sys.executable, __file__, "--worker", engine, voice, str(threads), lang, str(count), str(out)],
            check=True,
            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
        )
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return out, json.loads((out / "timings.json").read_text())


_ZH_DROP = re.compile(r"[^\w]|_", re.UNICODE)


def cer(reference: str, heard: str) -> tuple[int, int]:
    """Character edits and reference length, both sides Simplified with numbers written out alike."""
    from speech.asr import to_simplified
    from speech.text_zh import normalize

    def clean(text: str) -> str:
        return _ZH_DROP.sub("", normalize(to_simplified(text)).lower())

    ref, hyp = clean(reference), clean(heard)
    return _edits(list(ref), list(hyp)), len(ref)


def wer(reference: str, heard: str) -> tuple[int, int]:
    def clean(text: str) -> list[str]:
        text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())
        text = re.sub(r"\$(\d+)", r"\1 dollars", text).replace("%", " percent")
        text = re.sub(r"(?<=\d):(?=\d)", " ", text).replace("dr.", "doctor")
        return re.findall(r"[a-z0-9']+", text)

    ref, hyp = clean(reference), clean(heard)
    return _edits(ref, hyp), len(ref)


def _edits(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def _transcribe(whisper: Any, folder: Path, lang: str, count: int) -> list[str]:
    from core.audio import resample

    heard = []
    for i in range(count):
        with wave.open(str(folder / f"{i:02d}.wav")) as f:
            pcm = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)
        audio = resample(pcm, 24000, 16000).astype(np.float32) / 32768.0
        segments, _ = whisper.transcribe(audio, language=lang, beam_size=1, condition_on_previous_text=False)
        heard.append("".join(s.text for s in segments) if lang == "zh" else " ".join(s.text for s in segments))
    return heard


def main() -> None:
    from faster_whisper import WhisperModel

    from speech.model_store import offline_whisper_base

    quality = [  # (label, engine, voice, lang): all 20 sentences, 2 threads, machine as it is
        ("Kokoro zf_xiaobei", "kokoro", "zf_xiaobei", "zh"),
        ("Kokoro zm_yunjian", "kokoro", "zm_yunjian", "zh"),
        ("espeak-ng cmn", "espeak", "cmn", "zh"),
        ("Kokoro af_heart", "kokoro", "af_heart", "en"),
        ("Kokoro am_michael", "kokoro", "am_michael", "en"),
        ("piper en_US-joe-medium", "piper", "en_US-joe-medium", "en"),
        ("espeak-ng en-us", "espeak", "en-us", "en"),
    ]
    speed = [  # (label, engine, voice, lang, threads, busy core)
        ("Kokoro zf_xiaobei", "kokoro", "zf_xiaobei", "zh", 1, False),
        ("Kokoro zf_xiaobei", "kokoro", "zf_xiaobei", "zh", 1, True),
        ("Kokoro zf_xiaobei", "kokoro", "zf_xiaobei", "zh", 2, True),
        ("Kokoro af_heart", "kokoro", "af_heart", "en", 1, False),
        ("Kokoro af_heart", "kokoro", "af_heart", "en", 1, True),
        ("Kokoro af_heart", "kokoro", "af_heart", "en", 2, True),
        ("piper en_US-joe-medium", "piper", "en_US-joe-medium", "en", 2, True),
    ]
    load_before = os.getloadavg()
    runs = []
    for label, engine, voice, lang in quality:
        folder, timing = _run(engine, voice, 2, lang, len(MANDARIN), False)
        runs.append((label, lang, folder, timing))
        print(label, "done", flush=True)
    speeds = []
    for label, engine, voice, lang, threads, busy in speed:
        _, timing = _run(engine, voice, threads, lang, SPEED_SENTENCES, busy)
        speeds.append((label, lang, threads, busy, timing))
        print(label, threads, busy, "done", flush=True)
    load_after = os.getloadavg()
    whisper = WhisperModel(
        str(offline_whisper_base(Path("~/.cache/digital-human/models"))), device="cpu", compute_type="int8"
    )
    lines = [
        "# Offline voices: Kokoro-82M, piper, espeak-ng",
        "",
        f"`benchmarks/bench_voices.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; 2 shared cores, "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after the voices ran (other agents' work).",
        "20 Mandarin and 20 English sentences never used for tuning; Whisper base (the shipped model, greedy,",
        "language given) transcribes. Medians over the sentences; first audio is from `stream()` of a whole",
        "sentence to its first chunk.",
        "",
        "## Intelligibility, first audio, speed (2 threads, machine as it is)",
        "",
        "| voice | language | ASR error | heard perfectly | first audio (median / max) | RTF | load | peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    transcripts = ["", "## What Whisper heard (errors only)", ""]
    for label, lang, folder, timing in runs:
        sentences = MANDARIN if lang == "zh" else ENGLISH
        heard = _transcribe(whisper, folder, lang, len(sentences))
        scored = [(cer if lang == "zh" else wer)(ref, hyp) for ref, hyp in zip(sentences, heard, strict=True)]
        edits, total = sum(e for e, _ in scored), sum(n for _, n in scored)
        perfect = sum(e == 0 for e, _ in scored)
        firsts = [r["first"] for r in timing["rows"]]
        rtf = statistics.median(r["rtf"] for r in timing["rows"])
        metric = "CER" if lang == "zh" else "WER"
        lines.append(
            f"| {label} | {lang} | {metric} {100 * edits / total:.1f}% | {perfect}/{len(sentences)} | "
            f"{statistics.median(firsts):.2f} / {max(firsts):.2f} s | {rtf:.2f} | {timing['load']:.1f} s | "
            f"{timing['rss_peak']:.0f} MB |"
        )
        transcripts.append(f"**{label}**")
        transcripts.append("")
        for ref, hyp, (e, _) in zip(sentences, heard, scored, strict=True):
            if e:
                transcripts.append(f"- {ref} → {hyp.strip()} ({e} edits)")
        transcripts.append("")
    lines += [
        "",
        f"## Speed with 1 and 2 threads, idle and with one core kept busy ({SPEED_SENTENCES} sentences each)",
        "",
        "CPU s per s is the CPU time the voice's process used per second of speech: what it takes from the",
        "renderer and the LLM, whatever the other agents on the machine were doing.",
        "",
        "| voice | language | threads | other load | first audio (median) | RTF (median / max) | CPU s per s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, lang, threads, busy, timing in speeds:
        rtfs = [r["rtf"] for r in timing["rows"]]
        first = statistics.median(r["first"] for r in timing["rows"])
        cpu = statistics.median(r["cpu_rtf"] for r in timing["rows"])
        lines.append(
            f"| {label} | {lang} | {threads} | {'one core busy' if busy else 'as it is'} | {first:.2f} s | "
            f"{statistics.median(rtfs):.2f} / {max(rtfs):.2f} | {cpu:.2f} |"
        )
    RESULTS.write_text("\n".join([*lines, *transcripts]).rstrip() + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=6)
    args = parser.parse_args()
    if args.worker:
        engine, voice, threads, lang, count, out = args.worker
        worker(engine, voice, int(threads), lang, int(count), Path(out))
    else:
        main()
