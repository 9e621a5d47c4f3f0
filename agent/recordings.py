"""Recorded replies asked for in live sessions (the `record` message): queued, followed, then fetched over HTTP.

The live server runs a job worker in a background thread; a session's client is told the job's progress and,
when it is done, the URL of the file (`/recordings/<job>.mp4`, served with the same token and origin rules as
every other route). A client that leaves does not cancel its recording: the file stays fetchable by its URL.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from pathlib import Path

from agent.jobs import TERMINAL, Job, JobStore, JobWorker, new_job_id
from agent.latentsync_job import JobSpec
from agent.script import paragraphs_from_text
from core.config import Config
from core.errors import UserError

ROUTE = "/recordings/"
MAX_ACTIVE = 10
"""Queued and running jobs the server accepts at once; a GPU clip takes minutes, so more would only wait."""
POLL_S = 0.5
_NAME = re.compile(r"([0-9a-f]{8})\.mp4")


class Recordings:
    """The server's queue of recorded replies. The database is opened when there is one (to resume what a
    previous run left) or on the first request: a server nobody asks for a recording writes no file."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg.jobs
        self._queue: tuple[JobStore, JobWorker] | None = None
        self._opening = threading.Lock()
        """Two sessions' first requests arrive in two worker threads: one queue, one worker."""

    def _open(self) -> tuple[JobStore, JobWorker]:
        with self._opening:
            if self._queue is None:
                store = JobStore(self.cfg.db)
                worker = JobWorker(store, self.cfg)
                worker.start()  # resumes jobs a previous run left (see `JobStore.recover`)
                self._queue = (store, worker)
            return self._queue

    def start(self) -> None:
        if self.cfg.db.expanduser().exists():
            self._open()

    def close(self) -> None:
        if self._queue is not None:
            self._queue[1].stop()

    def request(self, cfg: Config, avatar: Path, text: str) -> Job:
        """Queue a recording of `text` in the voice and avatar of the session's persona (`cfg`)."""
        paragraphs = paragraphs_from_text(text)
        store, worker = self._open()
        if store.active() >= MAX_ACTIVE:
            raise UserError(f"{MAX_ACTIVE} recordings are already waiting; try again when one is ready")
        job_id = new_job_id()
        spec = JobSpec.build(cfg, avatar, paragraphs=paragraphs)
        return store.submit(spec, worker.output_for(job_id), origin="live", job_id=job_id)

    async def follow(self, job_id: str, send: Callable[..., None]) -> None:
        """Tell the client how the job goes until it ends: `record_progress`, then `record_ready` or `record_failed`."""
        last: tuple[str, float] | None = None
        while True:
            job = await asyncio.to_thread(self._open()[0].require, job_id)
            if job.status in TERMINAL:
                break
            state = (job.stage, round(job.progress, 2))
            if state != last:
                send("record_progress", job=job_id, stage=job.stage, progress=state[1])
                last = state
            await asyncio.sleep(POLL_S)
        if job.status == "done":
            send("record_ready", job=job_id, url=f"{ROUTE}{job_id}.mp4", engine=job.engine, notices=job.notices)
        else:
            send("record_failed", job=job_id, error=job.error or f"the recording was {job.status}")

    def file(self, name: str) -> Path | None:
        """The finished recording `<job>.mp4` of a live session (never a path the client composed, nor the file of a
        `render` command, which may be anywhere on the disk)."""
        match = _NAME.fullmatch(name)
        job = self._queue[0].get(match[1]) if match and self._queue is not None else None
        return job.output if job is not None and job.status == "done" and job.origin == "live" else None
