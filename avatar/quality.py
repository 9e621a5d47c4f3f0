"""Lip-sync and identity measurements on a renderer's *output* frames.

The renderer reports its own `mouth_open`, but a renderer can believe it opens the mouth while
drawing something no viewer would read as an open mouth. So these metrics look at the pixels
the way a viewer would: an independent landmark detector (mediapipe) on the output frames for
the lips, and an independent face-recognition network (dlib's ResNet) for who the face is.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avatar.base import Renderer
from avatar.landmarks import (
    FACE_OVAL,
    LEFT_EYE,
    LIPS_OUTER,
    RIGHT_EYE,
    FaceLandmarks,
    detect_faces,
    faces_from_result,
    mouth_opening,
    process_quietly,
    static_face_mesh,
)
from core.events import Frame

SAME_PERSON_DISTANCE = 0.6
"""dlib's face embedding was trained to put one person's faces within 0.6 of each other (Euclidean)."""


def lip_opening_series(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Inner-lip opening (gap / mouth width) per frame, NaN where no face is found.

    Every frame is measured on its own (static-image mode): mediapipe's tracking mode seeds each
    frame from the previous one, which drags the measured lips behind the drawn ones and would
    bias the lag this series exists to measure.
    """
    openings = np.full(len(frames), np.nan)
    mesh = static_face_mesh(1)
    for i, frame in enumerate(frames):
        height, width = frame.shape[:2]
        faces = faces_from_result(process_quietly(mesh, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)), 0, 0, width, height)
        if faces:
            openings[i] = mouth_opening(faces[0])
    return openings


def speech_envelope(pcm: np.ndarray, sample_rate: int, fps: float, smooth_frames: int = 3) -> np.ndarray:
    """Loudness per video frame in dBFS: RMS of exactly that frame's samples, lightly smoothed.

    Decibels rather than amplitude, because lip opening tracks perceived loudness (roughly
    logarithmic) better than raw amplitude. The smoothing kernel is symmetric, so it adds no lag.
    """
    samples = pcm.astype(np.float64)
    if pcm.dtype == np.int16:
        samples /= 32768.0
    per_frame = sample_rate / fps
    count = int(len(samples) // per_frame)
    edges = np.round(np.arange(count + 1) * per_frame).astype(int)
    power = np.array([np.mean(samples[a:b] ** 2) if b > a else 0.0 for a, b in itertools.pairwise(edges)])
    if smooth_frames > 1 and count >= smooth_frames:
        kernel = np.hanning(smooth_frames + 2)[1:-1]
        power = np.convolve(np.pad(power, smooth_frames // 2, mode="edge"), kernel / kernel.sum(), mode="valid")
    return 10.0 * np.log10(np.maximum(power, 1e-10))


def silent_mask(envelope_db: np.ndarray, below_peak_db: float = 40.0, margin_frames: int = 2) -> np.ndarray:
    """Frames that are silent *and* at least `margin_frames` away from any sound.

    Silence is judged relative to the loudest frame, so it does not depend on the recording
    level. The margin leaves out the frames where the mouth is still closing after a word or
    already opening for the next one: those belong to the sound, not to the silence.
    """
    silent = envelope_db < envelope_db.max() - below_peak_db
    if margin_frames:
        kernel = np.ones(2 * margin_frames + 1)
        silent = np.convolve(~silent, kernel, mode="same") == 0
    return silent


def lagged_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 5) -> tuple[int, float, float]:
    """Pearson correlation of a[t] with b[t + lag] for lags in ±max_lag: (best lag, r at best lag, r at lag 0).

    With a = speech and b = lips, a positive best lag means the lips move *after* the sound.
    Frames where either series is NaN (no face found) are left out.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) != len(b):
        raise ValueError(f"series differ in length: {len(a)} vs {len(b)}")

    def r(lag: int) -> float:
        x, y = (a[: len(a) - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[: len(b) + lag])
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        if len(x) < 3 or x.std() == 0 or y.std() == 0:
            return float("nan")
        return float(np.corrcoef(x, y)[0, 1])

    scores = {lag: r(lag) for lag in range(-max_lag, max_lag + 1)}
    finite = {lag: s for lag, s in scores.items() if np.isfinite(s)}
    if not finite:
        return 0, float("nan"), float("nan")
    best = max(finite, key=lambda lag: (finite[lag], -abs(lag)))
    return best, finite[best], scores[0]


def closed_fraction(openings: np.ndarray, silent: np.ndarray, threshold: float) -> float:
    """Share of the silent frames whose measured lip opening is at most `threshold` (NaN frames count as open)."""
    silent = np.asarray(silent, dtype=bool)
    if not silent.any():
        return float("nan")
    values = np.asarray(openings, dtype=np.float64)[silent]
    return float(np.mean(np.nan_to_num(values, nan=np.inf) <= threshold))


@dataclass(frozen=True)
class IdentityReport:
    distances: np.ndarray
    """Embedding distance of each checked output frame to the source face (NaN: no face found)."""

    @property
    def max_distance(self) -> float:
        return float(np.nanmax(self.distances)) if np.isfinite(self.distances).any() else float("nan")

    @property
    def preserved(self) -> bool:
        """Every checked frame shows a face, and every one is the source's person."""
        return bool(np.isfinite(self.distances).all() and (self.distances < SAME_PERSON_DISTANCE).all())


class FaceEmbedder:
    """dlib's ResNet face embedding (128-d), aligned with dlib's 5-point predictor.

    Both models ship in the `face-recognition-models` wheel (public domain, per dlib-models);
    dlib comes from the `dlib-bin` wheel. A benchmark/test dependency only: the product does not
    need it. Faces are located with mediapipe (dlib's HOG detector fires on badges and patches),
    and only the box is handed to dlib's own aligner so the embedding sees the crop it was trained on.
    """

    def __init__(self) -> None:
        import importlib.util

        import dlib

        # Found by path: the package's own `__init__` imports setuptools' pkg_resources, gone from setuptools 81.
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("face-recognition-models is not installed (make dev installs it)")
        models = Path(next(iter(spec.submodule_search_locations))) / "models"
        self._dlib = dlib
        self._aligner = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._network = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, image_bgr: np.ndarray, face: FaceLandmarks | None = None) -> np.ndarray | None:
        """The 128-d embedding of `face` (or of the largest face found) in the image; None if there is no face."""
        if face is None:
            faces = detect_faces(image_bgr)
            if not faces:
                return None
            face = faces[0]
        rgb = np.ascontiguousarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        cx, cy = face.center
        half = face.width / 2
        box = self._dlib.rectangle(round(cx - half), round(cy - half), round(cx + half), round(cy + half))
        shape = self._aligner(rgb, box)
        return np.asarray(self._network.compute_face_descriptor(rgb, shape), dtype=np.float64)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b))

    def compare(self, source_bgr: np.ndarray, frames: Sequence[np.ndarray]) -> IdentityReport:
        reference = self.embed(source_bgr)
        if reference is None:
            raise ValueError("no face in the source image")
        distances = []
        for frame in frames:
            embedding = self.embed(frame)
            distances.append(np.nan if embedding is None else self.distance(reference, embedding))
        return IdentityReport(np.array(distances))


