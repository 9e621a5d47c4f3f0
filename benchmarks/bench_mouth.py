"""Mouth shapes on the renderer's output: width between rounded and spread vowels, smile, lip-sync, identity.

The same measurement runs twice, each in its own process: once on this tree's renderer and once on
git main's (extracted with `git archive` into a temporary folder and put first on the path), so the
baseline is the renderer as it is, not a re-implementation of it. Every number is read off the output
frames by mediapipe's face mesh (each frame on its own), never taken from the renderer's own state.
Writes benchmarks/results/mouth.md and zoomed mouth crops (mouth_*.png) to look at.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from bench_avatar_quality import piper_speech

from avatar import landmarks as lm
from avatar import quality as q
from avatar.lipsync import MouthState
from avatar.mouth_bank import mouth_patch
from avatar.prepare import prepare_avatar
from avatar.realtime import RealtimeRenderer
from core.audio import read_audio_file
from core.events import CANONICAL_SAMPLE_RATE, SpeechChunk, Viseme

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PORTRAITS_DIR = ROOT / "tests" / "data" / "images" / "portraits"
PORTRAITS = {
    "astronaut (smiling, teeth)": ROOT / "assets" / "avatars" / "astronaut.png",
    "grace hopper (older, closed)": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
    "biden (older, closed)": PORTRAITS_DIR / "biden.jpg",
    "obama (smiling, teeth)": PORTRAITS_DIR / "obama-smiling.jpg",
    "obama (speaking, open)": PORTRAITS_DIR / "obama-speaking.jpg",
}
SPEECH = sorted((ROOT / "tests" / "data" / "audio").glob("*/*.wav"))
FPS = 25
SECONDS = 30.0
SIZE = (512, 512)
PIPER_TEXT = (
    "Good morning! Today we will look at the moon, and you will see how the blue light moves through the room. "
    "Please keep your eyes on the screen. Who knew it would be so easy to choose? We feel the breeze near the sea, "
    "and soon the cool wind blows over the pool."
)
ROUNDED = {Viseme.OH, Viseme.OU}
SPREAD = {Viseme.E, Viseme.IH}
LEAD = 0.04
"""Visemes label the frame whose centre is this far before them: the renderer shapes the lips that early."""
CLOSED = 0.06


def recorded_speech(seconds: float = SECONDS, pause: float = 0.6) -> np.ndarray:
    """The English and Chinese test recordings with pauses between them, repeated to `seconds`."""
    gap = np.zeros(int(pause * CANONICAL_SAMPLE_RATE), np.int16)
    clips = [read_audio_file(p, CANONICAL_SAMPLE_RATE) for p in SPEECH]
    parts, total = [gap], len(gap)
    while total < seconds * CANONICAL_SAMPLE_RATE:
        for clip in clips:
            parts += [clip, gap]
            total += len(clip) + len(gap)
    return np.concatenate(parts)


def vowel_colour(pcm: np.ndarray) -> np.ndarray:
    """Per frame, dB of 1-3 kHz over 200-1000 Hz energy: high for spread front vowels (high F2, 'ee'), low for
    rounded back ones ('oo'); NaN off voiced speech. Independent of the renderer's own audio features."""
    spf = CANONICAL_SAMPLE_RATE // FPS
    frames = len(pcm) // spf
    x = pcm[: frames * spf].astype(np.float64).reshape(frames, spf) / 32768.0
    spectrum = np.abs(np.fft.rfft(x * np.hanning(spf), axis=1)) ** 2
    freqs = np.fft.rfftfreq(spf, 1.0 / CANONICAL_SAMPLE_RATE)
    low = spectrum[:, (freqs >= 200) & (freqs < 1000)].sum(axis=1) + 1e-12
    mid = spectrum[:, (freqs >= 1000) & (freqs < 3000)].sum(axis=1) + 1e-12
    hiss = spectrum[:, freqs >= 4000].sum(axis=1) + 1e-12
    level = 10 * np.log10(spectrum.sum(axis=1) + 1e-12)
    voiced = (level > level.max() - 25.0) & (hiss < 0.5 * (low + mid))
    return np.where(voiced, 10 * np.log10(mid / low), np.nan)


