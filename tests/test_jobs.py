"""The recorded-reply queue: SQLite records, the worker, cancellation, restarts, and the CLI as real processes.

Contract tests: LatentSync itself is `latentsync_standin.py` (no GPU or weights here), started exactly as the
real one would be. The CLI, the database, process groups and signals are all real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from latentsync_helpers import alive, group_gone, latentsync_section, make_checkout, recorded_pids, set_mode, wait_for

from agent.jobs import JobStore, JobWorker
from agent.latentsync_job import JobSpec
from core.config import JobsConfig, load_config
from streaming.recording import probe_durations

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def avatar_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("avatars")


@pytest.fixture
def setup(tmp_path: Path, avatar_cache: Path) -> dict[str, Path]:
    pids = tmp_path / "pids.jsonl"
    checkout = make_checkout(tmp_path, mode="ok", step_s=0.002, pids=str(pids))
    return {
        "root": tmp_path,
        "checkout": checkout,
        "pids": pids,
        "db": tmp_path / "data" / "jobs.sqlite",
        "cache": avatar_cache,
    }


def env_for(s: dict[str, Path]) -> dict[str, str]:
    return dict(
        os.environ,
        DH_JOBS__DB=str(s["db"]),
        DH_JOBS__OUTPUT_DIR=str(s["root"] / "recordings"),
        DH_LATENTSYNC__CHECKOUT=str(s["checkout"]),
        DH_LATENTSYNC__PYTHON=sys.executable,
        DH_AVATAR__CACHE_DIR=str(s["cache"]),
        DH_TTS__ENGINE="espeak",
    )


def cli(s: dict[str, Path], *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *argv],
        env=env_for(s),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def start_cli(s: dict[str, Path], *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", *argv],
        env=env_for(s),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def start_hanging_render(
    s: dict[str, Path], astronaut: Path, speech_wav: Path, what: str
) -> tuple[subprocess.Popen[str], Path]:
    """`render --engine latentsync` as a process, once the stand-in LatentSync (which hangs) and its child run."""
    set_mode(s["checkout"], mode="hang", pids=str(s["pids"]))
    out = s["root"] / "reply.mp4"
    render = start_cli(
        s, "render", "--engine", "latentsync", "--avatar", str(astronaut), "--audio", str(speech_wav), "-o", str(out)
    )
    wait_for(lambda: len(recorded_pids(s["pids"])) == 2, what=what)
    return render, out


def spec(s: dict[str, Path], speech_wav: Path, astronaut: Path) -> JobSpec:
    cfg = load_config(
        overrides={"avatar": {"cache_dir": str(s["cache"])}, "latentsync": latentsync_section(s["checkout"])},
        environ={},
    )
    return JobSpec.build(cfg, astronaut, audio=str(speech_wav))


def only_job(s: dict[str, Path]):
    jobs = JobStore(s["db"]).list()
    assert len(jobs) == 1
    return jobs[0]


def test_render_with_latentsync_is_a_job_listed_and_shown(setup, astronaut):
    out = setup["root"] / "reply.mp4"
    done = cli(
        setup, "render", "--engine", "latentsync", "--avatar", str(astronaut), "--text", "Hello there.", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out} (latentsync; speech ")
    job = only_job(setup)
    assert f"note: job {job.id}" in done.stderr
    vdur, adur = probe_durations(out)
    assert abs(vdur - adur) <= 1 / 25 and adur > 1.0
    assert group_gone(recorded_pids(setup["pids"]))

    listed = cli(setup, "jobs", "list")
    assert listed.returncode == 0 and f"{job.id}  done       100%" in listed.stdout and str(out) in listed.stdout
    shown = cli(setup, "jobs", "show", job.id)
    assert "status:    done" in shown.stdout and "engine:    latentsync" in shown.stdout
    assert "says:      Hello there." in shown.stdout and "of it around the model" in shown.stdout
    log = setup["db"].parent / "logs" / f"{job.id}.log"
    assert f"log:       {log} (LatentSync's output)" in shown.stdout
    assert "Output video saved to" in log.read_text()

    again = cli(setup, "jobs", "cancel", job.id)
    assert again.returncode == 2 and again.stderr == f"error: job {job.id} has already ended (done)\n"
    missing = cli(setup, "jobs", "show", "nope")
    assert missing.returncode == 2 and missing.stderr == "error: no job 'nope' (see `digital-human jobs list`)\n"


def test_missing_latentsync_gives_one_line_and_the_cpu_video(setup, astronaut, speech_wav):
    out = setup["root"] / "reply.mp4"
    env = {"DH_LATENTSYNC__CHECKOUT": str(setup["root"] / "nowhere")}
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "render", "--engine", "latentsync", "--avatar", str(astronaut), "--audio",
         str(speech_wav), "-o", str(out)],
        env=env_for(setup) | env, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if not line.startswith("note: job ")]
    assert notes == [
        f"note: {setup['root'] / 'nowhere'} is not a LatentSync checkout (no scripts/inference.py); "
        "this video was drawn by the CPU renderer instead (latentsync.fallback)"
    ]
    assert done.stdout.startswith(f"wrote {out} (realtime;")
    assert out.is_file()


def test_jobs_cancel_from_another_process_kills_the_whole_group(setup, astronaut, speech_wav):
    render, out = start_hanging_render(setup, astronaut, speech_wav, "LatentSync and its child to start")
    job = only_job(setup)
    assert job.status == "running" and job.pgid == recorded_pids(setup["pids"])[0]

    cancelled = cli(setup, "jobs", "cancel", job.id)
    assert cancelled.returncode == 0 and cancelled.stdout == f"cancelled job {job.id}\n"
    _, err = render.communicate(timeout=120)
    assert render.returncode == 2 and err.splitlines()[-1] == f"error: job {job.id} was cancelled"
    assert group_gone(recorded_pids(setup["pids"]))
    assert not out.exists() and only_job(setup).status == "cancelled"


@pytest.mark.parametrize(
    ("sig", "status", "last"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_ctrl_c_or_sigterm_cancels_the_job_and_kills_latentsync(setup, astronaut, speech_wav, sig, status, last):
    render, out = start_hanging_render(setup, astronaut, speech_wav, "LatentSync to start")
    render.send_signal(sig)
    _, err = render.communicate(timeout=120)
    assert render.returncode == status and err.splitlines()[-1] == last
    assert group_gone(recorded_pids(setup["pids"]))
    assert only_job(setup).status == "cancelled" and not out.exists()


def test_a_job_whose_process_died_is_resumed_and_its_leftover_latentsync_killed(setup, astronaut, speech_wav):
    """SIGKILL leaves no chance to clean up: LatentSync (its own session) outlives the command. The next worker
    (`jobs run`, as a server start would) kills that group and runs the job again."""
    render, out = start_hanging_render(setup, astronaut, speech_wav, "LatentSync to start")
    leftovers = recorded_pids(setup["pids"])
    render.kill()
    render.communicate(timeout=60)
    assert all(alive(pid) for pid in leftovers)  # orphaned, still holding the GPU

    set_mode(setup["checkout"], mode="ok", pids=str(setup["pids"]))
    resumed = cli(setup, "jobs", "run")
    job = only_job(setup)
    assert resumed.returncode == 0 and resumed.stdout == f"{job.id} done: {out}\n"
    assert not any(alive(pid) for pid in leftovers)
    assert job.attempts == 2 and job.engine == "latentsync"
    assert job.notices == ["resumed: the process running it had stopped"]
    assert out.is_file()


def test_a_job_that_kills_its_worker_twice_is_marked_failed(setup, astronaut, speech_wav):
    store = JobStore(setup["db"])
    job = store.submit(spec(setup, speech_wav, astronaut), setup["root"] / "r.mp4", "test", owner="999999999:1")
    store._update(job.id, attempts=2)
    assert store.recover() == [(job.id, "failed")]
    failed = store.require(job.id)
    assert failed.status == "failed" and failed.error == "its worker stopped 2 times while running it"


def test_a_queued_job_is_cancelled_at_once_and_never_runs(setup, astronaut, speech_wav):
    store = JobStore(setup["db"])
    job = store.submit(spec(setup, speech_wav, astronaut), setup["root"] / "r.mp4", "test")
    done = cli(setup, "jobs", "cancel", job.id)
    assert done.stdout == f"cancelled job {job.id}\n"
    assert JobWorker(store, JobsConfig(db=setup["db"])).run_pending() == []
    assert not recorded_pids(setup["pids"])


def test_claims_are_atomic_across_workers(setup, astronaut, speech_wav):
    stores = [JobStore(setup["db"]) for _ in range(4)]
    ids = {stores[0].submit(spec(setup, speech_wav, astronaut), setup["root"] / "r.mp4", "test").id for _ in range(12)}
    claimed: list[str] = []

    def claim_all(store: JobStore, owner: str) -> None:
        while (job := store.claim(owner)) is not None:
            claimed.append(job.id)

    threads = [threading.Thread(target=claim_all, args=(s, f"{i}:0")) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)


def test_a_server_worker_runs_queued_jobs_and_requeues_the_running_one_when_stopped(setup, astronaut, speech_wav):
    store = JobStore(setup["db"])
    worker = JobWorker(store, JobsConfig(db=setup["db"], output_dir=setup["root"] / "recordings"))
    worker.start()
    first = store.submit(spec(setup, speech_wav, astronaut), worker.output_for("a"), "test")
    wait_for(lambda: store.require(first.id).status == "done", 300, "the first job")
    assert probe_durations(store.require(first.id).output)[1] > 1.0

    set_mode(setup["checkout"], mode="hang", pids=str(setup["pids"]))
    second = store.submit(spec(setup, speech_wav, astronaut), worker.output_for("b"), "test")
    wait_for(lambda: len(recorded_pids(setup["pids"])) == 3, what="the hanging run")
    worker.stop()
    wait_for(lambda: store.require(second.id).status == "queued", what="the job to be queued again")
    assert store.require(second.id).notices == ["resumed: the server was stopped while it ran"]
    wait_for(lambda: group_gone(recorded_pids(setup["pids"])[1:]), what="LatentSync's group to be gone")


def test_cancelling_a_job_whose_worker_died_needs_no_worker(setup, astronaut, speech_wav):
    store = JobStore(setup["db"])
    job = store.submit(spec(setup, speech_wav, astronaut), setup["root"] / "r.mp4", "test", owner="999999999:1")
    done = cli(setup, "jobs", "cancel", job.id)
    assert done.returncode == 0 and done.stdout == f"cancelled job {job.id}\n"
    assert store.require(job.id).status == "cancelled"