def contact_sheet(
    frames: Sequence[np.ndarray],
    cols: int = 8,
    labels: Sequence[str] | None = None,
    crop: tuple[int, int, int, int] | None = None,
    tile_width: int = 200,
) -> np.ndarray:
    """A BGR grid of frames with a caption under each (e.g. index, lip opening, speaking).

    `crop` (x, y, w, h) cuts every frame to the same region, usually the lower face, so that a
    person looking at the sheet sees the mouth at a useful size.
    """
    if not frames:
        raise ValueError("no frames for the contact sheet")
    if labels is not None and len(labels) != len(frames):
        raise ValueError("one label per frame")
    tiles = []
    for i, frame in enumerate(frames):
        if crop is not None:
            x, y, w, h = crop
            frame = frame[max(0, y) : y + h, max(0, x) : x + w]
        scale = tile_width / frame.shape[1]
        tile = cv2.resize(frame, (tile_width, round(frame.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        caption = np.full((22, tile_width, 3), 255, np.uint8)
        if labels is not None:
            cv2.putText(caption, labels[i], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([tile, caption]))
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0)), constant_values=255) for t in tiles]
    rows = []
    for start in range(0, len(tiles), cols):
        row = tiles[start : start + cols]
        row += [np.full_like(tiles[0], 255)] * (cols - len(row))
        rows.append(np.hstack([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in row]))
    return np.vstack(rows)


def render_speech(
    renderer: Renderer, pcm: np.ndarray, chunk_samples: int | None = None, tail_frames: int = 0
) -> list[Frame]:
    """Drive a renderer with speech the way a live session does, and collect every frame.

    With `chunk_samples` the audio arrives in pieces of that size and a frame is drawn after
    each piece (frames are always one `samples_per_frame` of audio: a 40 ms chunk at 25 FPS
    means the renderer gets no look-ahead at all); without it the whole utterance is queued at
    once, as when the TTS runs ahead of playback. `tail_frames` idle frames follow the speech.
    """
    spf = renderer.samples_per_frame
    frames: list[Frame] = []
    if chunk_samples is None:
        renderer.feed(pcm)
    else:
        for start in range(0, len(pcm), chunk_samples):
            renderer.feed(pcm[start : start + chunk_samples])
            while renderer.queued_samples >= spf:
                frames.append(renderer.render_next())
    while renderer.queued_samples > 0:
        frames.append(renderer.render_next())
    frames.extend(renderer.render_next() for _ in range(tail_frames))
    return frames


