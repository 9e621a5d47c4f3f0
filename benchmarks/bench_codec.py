"""Bandwidth and encode cost of the live video codecs, on frames from the real renderer.

The bundled avatar speaks real recordings (tests/data/audio/en, looped with short pauses) and also
idles (no audio); every rendered frame goes through each encoder in turn: H.264 at three libx264
presets with the live settings (streaming.video_codec), and JPEG q80. Per frame: bytes, encode
time (one thread, like a session's worker) and PSNR of the decoded picture against the rendered one.
Encode times are medians / p99 over all frames of all repeats, because the machine's 2 cores are
shared. Writes benchmarks/results/codec.md.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_renderer import ASTRONAUT, make_1080p, speech_loop  # noqa: E402

from avatar.prepare import prepare_avatar  # noqa: E402
from avatar.realtime import RealtimeRenderer  # noqa: E402
from streaming.video_codec import (  # noqa: E402
    KEYFRAME_SECONDS,
    H264Encoder,
    JpegEncoder,
    VideoEncoder,
    default_bitrate,
)

FPS = 25
FRAMES = 250
REPEATS = 3
PRESETS = ("ultrafast", "superfast", "veryfast")
SPARSE_KEYFRAMES = 10.0
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Tally:
    sizes: list[int] = field(default_factory=list)
    keyframe_sizes: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)


def encoders(width: int, height: int) -> dict[str, VideoEncoder]:
    bitrate = default_bitrate(width, height, FPS)
    out: dict[str, VideoEncoder] = {
        f"h264 {p}": H264Encoder(width, height, FPS, bitrate, KEYFRAME_SECONDS, preset=p) for p in PRESETS
    }
    # Over a reliable websocket a regular keyframe only helps a decoder that lost its state (which can ask):
    # what sparser ones would save.
    out[f"h264 ultrafast, keyframe every {SPARSE_KEYFRAMES:g} s"] = H264Encoder(
        width, height, FPS, bitrate, SPARSE_KEYFRAMES, preset="ultrafast"
    )
    out["jpeg q80"] = JpegEncoder(width, height, 80)
    return out


def run(avatar: object, pcm: np.ndarray | None, tallies: dict[str, Tally], repeat: int) -> None:
    renderer = RealtimeRenderer(avatar, fps=FPS, seed=7)  # type: ignore[arg-type]
    if pcm is not None:
        renderer.feed(pcm)
    width, height = renderer.frame_size
    coders = encoders(width, height)
    decoders = {name: av.CodecContext.create("h264", "r") for name in coders if name.startswith("h264")}
    for ctx in decoders.values():
        ctx.thread_count = 1
    for _ in range(FRAMES):
        image = renderer.render_next().image
        for name, coder in coders.items():
            start = time.perf_counter()
            out = coder.encode(image)
            took = time.perf_counter() - start
            tally = tallies.setdefault(name, Tally())
            tally.times.append(took)
            if repeat:
                continue  # sizes and quality are deterministic: measured once
            tally.sizes.append(len(out.data))
            if out.keyframe and name in decoders:
                tally.keyframe_sizes.append(len(out.data))
            if name in decoders:
                decoded = decoders[name].decode(av.Packet(out.data))[0].to_ndarray(format="bgr24")
            else:
                decoded = cv2.imdecode(np.frombuffer(out.data, np.uint8), cv2.IMREAD_COLOR)
            tally.psnr.append(cv2.PSNR(decoded, image))


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99))


def main() -> None:
    cv2.setNumThreads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    speech = speech_loop(FRAMES / FPS)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, path in (("512×512", ASTRONAUT), ("1920×1080", make_1080p(folder))):
            avatar, _ = prepare_avatar(path, folder / "cache")
            for activity, pcm in (("speaking", speech), ("idle", None)):
                tallies: dict[str, Tally] = {}
                for repeat in range(REPEATS):
                    run(avatar, pcm, tallies, repeat)
                for name, t in tallies.items():
                    mean = statistics.fmean(t.sizes)
                    key = statistics.fmean(t.keyframe_sizes) if t.keyframe_sizes else float("nan")
                    rows.append(
                        (
                            label,
                            activity,
                            name,
                            mean / 1000,
                            key / 1000,
                            mean * 8 * FPS / 1e6,
                            statistics.median(t.times) * 1000,
                            p99(t.times) * 1000,
                            statistics.fmean(t.psnr),
                        )
                    )
                    print(rows[-1], flush=True)
    write_report(rows)


def write_report(rows: list[tuple]) -> None:
    lines = [
        "# Live video codecs: bandwidth and encode cost",
        "",
        f"Frames from the real renderer: the bundled astronaut speaking real recordings (tests/data/audio/en, "
        f"looped with 1/3 s pauses) or idling (blinks, breathing, small head motion), {FRAMES} frames at {FPS} fps "
        f"per run. H.264 = streaming.video_codec's live settings (libx264 baseline, tune zerolatency, CRF 23 "
        f"under a VBV cap, a keyframe every 2 s with SPS/PPS, one thread); JPEG = cv2.imencode q80. "
        f"Bytes and PSNR (decoded picture vs the rendered one) from one run; encode ms = median and p99 "
        f"per frame over {REPEATS} runs, one thread (cv2.setNumThreads(1)), including the BGR→I420 "
        "conversion. 1080p = the astronaut upscaled to 1080 px high and reflect-padded to 1920×1080. "
        "Machine: 2 shared cores with other jobs running, so times are noisy.",
        "",
        "| size | avatar | codec | KB/frame | keyframe KB | Mbit/s at 25 fps | encode p50 ms | p99 ms | PSNR dB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, activity, name, kb, key, mbit, p50, p99_ms, psnr in rows:
        key_text = "—" if key != key else f"{key:.0f}"
        lines.append(
            f"| {label} | {activity} | {name} | {kb:.1f} | {key_text} | {mbit:.2f} | {p50:.2f} | {p99_ms:.2f} "
            f"| {psnr:.1f} |"
        )
    (RESULTS / "codec.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
