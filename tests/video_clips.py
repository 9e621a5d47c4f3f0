"""Real footage for the video-avatar tests and benchmark: the calm webcam clip, and a hard one made from it.

`tests/data/video/calm.mp4` is a man at a webcam, filmed by the Idiap Research Institute (bob.io.video,
BSD-3; see tests/data/video/README.md). The hard clip keeps his own face, head motion and talking mouth, and
adds what livestream footage brings: a blue or green backdrop (keyed with mediapipe's selfie segmentation,
with the uneven light of a real cloth), and strong extra motion (a smooth affine path of shifts, tilts, scale
changes and a sideways squeeze like a head turn's, with one fast sweep), at twice the resolution.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CALM = ROOT / "tests" / "data" / "video" / "calm.mp4"
BACKDROPS = {"blue": (200, 110, 30), "green": (60, 175, 40)}
"""BGR colours of a chroma-key cloth."""


def read_frames(path: Path, seconds: float | None = None) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        frames = []
        for frame in container.decode(stream):
            if seconds is not None and len(frames) >= round(seconds * fps):
                break
            frames.append(frame.to_ndarray(format="bgr24"))
    return frames, fps


def write_frames(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "16"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())
    return path


def keyed(frames: list[np.ndarray], colour: str) -> list[np.ndarray]:
    """The person composited onto a coloured backdrop, lit unevenly like a real cloth."""
    from mediapipe.python.solutions import selfie_segmentation

    h, w = frames[0].shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 0.8 + 0.25 * np.exp(-(((xs - 0.3 * w) / w) ** 2 + ((ys - 0.2 * h) / h) ** 2) * 3)
    cloth = np.clip(np.array(BACKDROPS[colour], np.float32) * light[..., None], 0, 255)
    out = []
    with selfie_segmentation.SelfieSegmentation(model_selection=0) as segmenter:
        for frame in frames:
            mask = segmenter.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)).segmentation_mask
            alpha = np.clip((mask.astype(np.float32) - 0.3) / 0.4, 0, 1)
            alpha = cv2.GaussianBlur(alpha, (0, 0), 1.0)[..., None]
            out.append(np.clip(frame * alpha + cloth * (1 - alpha), 0, 255).astype(np.uint8))
    return out


def moved(frames: list[np.ndarray], fps: float, upscale: float = 2.0, sweep_at: float = 4.0) -> list[np.ndarray]:
    """Frames scaled up and moved along a smooth affine path: ±40 px, ±7°, 0.8-1.2× scale, a ±12% squeeze across
    (the foreshortening a head turn of ~30° gives the face), and one fast sweep (60 px out and back within 0.8 s
    from `sweep_at` seconds)."""
    h, w = frames[0].shape[:2]
    size = (round(w * upscale), round(h * upscale))
    centre = np.array([w / 2, h * 0.4])
    out = []
    for i, frame in enumerate(frames):
        t = i / fps
        sweep = 60 * np.tanh((t - sweep_at) / 0.15) - 60 * np.tanh((t - sweep_at - 0.8) / 0.15)
        shift = (40 * np.sin(2 * np.pi * t / 3.1) + 0.5 * sweep, 20 * np.sin(2 * np.pi * t / 2.3 + 1.0))
        angle = np.radians(7 * np.sin(2 * np.pi * t / 3.7 + 0.5))
        scale = upscale * (1.0 + 0.2 * np.sin(2 * np.pi * t / 5.3))
        squeeze = 1.0 + 0.12 * np.sin(2 * np.pi * t / 2.9 + 2.0)
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        linear = turn @ np.diag([scale * squeeze, scale])
        target = np.array([size[0] / 2, size[1] * 0.4]) + shift  # the centre lands mid-picture, then moves
        matrix = np.hstack([linear, (target - linear @ centre)[:, None]])
        out.append(cv2.warpAffine(frame, matrix, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE))
    return out


def hard_clip(folder: Path, colour: str, seconds: float | None = None, sweep_at: float = 4.0) -> Path:
    """The calm clip on a `colour` backdrop with strong extra motion, written as H.264 in `folder`."""
    frames, fps = read_frames(CALM, seconds)
    return write_frames(folder / f"hard_{colour}.mp4", moved(keyed(frames, colour), fps, sweep_at=sweep_at), fps)
