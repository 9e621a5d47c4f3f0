"""The recorded-reply job queue: persistent records in SQLite and the worker that runs them.

Jobs outlive the process that asked for them: a record holds everything needed to run the job again (its
spec, with the configuration it needs), its status, progress, output, error and timings. Several processes
may share one database (a server and a `render --engine latentsync` command): a job is claimed atomically by
one worker, and LatentSync's own lock keeps one model run per checkout. A job that was running when its
process died is found by the next worker (its owner is gone): LatentSync's leftover process group is killed,
and the job is queued again, once; after a second such death it is marked failed. Nothing is lost silently.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.latentsync_job import JobCancelled, JobContext, JobOutcome, JobSpec, run_job
from avatar.latentsync import kill_group
from core.config import JobsConfig
from core.errors import UserError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
"""A job whose worker died is run again once; a job that kills its worker twice is not tried a third time."""
POLL_S = 0.5
TERMINAL = ("done", "failed", "cancelled")
_SAFE_PATH = re.compile(r"[\w./+-]+")
"""LatentSync hands its paths to ffmpeg through a shell, unquoted: the job folders must not need quoting."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    origin TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT 'queued',
    progress REAL NOT NULL DEFAULT 0,
    spec TEXT NOT NULL,
    output TEXT NOT NULL,
    engine TEXT,
    error TEXT,
    notices TEXT NOT NULL DEFAULT '[]',
    timings TEXT NOT NULL DEFAULT '{}',
    owner TEXT,
    pgid INTEGER,
    workdir TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel INTEGER NOT NULL DEFAULT 0
)
"""


@dataclass
class Job:
    id: str
    origin: str
    created: float
    status: str
    stage: str
    progress: float
    spec: JobSpec
    output: Path
    started: float | None = None
    finished: float | None = None
    engine: str | None = None
    error: str | None = None
    notices: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    owner: str | None = None
    pgid: int | None = None
    workdir: str | None = None
    attempts: int = 0
    cancel: bool = False

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        data = dict(row)
        data["spec"] = JobSpec(**json.loads(data["spec"]))
        data["output"] = Path(data["output"])
        data["notices"] = json.loads(data["notices"])
        data["timings"] = json.loads(data["timings"])
        data["cancel"] = bool(data["cancel"])
        return cls(**data)


def new_job_id() -> str:
    return secrets.token_hex(4)


def process_identity(pid: int | None = None) -> str | None:
    """ "pid:start time": a pid alone may be reused by another process after a crash."""
    pid = os.getpid() if pid is None else pid
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return f"{pid}:{fields[19]}"


def owner_alive(owner: str | None) -> bool:
    if not owner:
        return False
    return process_identity(int(owner.split(":")[0])) == owner


class JobStore:
    """The queue's records. Every method is one short transaction, safe from any thread or process."""

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")  # readers (progress polls) never wait for the worker's writes
                db.execute(_SCHEMA)
            finally:
                db.close()
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open the job database {self.path}: {exc}") from None

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def submit(
        self, spec: JobSpec, output: Path, origin: str, owner: str | None = None, job_id: str | None = None
    ) -> Job:
        """A new job, queued, or already claimed by `owner` (a command that runs its own job at once)."""
        job_id = job_id or new_job_id()
        status, started = ("running", time.time()) if owner else ("queued", None)
        with self._db() as db:
            db.execute(
                "INSERT INTO jobs (id, origin, created, started, status, spec, output, owner, attempts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    origin,
                    time.time(),
                    started,
                    status,
                    json.dumps(asdict(spec)),
                    str(output),
                    owner,
                    int(bool(owner)),
                ),
            )
        return self.require(job_id)

    def get(self, job_id: str) -> Job | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def require(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job is None:
            raise UserError(f"no job {job_id!r} (see `digital-human jobs list`)")
        return job

    def list(self, limit: int = 50) -> list[Job]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [Job.from_row(r) for r in rows]

    def active(self) -> int:
        with self._db() as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()[0]

    def claim(self, owner: str) -> Job | None:
        """The oldest queued job, now running for `owner`; None when the queue is empty."""
        with self._db() as db:
            row = db.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'running', owner = ?, started = ?, attempts = attempts + 1,"
                " stage = 'starting' WHERE id = ?",
                (owner, time.time(), row["id"]),
            )
        return self.get(row["id"])

    def _update(self, job_id: str, **values: Any) -> None:
        names = ", ".join(f"{k} = ?" for k in values)
        with self._db() as db:
            db.execute(f"UPDATE jobs SET {names} WHERE id = ?", (*values.values(), job_id))

    def progress(self, job_id: str, stage: str, progress: float) -> None:
        self._update(job_id, stage=stage, progress=round(progress, 4))

    def set_process(self, job_id: str, pgid: int | None, workdir: str | None = None) -> None:
        if workdir is None:
            self._update(job_id, pgid=pgid)
        else:
            self._update(job_id, pgid=pgid, workdir=workdir)

    def finish(self, job_id: str, outcome: JobOutcome) -> None:
        self._update(
            job_id,
            status="done",
            stage="done",
            progress=1.0,
            finished=time.time(),
            output=str(outcome.output),
            engine=outcome.engine,
            notices=json.dumps(outcome.notices),
            timings=json.dumps(outcome.timings),
            pgid=None,
        )

    def end(self, job_id: str, status: str, error: str | None = None) -> None:
        self._update(job_id, status=status, stage=status, error=error, finished=time.time(), pgid=None)

    def request_cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one is flagged, and its worker stops it within a second."""
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET status = 'cancelled', stage = 'cancelled', finished = ?"
                " WHERE id = ? AND status = 'queued'",
                (time.time(), job_id),
            )
            db.execute("UPDATE jobs SET cancel = 1 WHERE id = ? AND status = 'running'", (job_id,))
        return self.require(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        job = self.get(job_id)
        return job is None or job.cancel

    def recover(self) -> list[tuple[str, str]]:
        """Jobs whose worker died: their LatentSync process group is killed, and they are queued again or failed."""
        with self._db() as db:
            rows = db.execute("SELECT * FROM jobs WHERE status = 'running'").fetchall()
        recovered = []
        for job in (Job.from_row(r) for r in rows):
            if owner_alive(job.owner):
                continue
            if job.pgid and job.workdir:
                _kill_leftover(job.pgid, job.workdir)
            if job.workdir:
                shutil.rmtree(job.workdir, ignore_errors=True)
            if job.cancel:
                self.end(job.id, "cancelled")
                recovered.append((job.id, "cancelled"))
            elif job.attempts >= MAX_ATTEMPTS:
                self.end(job.id, "failed", f"its worker stopped {job.attempts} times while running it")
                recovered.append((job.id, "failed"))
            else:
                self.requeue(job.id, "resumed: the process running it had stopped")
                recovered.append((job.id, "resumed"))
        return recovered

    def requeue(self, job_id: str, note: str) -> None:
        notes = [*self.require(job_id).notices, note]
        self._update(
            job_id, status="queued", stage="queued", progress=0.0, owner=None, pgid=None, notices=json.dumps(notes)
        )


def log_path(store: JobStore, job_id: str) -> Path:
    """Where LatentSync's whole output for a job is kept once the job has ended (`jobs show` names it)."""
    return store.path.parent / "logs" / f"{job_id}.log"


