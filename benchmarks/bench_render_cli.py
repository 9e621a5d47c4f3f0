"""Recorded replies end to end: text -> offline TTS -> CPU renderer -> H.264/AAC MP4.

Reports the speed against real time (speech seconds / wall seconds), medians over repeats, with the
avatar already prepared (cached) as in normal use; cold preparation is reported separately.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.render_job import render_speech
from agent.renderers import create_renderer, prepare
from agent.script import paragraphs_from_text
from core.config import load_config
from speech.tts_select import create_tts
from streaming.recording import probe_durations

TEXTS = {
    "short (issue example)": "Hello, I am your virtual presenter.",
    "paragraph": (
        "Welcome to today's lesson. We will look at how a talking avatar turns text into speech, "
        "and speech into moving lips. Every frame carries its own slice of audio, so the two never drift apart. "
        "Let's begin with the first example."
    ),
}
REPEATS = 5
ROOT = Path(__file__).resolve().parent.parent


def whole_command_table() -> str:
    """The user's view: `digital-human render` as a fresh process (imports and model loading included)."""
    exe = shutil.which("digital-human", path=str(Path(sys.executable).parent))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DH_AVATAR__CACHE_DIR": str(Path(tmp) / "cache")}
        for label, text in TEXTS.items():
            walls = []
            for i in range(REPEATS + 1):
                out = Path(tmp) / "cmd.mp4"
                t0 = time.perf_counter()
                cmd = [exe, "render", "--text", text, "-o", str(out)]
                subprocess.run(cmd, env=env, check=True, capture_output=True)
                if i:  # the first run also prepares the avatar cache
                    walls.append(time.perf_counter() - t0)
            speech = probe_durations(out)[0]
            wall = statistics.median(walls)
            rows.append(f"| {label} | {speech:.2f} | {wall:.2f} | {speech / wall:.2f}x |")
    return (
        "\n".join(
            [
                "Whole command, fresh process each time (imports, voice model load, cached avatar, render, mux):",
                "",
                "| text | video s | wall s (median) | speed vs real time |",
                "|---|---|---|---|",
                *rows,
            ]
        )
        + "\n"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(overrides={"avatar": {"cache_dir": str(Path(tmp) / "cache")}}, environ={})
        t0 = time.perf_counter()
        prepared, _ = prepare(cfg)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepared, _ = prepare(cfg)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        tts = create_tts(cfg.tts)
        tts_load = time.perf_counter() - t0
        rows = []
        for label, text in TEXTS.items():
            speeds, elapsed, skew = [], [], []
            for i in range(REPEATS + 1):
                out = Path(tmp) / f"r{i}.mp4"
                renderer = create_renderer(cfg, prepared, seed=i)
                report = asyncio.run(render_speech(renderer, tts, paragraphs_from_text(text), out))
                if i == 0:
                    continue  # warm-up: first synthesis pays one-off costs
                vdur, adur = probe_durations(out)
                speeds.append(report.speed)
                elapsed.append(report.elapsed)
                skew.append(abs(vdur - adur))
            rows.append(
                f"| {label} | {report.seconds:.2f} | {statistics.median(elapsed):.2f} | "
                f"{statistics.median(speeds):.1f}x | {max(skew) * 1000:.0f} |"
            )
    table = "\n".join(
        [
            "| text | speech s | render wall s (median) | speed vs real time | max A/V duration skew ms |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    table += "\n\n" + whole_command_table()
    table += (
        f"\nAvatar preparation: {cold:.2f} s cold, {warm * 1000:.0f} ms cached. "
        f"TTS load: {tts_load:.2f} s. {REPEATS} repeats after a warm-up, 2-core CPU, no GPU.\n"
    )
    print(table)
    (ROOT / "benchmarks" / "results" / "render_cli.md").write_text(table)


if __name__ == "__main__":
    main()