def piper_labels(chunks: list[SpeechChunk], frames: int, pause: float) -> list[Viseme | None]:
    timeline, offset = [], pause
    for chunk in chunks:
        timeline += [(offset + v.start, offset + v.end, Viseme(v.viseme)) for v in chunk.visemes]
        offset += chunk.duration
    labels: list[Viseme | None] = []
    for i in range(frames):
        t = (i + 0.5) / FPS + LEAD
        labels.append(next((v for start, end, v in timeline if start <= t < end), None))
    return labels


def shape_series(images: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per frame: mouth width, corner lift and lip opening, in eye distances / mouth widths; NaN without a face."""
    mesh = lm.static_face_mesh(1)
    out = {k: np.full(len(images), np.nan) for k in ("width", "lift", "opening")}
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        faces = lm.faces_from_result(lm.process_quietly(mesh, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)), 0, 0, w, h)
        if not faces:
            continue
        xy = faces[0].xy.astype(np.float64)
        right, left = xy[lm.RIGHT_EYE].mean(axis=0), xy[lm.LEFT_EYE].mean(axis=0)
        iod = float(np.linalg.norm(left - right))
        ex = (left - right) / iod
        ey = np.array([-ex[1], ex[0]])
        corners = xy[lm.MOUTH_CORNERS]
        centre = xy[[13, 14]].mean(axis=0)
        out["width"][i] = float(np.linalg.norm(corners[1] - corners[0])) / iod
        out["lift"][i] = float((centre - corners.mean(axis=0)) @ ey) / iod
        out["opening"][i] = lm.mouth_opening(faces[0])
    return out


def still_with(avatar: object, smile: float) -> np.ndarray:
    """The prepared still with the closed mouth at expression weight `smile`."""
    image = avatar.image.copy()
    x0, y0, x1, y1 = avatar.mouth_rect
    image[y0:y1, x0:x1] = mouth_patch(avatar, MouthState(0.0, 0.0, 0.0, False), smile=smile)
    return image


def frames_per_second(avatar: object, pcm: np.ndarray, runs: int = 5, frames: int = 250) -> float:
    """Median single-thread frames per second of `render_next` over speech (the mouth blends while talking)."""
    spf = CANONICAL_SAMPLE_RATE // FPS
    rates = []
    for _ in range(runs):
        renderer = RealtimeRenderer(avatar, fps=FPS, seed=1)
        renderer.feed(pcm[: frames * spf])
        start = time.perf_counter()
        for _ in range(frames):
            renderer.render_next()
        rates.append(frames / (time.perf_counter() - start))
    return float(np.median(rates))


def measure(out_path: Path, crops_prefix: str | None) -> None:
    """Measure the renderer importable from this process (this tree's or main's) and write JSON."""
    cv2.setNumThreads(1)
    pcm = recorded_speech()
    colour = vowel_colour(pcm)
    pause = 0.8
    chunks = piper_speech(PIPER_TEXT)
    embedder = q.FaceEmbedder()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in PORTRAITS.items():
            avatar, _ = prepare_avatar(path, Path(tmp), output_size=SIZE)
            still = shape_series([avatar.image])
            smiles = shape_series([still_with(avatar, s) for s in (-1.0, 0.0, 1.0)])
            row = {
                "portrait": name,
                "still_width": float(still["width"][0]),
                "lift_by_smile": smiles["lift"].tolist(),
                "width_by_smile": smiles["width"].tolist(),
                "bank_mb": sum(
                    getattr(avatar, name).nbytes
                    for name in ("mouth_bank", "smile_bank", "tongue_bank", "tongue_alpha")
                    if hasattr(avatar, name)
                )
                / 1e6,
                "fps": frames_per_second(avatar, pcm),
            }
            for mode in ("recorded", "piper"):
                renderer = RealtimeRenderer(avatar, fps=FPS, seed=1)
                if mode == "recorded":
                    frames = q.render_speech(renderer, pcm, chunk_samples=960, tail_frames=FPS)
                    labels_colour = np.concatenate([colour, np.full(len(frames) - len(colour), np.nan)])
                    finite = np.isfinite(labels_colour)
                    lo, hi = np.nanpercentile(labels_colour, [25, 75])
                    rounded = finite & (labels_colour <= lo)
                    spread = finite & (labels_colour >= hi)
                else:
                    silence = np.zeros(int(pause * CANONICAL_SAMPLE_RATE), np.int16)
                    renderer.feed(silence)
                    for chunk in chunks:
                        renderer.feed(chunk.pcm, chunk.visemes)
                    renderer.feed(silence)
                    frames = []
                    while renderer.queued_samples > 0:
                        frames.append(renderer.render_next())
                    labels = piper_labels(chunks, len(frames), pause)
                    rounded = np.array([v in ROUNDED for v in labels])
                    spread = np.array([v in SPREAD for v in labels])
                images = [f.image for f in frames]
                series = shape_series(images)
                sync = q.measure_lip_sync(frames, FPS, CANONICAL_SAMPLE_RATE, CLOSED)
                speaking = ~sync.silent
                widths = series["width"]
                picks = sorted(set(np.argsort(np.nan_to_num(sync.openings, nan=-1))[-4:].tolist()))
                picks += np.linspace(0, len(frames) - 1, 4).astype(int).tolist()
                identity = embedder.compare(avatar.image, [images[i] for i in picks])
                row[mode] = {
                    "frames": len(frames),
                    "rounded_n": int(rounded.sum()),
                    "spread_n": int(spread.sum()),
                    "width_rounded": float(np.nanmedian(widths[rounded])),
                    "width_spread": float(np.nanmedian(widths[spread])),
                    "width_p10": float(np.nanpercentile(widths[speaking], 10)),
                    "width_p90": float(np.nanpercentile(widths[speaking], 90)),
                    "lift_speaking": float(np.nanmedian(series["lift"][speaking])),
                    "lift_silent": float(np.nanmedian(series["lift"][sync.silent])),
                    "r_zero": sync.r_zero,
                    "lag": sync.lag,
                    "closed": sync.closed,
                    "identity": identity.max_distance,
                }
                if crops_prefix and mode == "piper":
                    write_crops(RESULTS / f"{crops_prefix}_{slug(name)}.png", frames, labels, avatar)
            results.append(row)
    out_path.write_text(json.dumps(results, indent=1), encoding="utf-8")


def slug(name: str) -> str:
    """ "obama (smiling, teeth)" -> "obama_smiling"."""
    person, _, what = name.partition(" (")
    return f"{person}_{what.split(',')[0].rstrip(')')}".replace(" ", "_")


def write_crops(path: Path, frames: list, labels: list[Viseme | None], avatar: object) -> None:
    """Zoomed mouths: the widest-open, the most rounded and spread frames, a tongue sound and a closure."""
    wanted = [Viseme.AA, Viseme.OU, Viseme.OH, Viseme.E, Viseme.IH, Viseme.NN, Viseme.TH, Viseme.PP]
    picks, captions = [], []
    for viseme in wanted:
        hits = [i for i, v in enumerate(labels) if v == viseme]
        if hits:
            best = max(hits, key=lambda i: frames[i].mouth_open) if viseme != Viseme.PP else hits[len(hits) // 2]
            picks.append(best)
            captions.append(f"{best} {viseme.name}")
    x, y, w, h = lm.FaceLandmarks(avatar.points).bbox
    crop = (x + w // 6, y + h // 2, w - w // 3, h // 2)
    sheet = q.contact_sheet([frames[i].image for i in picks], cols=4, labels=captions, crop=crop, tile_width=300)
    cv2.imwrite(str(path), sheet)


def run_variant(root: Path, out: Path, crops_prefix: str | None) -> None:
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{ROOT}")
    command = [sys.executable, str(Path(__file__)), "--measure", str(out)]
    if crops_prefix:
        command += ["--crops", crops_prefix]
    subprocess.run(command, check=True, env=env, cwd=root)


def report(branch: list[dict], main: list[dict]) -> str:
    lines = [
        "| portrait | speech | renderer | rounded / spread frames | width rounded | width spread | spread − rounded "
        "(% of still width) | width p10–p90 while speaking (% of still) | r at lag 0 | lag | silent closed | "
        "identity (max) |",
        "|" + "---|" * 12,
    ]
    for mine, base in zip(branch, main, strict=True):
        for mode, label in (("recorded", f"recorded, {SECONDS:.0f} s"), ("piper", "piper with visemes")):
            for who, row in (("main", base), ("this branch", mine)):
                m = row[mode]
                still = row["still_width"]
                lines.append(
                    f"| {row['portrait']} | {label} | {who} | {m['rounded_n']} / {m['spread_n']} | "
                    f"{m['width_rounded']:.3f} | {m['width_spread']:.3f} | "
                    f"{100 * (m['width_spread'] - m['width_rounded']) / still:+.1f}% | "
                    f"{100 * (m['width_p90'] - m['width_p10']) / still:.1f}% | {m['r_zero']:.2f} | {m['lag']:+d} | "
                    f"{100 * m['closed']:.0f}% | {m['identity']:.2f} |"
                )
    lines += [
        "",
        "Smile (closed mouth drawn from the bank at expression weight −1 / 0 / +1; corner lift = how far the mouth "
        "corners sit above the lip centre, in eye distances; positive is a smile) and the lift while speaking "
        "against in silence (a smiling photo's smile relaxes while it talks):",
        "",
        "| portrait | renderer | lift at −1 / 0 / +1 | width at −1 / 0 / +1 | lift silent → speaking (recorded) | "
        "mouth banks MB | frames/s (1 thread) |",
        "|---|---|---|---|---|---|---|",
    ]
    for mine, base in zip(branch, main, strict=True):
        for who, row in (("main", base), ("this branch", mine)):
            lift = " / ".join(f"{v:+.3f}" for v in row["lift_by_smile"])
            width = " / ".join(f"{v:.3f}" for v in row["width_by_smile"])
            rec = row["recorded"]
            lines.append(
                f"| {row['portrait']} | {who} | {lift} | {width} | "
                f"{rec['lift_silent']:+.3f} → {rec['lift_speaking']:+.3f} | {row['bank_mb']:.1f} | {row['fps']:.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--crops", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", default="main", help="git revision to compare with (default: main)")
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.crops)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        base_root = Path(tmp) / "baseline"
        base_root.mkdir()
        archive = subprocess.run(["git", "archive", args.baseline], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "x", "-C", str(base_root)], input=archive.stdout, check=True)
        run_variant(base_root, Path(tmp) / "main.json", "mouth_main")
        run_variant(ROOT, Path(tmp) / "branch.json", "mouth")
        main_rows = json.loads((Path(tmp) / "main.json").read_text())
        branch_rows = json.loads((Path(tmp) / "branch.json").read_text())
    notes = (
        f"# Mouth shapes\n\n{SIZE[0]}×{SIZE[1]}, {FPS} FPS. Recorded speech: the English and Chinese test recordings "
        f"({', '.join(p.name for p in SPEECH)}), 0.6 s pauses, repeated to {SECONDS:.0f} s, fed in 40 ms chunks "
        "without visemes; its frames are labelled rounded / spread by the benchmark's own vowel colour (dB of "
        "1-3 kHz over 0.2-1 kHz energy on voiced frames: lowest / highest quarter), not by the renderer. Piper: "
        f'"{PIPER_TEXT}" with its phoneme visemes; rounded = OH, OU and spread = E, IH due at the frame '
        f"({LEAD * 1000:.0f} ms ahead, as the renderer reads them). Width = outer mouth corners' distance over the "
        "eye distance, read by mediapipe on every output frame; medians. main = git main's renderer, run by this "
        "same script from a `git archive` of main. Identity: dlib distance of 8 frames (most open and evenly "
        "spaced) to the prepared still.\n\n"
    )
    text = (
        notes
        + report(branch_rows, main_rows)
        + (
            "\n\nZoomed mouths on piper speech (the most open frame of each viseme): mouth_<portrait>.png for this "
            "branch, mouth_main_<portrait>.png for main.\n"
        )
    )
    print(text)
    (RESULTS / "mouth.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