def _kill_leftover(pgid: int, workdir: str) -> None:
    """Kill the group only if its leader is still LatentSync of this job: after a reboot the pid may be anyone's."""
    try:
        cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return
    if workdir in cmdline:
        kill_group(pgid)


class JobWorker:
    """Runs jobs, one at a time, in the calling thread (`run`) or a background thread (`start`)."""

    def __init__(self, store: JobStore, cfg: JobsConfig) -> None:
        self.store = store
        self.cfg = cfg
        self.owner = process_identity() or f"{os.getpid()}:0"
        root = store.path.parent / "work"
        if not _SAFE_PATH.fullmatch(str(root)):
            root = Path(tempfile.gettempdir()) / f"digital-human-jobs-{os.getuid()}"
        self.work_root = root
        self.lock_dir = store.path.parent
        self._stop = threading.Event()
        self._cancels: dict[str, threading.Event] = {}
        self._thread: threading.Thread | None = None
        self.current_pgid: int | None = None

    def output_for(self, job_id: str) -> Path:
        folder = self.cfg.output_dir.expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{job_id}.mp4"

    def cancel(self, job_id: str) -> None:
        """In-process fast path of a cancellation (Ctrl-C on the command that runs it)."""
        self.store.request_cancel(job_id)
        if event := self._cancels.get(job_id):
            event.set()

    def run(self, job: Job) -> Job:
        """Run a job this worker has claimed; returns its final record. Never raises for the job's own failure."""
        cancel = self._cancels.setdefault(job.id, threading.Event())
        workdir = self.work_root / job.id
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        self.store.set_process(job.id, None, str(workdir))
        watcher = threading.Thread(target=self._watch_cancel, args=(job.id, cancel), daemon=True)
        watcher.start()
        ctx = JobContext(
            workdir=workdir,
            lock_dir=self.lock_dir,
            cancel=cancel,
            report=lambda stage, share: self.store.progress(job.id, stage, share),
            on_pgid=lambda pgid: self._set_pgid(job.id, pgid),
        )
        try:
            outcome = run_job(job.spec, job.output, ctx)
            outcome.notices[:0] = job.notices  # e.g. that it was resumed
            self.store.finish(job.id, outcome)
        except JobCancelled:
            if self._stop.is_set() and not self.store.cancel_requested(job.id):
                self.store.requeue(job.id, "resumed: the server was stopped while it ran")
            else:
                self.store.end(job.id, "cancelled")
        except UserError as exc:
            self.store.end(job.id, "failed", str(exc))
        except Exception as exc:
            log.exception("job %s failed", job.id)
            self.store.end(job.id, "failed", f"internal error: {exc.__class__.__name__}: {exc}")
        finally:
            cancel.set()  # ends the watcher
            watcher.join()
            self._cancels.pop(job.id, None)
            if (workdir / "latentsync.log").is_file():
                log_path(self.store, job.id).parent.mkdir(exist_ok=True)
                shutil.move(workdir / "latentsync.log", log_path(self.store, job.id))
            shutil.rmtree(workdir, ignore_errors=True)
        return self.store.require(job.id)

    def _set_pgid(self, job_id: str, pgid: int | None) -> None:
        self.current_pgid = pgid
        self.store.set_process(job_id, pgid)

    def _watch_cancel(self, job_id: str, cancel: threading.Event) -> None:
        """Cancellation from another process (`digital-human jobs cancel`) arrives through the database."""
        while not cancel.wait(POLL_S):
            if self.store.cancel_requested(job_id):
                cancel.set()

    def run_pending(self) -> list[Job]:
        """Resume interrupted jobs and run queued ones until the queue is empty (`digital-human jobs run`)."""
        self.store.recover()
        done = []
        while not self._stop.is_set() and (job := self.store.claim(self.owner)) is not None:
            done.append(self.run(job))
        return done

    def start(self) -> None:
        """Serve the queue in a background thread (the live server): jobs from sessions and other processes."""
        self.store.recover()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="job-worker")
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.store.claim(self.owner)
            except sqlite3.Error:
                log.exception("job queue unavailable")
                job = None
            if job is None:
                self._stop.wait(POLL_S)
            else:
                self.run(job)

    def stop(self) -> None:
        """Shutting down: LatentSync is killed at once and its job queued again for the next start.

        If the process exits before the job is re-queued, the next worker's `recover` does it.
        """
        self._stop.set()
        for event in list(self._cancels.values()):
            event.set()
        if self.current_pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.current_pgid, signal.SIGKILL)
