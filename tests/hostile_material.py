"""Hostile test material made from real photos: cut-off files, turned and cropped portraits, short clips.

Everything is derived in the test run from the bundled astronaut portrait and matplotlib's Grace Hopper
photo, so no damaged file needs to be committed.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import matplotlib
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / "assets" / "avatars" / "astronaut.png"
GRACE = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
TURNS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
"""Degrees a photo is turned clockwise (as a phone that lost the EXIF rotation shows it)."""


def astronaut() -> np.ndarray:
    return cv2.imread(str(ASTRONAUT))


def grace() -> np.ndarray:
    return cv2.imread(str(GRACE))


def write(path: Path, image: np.ndarray) -> Path:
    ok, encoded = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def truncated(path: Path, source: Path, fraction: float = 1 / 3) -> Path:
    """The first part of a real file, as a broken download or copy leaves it."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def noise(path: Path, size: int = 5000) -> Path:
    """Random bytes under a photo's name (a download that saved an error page or garbage)."""
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def tilted(image: np.ndarray, degrees_clockwise: float) -> np.ndarray:
    """The photo turned by any angle about its centre, the corners filled with its own edge."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), -degrees_clockwise, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def write_clip(path: Path, image: np.ndarray, frames: int, fps: int = 25) -> Path:
    """An H.264 clip of the photo swaying a few pixels, `frames` long."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = image.shape[1], image.shape[0]
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = np.ascontiguousarray(np.roll(image, round(3 * float(np.sin(i / 5))), axis=1))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode())
    return path


def leftovers(folder: Path) -> list[str]:
    """Finished or half-written recordings in `folder`."""
    return sorted(p.name for p in folder.iterdir() if p.suffix in {".mp4", ".part"} or ".part" in p.name)
