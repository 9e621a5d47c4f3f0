"""Lip-sync and identity quality of the CPU renderer, measured on its output frames.

Real speech (the English test recordings, with silence before, between and after) drives the
renderer the way a session does; an independent landmark detector reads the lips off every
output frame and dlib's face-recognition network checks the face is still the same person.
Writes benchmarks/results/avatar_quality.md and a contact sheet PNG to look at.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import cv2
import matplotlib
import numpy as np

from avatar import landmarks as lm
from avatar import quality as q
from avatar.prepare import prepare_avatar
from avatar.realtime import RealtimeRenderer
from core.audio import read_audio_file
from core.events import CANONICAL_SAMPLE_RATE, SpeechChunk

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PORTRAITS = {
    "astronaut (smiling, teeth)": ROOT / "assets" / "avatars" / "astronaut.png",
    "grace hopper (closed mouth)": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
}
SPEECH = sorted((ROOT / "tests" / "data" / "audio" / "en").glob("*.wav"))
FPS = 25
PIPER_TEXT = "Hello there. My name is Joe, and I will be your guide today. Let's look at how this works."
CLOSED = 0.06
"""Measured lip opening (gap / width) under which a mouth counts as closed: see the module notes."""


def speech_with_pauses(pause_seconds: float = 0.8) -> np.ndarray:
    """The test recordings one after another, with silence before, between and after them."""
    pause = np.zeros(int(pause_seconds * CANONICAL_SAMPLE_RATE), np.int16)
    parts = [pause]
    for path in SPEECH:
        parts += [read_audio_file(path, CANONICAL_SAMPLE_RATE), pause]
    return np.concatenate(parts)


def piper_speech(text: str) -> list[SpeechChunk]:
    """Offline TTS with phoneme timings: the production path, where visemes drive the mouth."""
    from speech.tts_piper import PiperTTS

    async def collect() -> list[SpeechChunk]:
        tts = PiperTTS()
        try:
            return [c async for c in tts.stream(text) if isinstance(c, SpeechChunk)]
        finally:
            await tts.aclose()

    return asyncio.run(collect())


def render_chunks(renderer: RealtimeRenderer, chunks: list[SpeechChunk], pause_seconds: float = 0.8) -> list:
    """Queue TTS chunks with their visemes, between two pauses, and render until all is played."""
    pause = np.zeros(int(pause_seconds * CANONICAL_SAMPLE_RATE), np.int16)
    renderer.feed(pause)
    for chunk in chunks:
        renderer.feed(chunk.pcm, chunk.visemes)
    renderer.feed(pause)
    frames = []
    while renderer.queued_samples > 0:
        frames.append(renderer.render_next())
    return frames


def identity_frames(frames: list, openings: np.ndarray, count: int = 8) -> list[np.ndarray]:
    """The most open frames (where identity is most at risk) and evenly spaced ones."""
    finite = np.nan_to_num(openings, nan=-1.0)
    widest = list(np.argsort(finite)[-count // 2 :])
    spaced = list(np.linspace(0, len(frames) - 1, count - len(widest)).astype(int))
    return [frames[i].image for i in sorted(set(widest + spaced))]


def shuffled_baseline(report: q.LipSyncReport, repeats: int = 50) -> tuple[float, float]:
    """(r at lag 0, r within speech) for lips that open as much but at random moments while sound plays.

    What a renderer that only gates a flapping mouth on voice activity would score: the bar the
    real lip-sync has to clear.
    """
    rng = np.random.default_rng(0)
    loudness = np.maximum(report.envelope_db, report.envelope_db.max() - 40.0)
    sounding = loudness > report.envelope_db.max() - 40.0
    all_r, speech_r = [], []
    for _ in range(repeats):
        openings = report.openings.copy()
        openings[sounding] = rng.permutation(openings[sounding])
        all_r.append(q.lagged_correlation(loudness, openings, max_lag=0)[2])
        speech_r.append(q.lagged_correlation(np.where(sounding, loudness, np.nan), openings, max_lag=0)[2])
    return float(np.median(all_r)), float(np.median(speech_r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-identity", action="store_true", help="skip the dlib identity check")
    args = parser.parse_args()
    pcm = speech_with_pauses()
    piper_chunks = piper_speech(PIPER_TEXT)
    embedder = None if args.no_identity else q.FaceEmbedder()
    rows: list[dict[str, str]] = []
    sheet_done = False
    heatmaps: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in PORTRAITS.items():
            avatar, _ = prepare_avatar(path, Path(tmp) / "cache")
            modes = ("recorded speech, whole queued", "recorded speech, 40 ms chunks", "piper TTS with visemes")
            for mode in modes:
                renderer = RealtimeRenderer(avatar, fps=FPS, seed=1)
                if mode.startswith("piper"):
                    frames = render_chunks(renderer, piper_chunks)
                else:
                    chunk = 960 if "40 ms" in mode else None
                    frames = q.render_speech(renderer, pcm, chunk_samples=chunk, tail_frames=FPS)
                report = q.measure_lip_sync(frames, FPS, CANONICAL_SAMPLE_RATE, CLOSED)
                checked = identity_frames(frames, report.openings)
                identity = embedder.compare(avatar.image, checked) if embedder else None
                own = np.array([f.mouth_open for f in frames])
                _, _, r_own = q.lagged_correlation(own, report.openings, max_lag=0)
                base_all, base_speech = shuffled_baseline(report)
                silent_openings = report.openings[report.silent]
                images = [f.image for f in frames]
                detail_mask = q.face_mask(avatar.points, avatar.image.shape)
                rows.append(
                    {
                        "portrait": name,
                        "speech, feeding": mode,
                        "frames": str(len(frames)),
                        "lag (frames)": f"{report.lag:+d}",
                        "r at lag 0": f"{report.r_zero:.2f}",
                        "r at best lag": f"{report.r_best:.2f}",
                        "r within speech": f"{report.r_speech:.2f}",
                        "random-flapping baseline (r at 0 / within speech)": f"{base_all:.2f} / {base_speech:.2f}",
                        "r vs renderer's own mouth_open": f"{r_own:.2f}",
                        "silent frames closed": f"{100 * report.closed:.0f}%",
                        "silent motion (std)": f"{report.silent_motion:.3f}",
                        "median silent opening": f"{np.nanmedian(silent_openings):.3f}",
                        "p90 speaking opening": f"{np.nanpercentile(report.openings[~report.silent], 90):.3f}",
                        "identity distance (max)": "—" if identity is None else f"{identity.max_distance:.2f}",
                        "no face": f"{100 * report.missing:.0f}%",
                        "face detail kept": f"{q.detail_kept(images[::5], avatar.image, detail_mask):.2f}",
                    }
                )
                if not sheet_done and mode.startswith("recorded"):
                    write_contact_sheet(frames, report, avatar.points)
                    sheet_done = True
                if mode.startswith("piper") and name.startswith("astronaut"):
                    write_viseme_sheet(frames, report, avatar.points, piper_chunks)
            heatmaps.append(q.change_heatmap(images[::3], avatar.image))
    columns = list(rows[0])
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    notes = (
        f"Recorded speech: {', '.join(p.name for p in SPEECH)} with 0.8 s of silence before, between and after "
        f"({len(pcm) / CANONICAL_SAMPLE_RATE:.1f} s), no visemes (the mouth follows the audio alone), either queued "
        "whole or fed in 40 ms chunks with a frame drawn after each (no look-ahead). Piper TTS: "
        f'"{PIPER_TEXT}" (en_US-joe-medium) fed chunk by chunk with its phoneme visemes, 0.8 s pauses around. '
        f"{FPS} FPS. "
        "Lip opening = inner-lip gap / mouth width, read by "
        "mediapipe's face mesh on each output frame independently. Loudness = RMS dBFS of each frame's own "
        "audio, floored 40 dB under the peak. Silent = 40 dB under the peak and ≥ 2 frames (80 ms) from any "
        f"sound. Closed = measured opening ≤ {CLOSED}. Identity: dlib ResNet embedding distance of the most open "
        "and evenly spaced output frames to the prepared still (same person < 0.6). Random-flapping baseline: "
        "the same measured openings shuffled among the sounding frames (median of 50). Face detail kept: "
        "Laplacian variance of the face (mouth and eyes left out) in every 5th frame over the photo's, median."
    )
    table = f"{header}\n" + "\n".join("| " + " | ".join(row.values()) + " |" for row in rows)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "avatar_quality.md").write_text(
        f"# Avatar lip-sync and identity quality\n\n{notes}\n\n{table}\n\n"
        "Contact sheets (lower face): contact_sheet.png across the first recorded sentence, every other frame "
        "(label: frame, measured opening, spk = sound / sil = scored silence / edge = quiet next to sound, dBFS); "
        "contact_sheet_visemes.png every frame of the piper sentence's start, labelled with the viseme due. "
        "Where pixels change across the clip (95th percentile, blue = never): avatar_change_heatmap.png.\n",
        encoding="utf-8",
    )
    height = max(h.shape[0] for h in heatmaps)
    scaled = [cv2.resize(h, (round(h.shape[1] * height / h.shape[0]), height)) for h in heatmaps]
    cv2.imwrite(str(RESULTS / "avatar_change_heatmap.png"), np.hstack(scaled))


def lower_face_crop(points: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = lm.FaceLandmarks(points).bbox
    return x - w // 4, y + h // 3, w + w // 2, h - h // 3 + h // 4


def write_viseme_sheet(
    frames: list, report: q.LipSyncReport, points: np.ndarray, chunks: list[SpeechChunk], pause_seconds: float = 0.8
) -> None:
    """Every frame of the first words of the piper sentence, labelled with the viseme due at that frame."""
    timeline, offset = [], pause_seconds
    for chunk in chunks:
        timeline += [(offset + v.start, offset + v.end, v.viseme.name) for v in chunk.visemes]
        offset += chunk.duration

    def due(i: int) -> str:
        t = (i + 0.5) / FPS
        return next((name for start, end, name in timeline if start <= t < end), "-")

    first = int(np.flatnonzero(~report.silent)[0])
    picks = list(range(max(0, first - 2), min(len(frames), first + 46)))
    labels = [f"{i} {due(i)} o={report.openings[i]:.2f}" for i in picks]
    sheet = q.contact_sheet([frames[i].image for i in picks], 8, labels, lower_face_crop(points), 180)
    cv2.imwrite(str(RESULTS / "contact_sheet_visemes.png"), sheet)


def write_contact_sheet(frames: list, report: q.LipSyncReport, points: np.ndarray) -> None:
    """Every other frame across the first sentence, cropped to the lower face."""
    sounding = np.flatnonzero(~report.silent)
    start = max(0, int(sounding[0]) - 6)
    picks = list(range(start, min(len(frames), start + 96), 2))
    crop = lower_face_crop(points)
    floor = report.envelope_db.max() - 40.0

    def state(i: int) -> str:
        """spk: sound in this frame; sil: counted as silence; edge: quiet but next to sound (not scored)."""
        return "spk" if report.envelope_db[i] > floor else "sil" if report.silent[i] else "edge"

    labels = [f"{i} o={report.openings[i]:.2f} {state(i)} {report.envelope_db[i]:.0f}dB" for i in picks]
    sheet = q.contact_sheet([frames[i].image for i in picks], cols=8, labels=labels, crop=crop, tile_width=180)
    cv2.imwrite(str(RESULTS / "contact_sheet.png"), sheet)


if __name__ == "__main__":
    main()
