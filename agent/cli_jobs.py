"""`digital-human render --engine latentsync` and `digital-human jobs [list|show|cancel|run]`.

A LatentSync render is a job in the persistent queue, run by the command itself at once (so it shows in
`jobs list`, can be cancelled from another terminal, and a server sharing the checkout waits its turn).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import Config
from core.errors import UserError

if TYPE_CHECKING:
    from agent.jobs import Job, JobStore, JobWorker

CANCEL_WAIT_S = 30.0
"""`jobs cancel` waits this long for a running job's worker to confirm (it polls every 0.5 s)."""


def add_jobs_command(sub: Any) -> None:
    j = sub.add_parser("jobs", help="recorded-reply jobs (LatentSync): list, show, cancel, or run the queued ones")
    actions = j.add_subparsers(dest="action", metavar="ACTION")
    ls = actions.add_parser("list", help="the latest jobs, newest first")
    ls.add_argument("-n", type=int, default=20, help="how many (default 20)")
    for name, text in (("show", "everything about one job"), ("cancel", "cancel a queued or running job")):
        actions.add_parser(name, help=text).add_argument("id", help="job id (from `jobs list`)")
    actions.add_parser("run", help="run the queued jobs here (resuming interrupted ones) and exit when none is left")


def render_latentsync(cfg: Config, avatar: Path, out: Path, seed: int | None, **what: Any) -> None:
    """Queue the render, run it in this process, follow its progress; Ctrl-C cancels it (and kills LatentSync)."""
    from agent.jobs import JobStore, JobWorker
    from agent.latentsync_job import JobSpec
    from agent.progress import fraction_bar

    store = JobStore(cfg.jobs.db)
    worker = JobWorker(store, cfg.jobs)
    spec = JobSpec.build(cfg, avatar, seed=seed, **what)
    job = store.submit(spec, out.resolve(), origin="cli", owner=worker.owner)
    print(f"note: job {job.id} (see `digital-human jobs show {job.id}`)", file=sys.stderr)
    # Waiting on an Event, not Thread.join: Python 3.11's join, interrupted by Ctrl-C, marks a running thread
    # as finished, and the process would exit under the worker before LatentSync is killed.
    finished = threading.Event()
    runner = threading.Thread(target=_run_then_set, args=(worker, job, finished), name=f"job {job.id}")
    runner.start()
    try:
        with fraction_bar("rendering with LatentSync") as step:
            while not finished.wait(0.25):
                step(store.require(job.id).progress)
    except KeyboardInterrupt:
        worker.cancel(job.id)
        finished.wait()
        raise
    final = store.require(job.id)
    for notice in final.notices:
        print(f"note: {notice}", file=sys.stderr)
    if final.status == "cancelled":
        raise UserError(f"job {job.id} was cancelled")
    if final.status != "done":
        raise UserError(final.error or f"job {job.id} {final.status}")
    print(f"wrote {final.output} ({final.engine}; {_timings(final)})")


def _run_then_set(worker: JobWorker, job: Job, finished: threading.Event) -> None:
    try:
        worker.run(job)
    finally:
        finished.set()


def cmd_jobs(cfg: Config, args: argparse.Namespace) -> None:
    from agent.jobs import JobStore, JobWorker, log_path

    store = JobStore(cfg.jobs.db)
    action = args.action or "list"
    if action == "list":
        _list(store.list(max(1, args.n) if args.action else 20))
    elif action == "show":
        _show(store.require(args.id), log_path(store, args.id))
    elif action == "cancel":
        _cancel(store, args.id)
    else:
        finished = JobWorker(store, cfg.jobs).run_pending()
        for job in finished:
            print(f"{job.id} {job.status}: {job.error or job.output}")
        if not finished:
            print("no queued jobs")


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"


def _list(jobs: list[Job]) -> None:
    if not jobs:
        print("no jobs")
        return
    print(f"{'ID':8}  {'STATUS':9}  {'DONE':>4}  {'CREATED':19}  OUTPUT / STAGE / ERROR")
    for job in jobs:
        detail = {"done": str(job.output), "failed": job.error or ""}.get(job.status, job.stage)
        print(f"{job.id:8}  {job.status:9}  {job.progress:4.0%}  {_when(job.created)}  {detail}")


def _timings(job: Job) -> str:
    t = job.timings
    if not t:
        return "no timings"
    parts = [f"{name.removesuffix('_s')} {t[name]:.1f} s" for name in t if name != "total_s"]
    overhead = t.get("total_s", 0.0) - t.get("model_s", 0.0) - t.get("lock_wait_s", 0.0)
    return ", ".join(parts) + f"; total {t.get('total_s', 0.0):.1f} s, {overhead:.1f} s of it around the model"


def _show(job: Job, log: Path) -> None:
    source = job.spec.audio or " / ".join(" ".join(p) for p in job.spec.paragraphs or [])
    rows = [
        ("id", job.id),
        ("status", job.status),
        ("stage", f"{job.stage} ({job.progress:.0%})"),
        ("from", job.origin),
        ("says", source if len(source) <= 100 else source[:97] + "..."),
        ("avatar", job.spec.avatar),
        ("output", str(job.output)),
        ("engine", job.engine or "-"),
        ("created", _when(job.created)),
        ("started", _when(job.started)),
        ("finished", _when(job.finished)),
        ("attempts", str(job.attempts)),
        ("timings", _timings(job)),
    ]
    if job.error:
        rows.append(("error", job.error))
    if log.is_file():
        rows.append(("log", f"{log} (LatentSync's output)"))
    rows += [("notice", n) for n in job.notices]
    for name, value in rows:
        print(f"{name + ':':10} {value}")


def _cancel(store: JobStore, job_id: str) -> None:
    from agent.jobs import TERMINAL, owner_alive

    job = store.require(job_id)
    if job.status in TERMINAL:
        raise UserError(f"job {job_id} has already ended ({job.status})")
    job = store.request_cancel(job_id)
    if job.status == "running" and not owner_alive(job.owner):
        store.recover()  # its worker died: nobody else would act on the request (recover kills what it left)
        job = store.require(job_id)
    deadline = time.monotonic() + CANCEL_WAIT_S
    while job.status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.2)
        job = store.require(job_id)
    if job.status == "cancelled":
        print(f"cancelled job {job_id}")
    elif job.status in TERMINAL:
        print(f"job {job_id} ended before it could be cancelled ({job.status})")
    else:
        print(f"cancel requested for job {job_id}; its worker has not confirmed yet (see `digital-human jobs show`)")