@dataclass(frozen=True)
class LipSyncReport:
    """What `measure_lip_sync` found; `openings` and `envelope_db` are per frame."""

    openings: np.ndarray
    envelope_db: np.ndarray
    silent: np.ndarray
    lag: int
    """Frames the lips trail the sound by (negative: they lead), at the best correlation."""
    r_best: float
    r_zero: float
    """Correlation over all frames at the best lag and at lag 0 (the renderer's promise)."""
    r_speech: float
    """Correlation at lag 0 over the sounding frames only: does the mouth follow syllables, not just speech/silence."""
    closed: float
    silent_motion: float
    """Standard deviation of the measured lip opening over the silent frames: ~0 when the mouth rests."""
    missing: float
    """Share of frames where the detector found no face."""


def measure_lip_sync(frames: Sequence[Frame], fps: float, sample_rate: int, closed_threshold: float) -> LipSyncReport:
    """Lip opening seen on the output frames against the audio each frame carried."""
    audio = np.concatenate([f.audio for f in frames])
    envelope = speech_envelope(audio, sample_rate, fps)[: len(frames)]
    openings = lip_opening_series([f.image for f in frames])
    silent = silent_mask(envelope)
    # Below 40 dB under the peak nothing is audible in speech; without the floor the digital
    # silence (-100 dB) would dominate the correlation.
    loudness = np.maximum(envelope, envelope.max() - 40.0)
    lag, r_best, r_zero = lagged_correlation(loudness, openings)
    sounding = loudness > envelope.max() - 40.0
    _, _, r_speech = lagged_correlation(np.where(sounding, loudness, np.nan), openings, max_lag=0)
    quiet = openings[silent]
    return LipSyncReport(
        openings=openings,
        envelope_db=envelope,
        silent=silent,
        lag=lag,
        r_best=r_best,
        r_zero=r_zero,
        r_speech=r_speech,
        closed=closed_fraction(openings, silent, closed_threshold),
        silent_motion=float(np.nanstd(quiet)) if np.isfinite(quiet).any() else float("nan"),
        missing=float(np.mean(~np.isfinite(openings))),
    )


def face_mask(points: np.ndarray, shape: tuple[int, ...], exclude_features: bool = True) -> np.ndarray:
    """Boolean mask of the face oval, without the mouth and eyes (the parts meant to change) by default."""
    face = FaceLandmarks(points)
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(face.xy[FACE_OVAL]).astype(np.int32)], 255)
    if exclude_features:
        features = np.zeros_like(mask)
        for group in (LIPS_OUTER, LEFT_EYE, RIGHT_EYE):
            cv2.fillPoly(features, [np.round(face.xy[group]).astype(np.int32)], 255)
        grow = max(3, round(face.width * 0.12)) | 1
        mask[cv2.dilate(features, np.ones((grow, grow), np.uint8)) > 0] = 0
    return mask > 0


def detail_kept(frames: Sequence[np.ndarray], reference: np.ndarray, mask: np.ndarray) -> float:
    """Fine detail left in the frames relative to the reference: median ratio of Laplacian variance in `mask`.

    1.0 means as sharp as the photo; resampling with bilinear interpolation at sub-pixel offsets
    reads about 0.3–0.5, a visible softening of skin texture and edges.
    """

    def detail(image: np.ndarray) -> float:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        return float(cv2.Laplacian(grey, cv2.CV_32F)[mask].var())

    base = detail(reference)
    return float(np.median([detail(frame) for frame in frames]) / max(base, 1e-9))


def change_heatmap(frames: Sequence[np.ndarray], reference: np.ndarray) -> np.ndarray:
    """The reference with, overlaid, how much each pixel changes across the frames (95th percentile).

    Shows at a glance whether the animation stays on the head or drags background along.
    """
    if not frames:
        raise ValueError("no frames for the heatmap")
    stack = [np.abs(f.astype(np.int16) - reference.astype(np.int16)).max(axis=2).astype(np.uint8) for f in frames]
    change = np.percentile(np.stack(stack), 95, axis=0)
    heat = cv2.applyColorMap(np.clip(change * 4, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(reference, 0.5, heat, 0.5, 0)
