"""Avatar preparation time by photo size: the bundled 512×512 astronaut, an 864×1080 portrait and an
8000×6000 photo (both made from matplotlib's Grace Hopper photo), cold (empty cache), median over repeats.

Each figure is measured two ways: `prepare_avatar` in a process whose models are already loaded
(wall-clock and CPU seconds; CPU time is what a quiet machine's wall-clock time comes close to,
because this machine's two cores are shared and a loaded run waits for its turn), and the whole
`digital-human prepare` command as a user runs it (interpreter start, imports, models and cache write).

    .venv/bin/python benchmarks/bench_prepare.py [--before CODE_ROOT]

--before also times another checkout of the project (e.g. `git worktree add /tmp/old <commit>`) in
the same session, alternating with this one run by run so both see the same load, and checks that
both prepare the same avatar bit for bit. Writes benchmarks/results/prepare.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
REPEATS = 3
PHOTOS = {
    "astronaut 512×512 (bundled)": "astronaut.png",
    "portrait 864×1080 (Grace Hopper, upscaled)": "portrait_864x1080.jpg",
    "photo 8000×6000 (same portrait, upscaled and padded)": "photo_8000x6000.jpg",
}


def make_photos(folder: Path) -> None:
    import cv2
    import matplotlib

    grace = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))  # 512×600
    portrait = cv2.resize(grace, (922, 1080), interpolation=cv2.INTER_CUBIC)[:, 29 : 29 + 864]
    big = cv2.resize(grace, (5120, 6000), interpolation=cv2.INTER_CUBIC)
    big = cv2.copyMakeBorder(big, 0, 0, 1440, 1440, cv2.BORDER_REFLECT)
    cv2.imwrite(str(folder / "portrait_864x1080.jpg"), portrait, [cv2.IMWRITE_JPEG_QUALITY, 92])
    cv2.imwrite(str(folder / "photo_8000x6000.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
    (folder / "astronaut.png").write_bytes((ROOT / "assets" / "avatars" / "astronaut.png").read_bytes())


def measure(code_root: Path, folder: Path, run: int) -> None:
    """Worker (run in a fresh process per checkout): prepare every photo once with `code_root`'s code and
    print one JSON line per photo."""
    sys.path.insert(0, str(code_root))
    import cv2

    from avatar import landmarks as lm
    from avatar.prepare import prepare_avatar

    lm.detect_faces(cv2.imread(str(folder / "astronaut.png")))  # models loaded before the clock starts
    for label, name in PHOTOS.items():
        cache = folder / f"cache-{code_root.name}-{run}-{name}"
        wall, cpu = time.perf_counter(), time.process_time()
        avatar, _ = prepare_avatar(folder / name, cache)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        cached = time.perf_counter()
        again, _ = prepare_avatar(folder / name, cache)
        cached = time.perf_counter() - cached
        assert again.from_cache
        digest = hashlib.sha256()
        for array in (avatar.image, avatar.mouth_bank, avatar.eye_bank, avatar.head_weight, avatar.mouth_mask):
            digest.update(array.tobytes())
        banks = avatar.mouth_bank.shape
        print(json.dumps({
            "photo": label, "wall": wall, "cpu": cpu, "cached": cached, "digest": digest.hexdigest(),
            "output": f"{avatar.size[0]}×{avatar.size[1]}", "iod": avatar.iod,
            "shapes": f"{banks[0]}×{banks[1]} of {banks[3]}×{banks[2]} px",
        }), flush=True)  # fmt: skip


def run_worker(code_root: Path, folder: Path, run: int) -> list[dict]:
    done = subprocess.run(
        [sys.executable, __file__, "--measure", str(code_root), str(folder), str(run)],
        check=True,
        capture_output=True,
        text=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def time_cli(code_root: Path, photo: Path, cache: Path) -> float:
    """Seconds for `digital-human prepare` of `photo` with `code_root`'s code and an empty cache."""
    env = {**os.environ, "DH_AVATAR__CACHE_DIR": str(cache)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "agent.cli", "prepare", "--avatar", str(photo)],
        cwd=code_root,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout of the project to time alongside this one")
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(Path(args.measure[0]).resolve(), Path(args.measure[1]), int(args.measure[2]))
        return
    codes = {"now": ROOT}
    if args.before:
        codes["before"] = args.before.resolve()
    runs: dict[str, list[dict]] = {key: [] for key in codes}
    cli: dict[tuple[str, str], list[float]] = {}
    loads = [load_average()]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_photos(folder)
        for run in range(REPEATS):
            for key, code in codes.items():
                runs[key] += run_worker(code, folder, run)
                for label, name in PHOTOS.items():
                    cache = folder / f"cli-{key}-{run}-{name}"
                    cli.setdefault((key, label), []).append(time_cli(code, folder / name, cache))
                print(f"run {run + 1}/{REPEATS} {key}: {runs[key][-len(PHOTOS) :]}", flush=True)
            loads.append(load_average())
    write_report(codes, runs, cli, loads)


def spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def write_report(
    codes: dict[str, Path], runs: dict[str, list[dict]], cli: dict[tuple[str, str], list[float]], loads: list[str]
) -> None:
    before = "before" in codes
    lines = [
        "# Avatar preparation time",
        "",
        f"Cold cache, median (min–max) of {REPEATS} runs, seconds. `prepare_avatar` is timed in a process whose"
        " models are already loaded: wall-clock and CPU time (all threads; on a quiet machine wall-clock comes"
        " close to it). `digital-human prepare` is the whole command a user runs (interpreter start, imports,"
        " model loading, preparation, cache write). Cached = the second `prepare_avatar` of the same photo."
        f" Machine: 2 cores shared with other jobs (load average {', '.join(loads)} during the runs), so the"
        " wall-clock figures are noisy; CPU time much less so.",
        "",
    ]
    if before:
        commit = subprocess.run(
            ["git", "-C", str(codes["before"]), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        lines += [
            f"Before = commit {commit or '?'} at {codes['before']} (same photos, runs alternating with this one).",
            "",
        ]
    head = "| photo | output | eye distance | mouth shapes | `prepare_avatar` wall | CPU | cached |"
    head += " `digital-human prepare` |"
    rule = "|---|---|---|---|---|---|---|---|"
    if before:
        head += " before: wall | CPU | `digital-human prepare` | same output |"
        rule += "---|---|---|---|"
    lines += [head, rule]
    for label in PHOTOS:
        now = [r for r in runs["now"] if r["photo"] == label]
        row = (
            f"| {label} | {now[0]['output']} | {now[0]['iod']:.0f} px | {now[0]['shapes']} |"
            f" {spread([r['wall'] for r in now])} | {spread([r['cpu'] for r in now])} |"
            f" {statistics.median(r['cached'] for r in now):.2f} | {spread(cli[('now', label)])} |"
        )
        if before:
            old = [r for r in runs["before"] if r["photo"] == label]
            same = {r["digest"] for r in old} == {r["digest"] for r in now} and len({r["digest"] for r in now}) == 1
            row += (
                f" {spread([r['wall'] for r in old])} | {spread([r['cpu'] for r in old])} |"
                f" {spread(cli[('before', label)])} | {'bit for bit' if same else 'NO'} |"
            )
        lines.append(row)
    lines.append("")
    text = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "prepare.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
