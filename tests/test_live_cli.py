"""`digital-human serve` as a user starts it: a real process, real signals, real TLS."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from streaming.rtmp_worker import AUDIO_RATE
from tests.live_helpers import QUIET_PERSONA, open_client
from tests.llm_server import Reply, ScriptedOpenAIServer
from tests.rtmp_helpers import Listener, free_port

BIN = Path(sys.executable).parent / "digital-human"


def start_command(tmp_path: Path, command: str, *args: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    """Start `digital-human COMMAND --port 0 ...` and wait for its "serving on URL" line."""
    persona = tmp_path / "quiet.yaml"
    persona.write_text(QUIET_PERSONA)
    environ = os.environ | {
        "DH_AVATAR__CACHE_DIR": str(tmp_path / "avatars"),
        "DH_TTS__ENGINE": "espeak",
        "DH_AGENT__PERSONA": str(persona),
        # An endpoint that is never called unless a test says otherwise: no local LLM server to start.
        "DH_LLM__BASE_URL": "http://127.0.0.1:9/v1",
        **env,
    }
    proc = subprocess.Popen(
        [str(BIN), command, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("serving on "):
        proc.kill()
        raise AssertionError(f"{command} did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, line.removeprefix("serving on ").strip()


def start_serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    return start_command(tmp_path, "serve", *args)


async def test_sigterm_closes_every_client_and_the_process_exits(tmp_path: Path) -> None:
    proc, url = start_serve(tmp_path)
    try:
        assert url.startswith("http://127.0.0.1:") and "token" not in url
        ws_url = url.replace("http://", "ws://").rstrip("/") + "/ws"
        clients = [await open_client(ws_url) for _ in range(2)]
        for c in clients:
            await c.until(lambda c=c: len(c.media) > 10)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for c in clients:
            await asyncio.wait_for(c.closed.wait(), 10)
            assert c.ws.close_code == 1001
        closed = time.monotonic() - sent
        code = await asyncio.to_thread(proc.wait, 20)
        exited = time.monotonic() - sent
        assert code == 0
        # Even while Whisper is still loading in the background (it just started): worker threads are not awaited.
        assert closed < 2.0 and exited < 2.0, (closed, exited)
    finally:
        proc.kill()


async def test_other_addresses_need_the_token_and_get_https(tmp_path: Path) -> None:
    proc, url = start_serve(tmp_path, "--host", "0.0.0.0")
    try:
        assert url.startswith("https://127.0.0.1:") and "?token=" in url
        token = url.split("?token=")[1]
        cert = tmp_path / "tls" / "server-cert.pem"
        assert cert.is_file()
        trust = ssl.create_default_context(cafile=str(cert))
        base = url.split("?")[0].rstrip("/")
        with urllib.request.urlopen(base + "/healthz", context=trust) as r:
            assert r.status == 200
        ws_url = base.replace("https://", "wss://") + "/ws"
        anonymous = await open_client(ws_url, ssl=trust)
        await anonymous.closed.wait()
        assert anonymous.ws.close_code == 4401
        allowed = await open_client(f"{ws_url}?token={token}", ssl=trust)
        await allowed.until(lambda: allowed.of("ready"))
        await allowed.ws.close()
        with pytest.raises(ssl.SSLError):
            await open_client(ws_url, ssl=ssl.create_default_context())  # an untrusted certificate is refused
    finally:
        proc.terminate()
        proc.wait(10)


SHOW = """# Test show

## Opening
Welcome to the test show. This is the first segment.

## Middle
This is the second segment, in the middle of the show.

## Closing
And this third segment ends the show. Good night.
"""


async def test_host_pushes_the_show_to_rtmp_and_answers_a_posted_question(tmp_path: Path) -> None:
    listener = Listener(free_port())
    show = tmp_path / "show.md"
    show.write_text(SHOW)
    async with ScriptedOpenAIServer() as llm:
        llm.queue(Reply(pieces=("A comet is a ball of ice and dust.",)))
        proc, url = await asyncio.to_thread(
            start_command, tmp_path, "host", "--script", str(show), "--rtmp", listener.url, DH_LLM__BASE_URL=llm.url
        )
        try:
            viewer = await open_client(url.replace("http://", "ws://").rstrip("/") + "/ws")
            await viewer.until(lambda: viewer.of("turn_start"))
            ask = url.rstrip("/") + "/api/ask?text=What+is+a+comet%3F&author=ana"
            with urllib.request.urlopen(ask) as r:
                assert r.status == 200
            await viewer.until(lambda: len(viewer.of("turn_end")) >= 4, timeout=120)
            sources = [s["source"] for s in viewer.of("turn_start")]
            assert sources.count("script") >= 3 and "question" in sources
            assert not any(e["interrupted"] for e in viewer.of("turn_end"))
            spoken = " ".join(r["text"] for r in viewer.of("reply"))
            assert "comet is a ball of ice" in spoken and "third segment" in spoken
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 20)
    await asyncio.to_thread(listener.join)
    assert listener.codecs == {"video": "h264", "audio": "aac"}
    # Timelines, not counts: a picture dropped while the ingest was slow leaves its time (and its sound).
    video_end = listener.video[-1][0] / 1000 + 1 / 25
    audio_end = listener.audio[-1][0] / 1000 + len(listener.audio[-1][1]) / AUDIO_RATE
    assert video_end > 5 and abs(video_end - audio_end) <= 1 / 25 + 1024 / AUDIO_RATE, (video_end, audio_end)


@pytest.mark.parametrize(
    ("extra", "env", "expected"),
    [
        (["--engine", "musetalk"], {}, "musetalk.weights_dir"),
        ([], {"DH_RENDERER__ENGINE": "latentsync"}, "recorded replies only"),
    ],
    ids=["musetalk without weights", "latentsync live"],
)
def test_serve_refuses_an_engine_it_cannot_run_before_loading_anything(
    extra: list[str], env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "serve", "--port", "0", *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "DH_MUSETALK__WEIGHTS_DIR": "", **env},
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
