"""The real `digital-human serve` as a subprocess, and small readers of the page's `dh` test hook."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from core.audio import read_audio_file, write_wav

CHROMIUM = Path("/usr/bin/chromium")
SERVER_START_SECONDS = 600
"""Only catches a hang: a cold start assembles Whisper and the offline LLM and prepares the avatar."""

QUIET_PERSONA = """name: quiet
display_name: Test presenter
mode: presenter
system_prompt: You are a test presenter. Answer in one short sentence.
"""


INSECURE_HOST = "insecure.test"
"""Resolves to 127.0.0.1 in the test browser, but is not localhost: pages from it are not a secure context."""


def browser_args(mic_wav: Path) -> list[str]:
    """A fake microphone playing `mic_wav` once, audio allowed to start without a tap, and INSECURE_HOST."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic_wav.resolve()}%noloop",
        "--autoplay-policy=no-user-gesture-required",
        f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1",
    ]


def padded_speech(source: Path, out: Path, lead_s: float = 0.7, tail_s: float = 0.6) -> float:
    """`source` at 16 kHz with silence around it, so no word is lost while the capture starts; its length (s)."""
    rate = 16000
    speech = read_audio_file(source, rate)
    pcm = np.concatenate([np.zeros(int(lead_s * rate), np.int16), speech, np.zeros(int(tail_s * rate), np.int16)])
    write_wav(out, pcm, rate)
    return len(pcm) / rate


@contextmanager
def running_server(workdir: Path, model_cache: Path) -> Iterator[str]:
    """`digital-human serve --port 0` with its caches under `workdir`/`model_cache`; yields the page URL."""
    persona = workdir / "quiet.yaml"
    persona.write_text(QUIET_PERSONA)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DH_", "OPENAI_"))}
    env |= {
        "DH_AVATAR__CACHE_DIR": str(workdir / "avatars"),
        "DH_ASR__CACHE_DIR": str(model_cache),
        "DH_LLM__CACHE_DIR": str(model_cache),
        "DH_LLM__PROVIDER": "local",
        "DH_AGENT__PERSONA": str(persona),
        # The insecure-page test reaches the server under another name, as through a LAN name or proxy:
        # the operator must allow that name (without a token the server answers only this machine's names).
        "DH_SERVER__ALLOWED_ORIGINS": f'["http://{INSECURE_HOST}"]',
    }
    cli = Path(sys.executable).with_name("digital-human")
    log = workdir / "server.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(cli), "serve", "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
        )
    url = _wait_for_url(proc, log)
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_url(proc: subprocess.Popen[str], log: Path) -> str:
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("serving on ") and not found:
                found.append(line.removeprefix("serving on ").strip())
                ready.set()
        ready.set()  # stdout closed: the process ended

    threading.Thread(target=read, daemon=True).start()
    ready.wait(SERVER_START_SECONDS)
    if not found:
        proc.kill()
        tail = log.read_text(errors="replace")[-3000:]
        raise AssertionError(f"`digital-human serve` did not print 'serving on' (exit {proc.poll()}):\n{tail}")
    return found[0]


def page_url(base: str, **query: str) -> str:
    """The page URL with extra query parameters (the server's own, e.g. a token, are kept)."""
    sep = "&" if "?" in base else "?"
    extra = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{base}{sep}{extra}" if extra else base


def events_of(snapshot: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in snapshot["events"] if e["type"] == kind]
