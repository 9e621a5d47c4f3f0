"""The `record` message: a live session asks for a LatentSync recording and fetches the finished file over HTTP.

Contract test: LatentSync is `latentsync_standin.py` (no GPU or weights here), run as an external process by
the server's real job worker. The websocket client, the server, the HTTP fetch and the file are real.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from latentsync_helpers import latentsync_section, make_checkout

from agent.jobs import JobStore
from agent.latentsync_job import JobSpec
from agent.recordings import ROUTE, Recordings
from avatar.prepare import prepare_avatar
from core.config import resolve_path
from speech.tts_select import create_tts
from streaming.recording import probe_durations
from tests.live_helpers import live_config, open_client, shared_models, start_server, ws_url


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("live")
    checkout = make_checkout(root, mode="ok", step_s=0.002)
    (root / "avatars").mkdir()
    cfg = live_config(
        root / "avatars",
        latentsync=latentsync_section(checkout),
        jobs={"db": str(root / "jobs" / "jobs.sqlite"), "output_dir": str(root / "recordings")},
    )
    prepared, _ = prepare_avatar(resolve_path(cfg.avatar.source), cfg.avatar.cache_dir)
    return cfg, prepared, create_tts(cfg.tts)


@pytest.fixture
async def live(parts):
    cfg, prepared, tts = parts
    recordings = Recordings(cfg)
    recordings.start()
    models = shared_models(cfg, prepared, tts, None)
    server, agent = await start_server(models, token="secret", file_routes={ROUTE: recordings.file})
    agent.recordings = recordings
    yield server, recordings
    await server.close()
    recordings.close()


def fetch(server, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_record_ends_in_a_fetchable_file(live, tmp_path: Path) -> None:
    server, _ = live
    client = await open_client(ws_url(server, "?token=secret"))
    await client.until(lambda: client.of("ready"))
    await client.send("record", text="Hello, this is a recorded reply.")
    queued = (await client.until(lambda: client.of("record_queued")))[0]
    ready = (await client.until(lambda: client.of("record_ready"), timeout=300))[0]
    job = queued["job"]
    assert ready["job"] == job and ready["url"] == f"/recordings/{job}.mp4"
    assert ready["engine"] == "latentsync" and ready["notices"] == []
    progress = [e["progress"] for e in client.of("record_progress")]
    assert progress and progress == sorted(progress)
    assert {e["stage"] for e in client.of("record_progress")} >= {"model"}

    status, body = await asyncio.to_thread(fetch, server, ready["url"] + "?token=secret")
    assert status == 200
    (tmp_path / "got.mp4").write_bytes(body)
    vdur, adur = probe_durations(tmp_path / "got.mp4")
    assert abs(vdur - adur) <= 1 / 25 and adur > 1.5

    assert (await asyncio.to_thread(fetch, server, ready["url"]))[0] == 401  # the token rules of every route
    assert (await asyncio.to_thread(fetch, server, "/recordings/../../etc/passwd?token=secret"))[0] == 404
    assert (await asyncio.to_thread(fetch, server, "/recordings/00000000.mp4?token=secret"))[0] == 404
    await client.ws.close()


async def test_only_live_sessions_recordings_are_served(live, parts, tmp_path: Path) -> None:
    """A `render` command's job writes wherever the user said: that file is not the server's to hand out."""
    server, _ = live
    cfg, _, _ = parts
    private = tmp_path / "private.mp4"
    private.write_bytes(b"not for the web")
    store = JobStore(cfg.jobs.db)
    job = store.submit(JobSpec(avatar="a.png", paragraphs=[["Hi."]]), private, "cli", owner="1:1")
    store.end(job.id, "done")
    assert (await asyncio.to_thread(fetch, server, f"/recordings/{job.id}.mp4?token=secret"))[0] == 404


async def test_bad_record_requests_get_one_error_and_the_session_goes_on(live) -> None:
    server, _ = live
    client = await open_client(ws_url(server, "?token=secret"))
    await client.until(lambda: client.of("ready"))
    await client.send("record", text="   ")
    await client.send("record")
    errors = await client.until(lambda: len(client.of("error")) >= 2 and client.of("error"))
    assert [e["code"] for e in errors] == ["empty_text", "bad_message"]
    assert errors[1]["message"] == "'record' needs a 'text' field"
    await client.send("record", text="...")
    refused = await client.until(lambda: len(client.of("error")) >= 3 and client.of("error")[2])
    assert refused == {**refused, "code": "record_refused"}
    assert refused["message"] == "nothing to say: the text is empty or has no speakable words"
    await client.send("say", text="Still here.")
    await client.until(lambda: client.of("turn_end"))
    await client.ws.close()


async def test_a_server_without_recordings_says_so(parts) -> None:
    cfg, prepared, tts = parts
    server, _ = await start_server(shared_models(cfg, prepared, tts, None))
    try:
        client = await open_client(ws_url(server))
        await client.until(lambda: client.of("ready"))
        await client.send("record", text="Hello.")
        error = (await client.until(lambda: client.of("error")))[0]
        assert error["code"] == "record_unavailable"
        await client.ws.close()
    finally:
        await server.close()


async def test_a_recording_running_when_the_server_died_is_resumed_by_the_next_server(tmp_path: Path) -> None:
    """The real `digital-human serve`, killed with SIGKILL mid-recording (no chance to clean up), then started again:
    the new server kills the LatentSync group the dead one left and records the job again; its URL works."""
    from latentsync_helpers import alive, recorded_pids, set_mode, wait_for

    from tests.test_live_cli import start_command

    pids = tmp_path / "pids.jsonl"
    checkout = make_checkout(tmp_path, mode="hang", pids=str(pids))
    env = {
        "DH_LATENTSYNC__CHECKOUT": str(checkout),
        "DH_LATENTSYNC__PYTHON": sys.executable,
        "DH_JOBS__DB": str(tmp_path / "jobs" / "jobs.sqlite"),
        "DH_JOBS__OUTPUT_DIR": str(tmp_path / "recordings"),
    }
    first, url = start_command(tmp_path, "serve", **env)
    try:
        client = await open_client(url.replace("http://", "ws://").rstrip("/") + "/ws")
        await client.until(lambda: client.of("ready"))
        await client.send("record", text="Hello, this is a recorded reply.")
        job = (await client.until(lambda: client.of("record_queued")))[0]["job"]
        await asyncio.to_thread(wait_for, lambda: len(recorded_pids(pids)) == 2, 120, "LatentSync to start")
    finally:
        first.kill()
        first.communicate(timeout=60)
    leftovers = recorded_pids(pids)
    assert all(alive(pid) for pid in leftovers)

    set_mode(checkout, mode="ok", pids=str(pids))
    second, url = start_command(tmp_path, "serve", **env)
    try:
        store = JobStore(tmp_path / "jobs" / "jobs.sqlite")
        await asyncio.to_thread(wait_for, lambda: store.require(job).status == "done", 300, "the resumed job")
        assert not any(alive(pid) for pid in leftovers)
        assert store.require(job).notices == ["resumed: the process running it had stopped"]
        response = await asyncio.to_thread(
            urllib.request.urlopen, f"{url.split('?')[0].rstrip('/')}/recordings/{job}.mp4"
        )
        (tmp_path / "got.mp4").write_bytes(response.read())
        vdur, adur = probe_durations(tmp_path / "got.mp4")
        assert abs(vdur - adur) <= 1 / 25 and adur > 1.5
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=60)
