"""A stand-in for LatentSync's `scripts/inference.py`, for contract tests (no GPU, no weights here).

Tests copy this file to `<fake checkout>/scripts/inference.py`; the runner starts it exactly as it starts the
real one (`python -m scripts.inference ...` with the checkout as working directory). It honours the real
CLI contract: the same arguments (argparse, unknown ones refused), relative paths resolved from the working
directory (config, checkpoint), the input video must show "a face" in every frame (here: a frame that is not
blank) or it fails with LatentSync's error, a video shorter than the audio is ping-pong looped, `./temp` is
wiped, progress is written as tqdm bars on stderr (an outer bar over 16-frame segments, an inner one over the
denoising steps), the output is a 25 fps H.264 video with the audio resampled to 16 kHz, exit status 0 on
success and 1 with a Python traceback on failure.

`standin.json` in the working directory picks the behaviour: {"mode": "ok" | "oom" | "no_output" | "hang",
"step_s": seconds per denoising step, "record": file to append each call's argv and cwd to, "pids": file
to append the pids of its process group to}. In "hang" it starts a child (like LatentSync's ffmpeg) and
waits forever, so a timeout or cancellation must kill the whole group.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
import traceback
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

FPS = 25
SEGMENT = 16
AUDIO_RATE = 16000


class OutOfMemoryError(RuntimeError):
    """What torch raises when the clip does not fit in VRAM."""


def _options() -> dict:
    path = Path("standin.json")
    return json.loads(path.read_text()) if path.exists() else {}


def _append(path: str | None, record: dict) -> None:
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _read_video(path: str) -> list[np.ndarray]:
    with av.open(path) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def _read_audio(path: str) -> np.ndarray:
    with av.open(path) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
        parts = [out.to_ndarray().reshape(-1) for f in container.decode(audio=0) for out in resampler.resample(f)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)


def _write(path: str, frames: list[np.ndarray], audio: np.ndarray) -> None:
    height, width = frames[0].shape[:2]
    with av.open(path, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        chunk = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="s16", layout="mono")
        chunk.sample_rate, chunk.pts = AUDIO_RATE, 0
        for packet in sound.encode(chunk):
            out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)


def main(args: argparse.Namespace, options: dict) -> None:
    for required in (args.unet_config_path, args.inference_ckpt_path):
        if not Path(required).is_file():  # relative to the working directory, like the real one
            raise FileNotFoundError(f"[Errno 2] No such file or directory: '{required}'")
    if not os.path.exists(args.video_path):
        raise RuntimeError(f"Video path '{args.video_path}' not found")
    if not os.path.exists(args.audio_path):
        raise RuntimeError(f"Audio path '{args.audio_path}' not found")
    print(f"Input video path: {args.video_path}")
    print(f"Input audio path: {args.audio_path}")
    print(f"Loaded checkpoint path: {args.inference_ckpt_path}")
    audio = _read_audio(args.audio_path)
    video = _read_video(args.video_path)
    chunks = math.ceil(len(audio) / AUDIO_RATE * FPS)
    print(f"Affine transforming {len(video)} faces...")
    for frame in tqdm(video):
        if float(frame.std()) < 2.0:
            raise RuntimeError("Face not detected")
    looped: list[np.ndarray] = []
    forward = True
    while len(looped) < chunks:
        looped += video if forward else video[::-1]
        forward = not forward
    looped = looped[:chunks]

    if options.get("mode") == "oom":
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    step_s = float(options.get("step_s", 0.0))
    synced: list[np.ndarray] = []
    segments = math.ceil(chunks / SEGMENT)
    for i in tqdm(range(segments), desc="Doing inference..."):
        with tqdm(total=args.inference_steps, desc=f"Sample frames: {SEGMENT}") as steps:
            for _ in range(args.inference_steps):
                time.sleep(step_s)
                steps.update()
        for k, frame in enumerate(looped[i * SEGMENT : (i + 1) * SEGMENT]):
            index = i * SEGMENT + k
            loud = audio[index * AUDIO_RATE // FPS : (index + 1) * AUDIO_RATE // FPS]
            level = float(np.abs(loud.astype(np.int32)).mean()) if len(loud) else 0.0
            marked = frame.copy()
            h, w = marked.shape[:2]
            marked[h * 2 // 3 : h * 2 // 3 + 8, w // 3 : w * 2 // 3] = min(255, int(level / 16))  # "the mouth"
            synced.append(marked)

    shutil.rmtree("temp", ignore_errors=True)  # the real pipeline wipes ./temp of its working directory
    os.makedirs("temp")
    if options.get("mode") == "no_output":
        return  # its ffmpeg call failed: it does not check, and exits 0 without an output file
    _write(os.path.join("temp", "video.mp4"), synced, audio[: len(synced) * AUDIO_RATE // FPS])
    shutil.copyfile(os.path.join("temp", "video.mp4"), args.video_out_path)
    print(f"Output video saved to {args.video_out_path}")


def _hang(options: dict) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    _append(options.get("pids"), {"pids": [os.getpid(), child.pid]})
    print("Doing inference...:   0%|          | 0/4 [00:00<?, ?it/s]", file=sys.stderr, flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--unet_config_path", type=str, default="configs/unet.yaml")
    parser.add_argument("--inference_ckpt_path", type=str, required=True)
    parser.add_argument("--video_path", type=str, required=True)
    parser.add_argument("--audio_path", type=str, required=True)
    parser.add_argument("--video_out_path", type=str, required=True)
    parser.add_argument("--inference_steps", type=int, default=20)
    parser.add_argument("--guidance_scale", type=float, default=1.0)
    parser.add_argument("--enable_deepcache", action="store_true")
    parser.add_argument("--seed", type=int, default=1247)
    arguments = parser.parse_args()
    settings = _options()
    _append(settings.get("record"), {"argv": sys.argv[1:], "cwd": os.getcwd()})
    if settings.get("mode") == "hang":
        _hang(settings)
    else:
        _append(settings.get("pids"), {"pids": [os.getpid()]})
    try:
        main(arguments, settings)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
