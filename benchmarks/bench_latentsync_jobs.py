"""What a LatentSync job costs around the model run: speech, avatar, template video, lock, mux, bookkeeping.

LatentSync itself cannot run here (no GPU, no weights): the model run is `tests/latentsync_standin.py` with no
per-step delay, so its time (Python start-up, decoding, writing a video) is reported but is not LatentSync's.
The rest is our own code, measured as it runs for real: median of `REPEATS` jobs per reply length, avatar cached.

    .venv/bin/python benchmarks/bench_latentsync_jobs.py   # results in benchmarks/results/latentsync_jobs.md
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from latentsync_helpers import latentsync_section, make_checkout  # noqa: E402

from agent.jobs import JobStore, JobWorker  # noqa: E402
from agent.latentsync_job import JobSpec  # noqa: E402
from agent.script import paragraphs_from_text  # noqa: E402
from core.config import load_config  # noqa: E402
from streaming.recording import probe_durations  # noqa: E402

REPEATS = 3
REPLIES = {
    "short (1 sentence)": "Hello, I am your virtual presenter.",
    "paragraph (4 sentences)": (
        "The Nimbus weather station measures temperature, humidity and pressure every minute. "
        "It sends the readings to your phone over Wi-Fi. "
        "A solar panel keeps its battery charged through the winter. "
        "And when a storm is coming, it tells you an hour before the first drop falls."
    ),
}
STAGES = ("speech_s", "avatar_s", "template_s", "lock_wait_s", "model_s", "mux_s", "total_s")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-latentsync-"))
    checkout = make_checkout(work, mode="ok", step_s=0.0)
    cfg = load_config(
        overrides={
            "avatar": {"cache_dir": str(work / "avatars")},
            "latentsync": latentsync_section(checkout),
            "jobs": {"db": str(work / "jobs.sqlite"), "output_dir": str(work / "out")},
        },
        environ={},
    )
    store = JobStore(cfg.jobs.db)
    worker = JobWorker(store, cfg.jobs)
    avatar = ROOT / "assets" / "avatars" / "astronaut.png"
    lines = [
        f"# LatentSync job overhead (stand-in model run; medians of {REPEATS} jobs, avatar cached)",
        "",
        "| reply | length | " + " | ".join(s.removesuffix("_s") for s in STAGES) + " | around the model | wall |",
        "|---" * (len(STAGES) + 4) + "|",
    ]
    for name, text in REPLIES.items():
        rows: list[dict[str, float]] = []
        seconds = 0.0
        for _ in range(REPEATS + 1):  # the first run prepares the avatar (cold cache) and is not counted
            spec = JobSpec.build(cfg, avatar, paragraphs=paragraphs_from_text(text), seed=1)
            job = store.submit(spec, worker.output_for(f"{len(rows)}"), "bench", owner=worker.owner)
            started = time.monotonic()
            done = worker.run(job)
            assert done.status == "done" and done.engine == "latentsync", done.error
            timings = dict(done.timings, wall_s=time.monotonic() - started)
            timings["around_s"] = timings["total_s"] - timings["model_s"] - timings["lock_wait_s"]
            rows.append(timings)
            seconds = probe_durations(done.output)[1]
        rows = rows[1:]
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        cells = " | ".join(f"{med[s]:.2f} s" for s in STAGES)
        lines.append(f"| {name} | {seconds:.1f} s | {cells} | {med['around_s']:.2f} s | {med['wall_s']:.2f} s |")
    out = ROOT / "benchmarks" / "results" / "latentsync_jobs.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
