"""A real websocket client for the live server, and a server built from real components for tests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agent.live import LiveAgent, SharedModels
from agent.llm import LLMClient
from core.config import Config, load_config, resolve_path
from streaming.protocol import KIND_AUDIO, KIND_VIDEO, unpack_media
from streaming.server import LiveServer, ServerOptions


@dataclass
class Media:
    kind: int
    turn: int
    pts: int
    payload: bytes
    at: float


@dataclass
class LiveClient:
    ws: ClientConnection
    events: list[dict[str, Any]] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)
    log: list[tuple[str, Any]] = field(default_factory=list)
    """Everything in arrival order: ("event", dict) or ("media", Media)."""
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def reader(self) -> None:
        try:
            async for raw in self.ws:
                now = time.perf_counter()
                if isinstance(raw, str):
                    event = json.loads(raw)
                    event["_at"] = now
                    self.events.append(event)
                    self.log.append(("event", event))
                else:
                    kind, turn, pts, payload = unpack_media(raw)
                    item = Media(kind, turn, pts, payload, now)
                    self.media.append(item)
                    self.log.append(("media", item))
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def send(self, kind: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"type": kind, **fields}))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def until(self, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Wait for `check()` to be truthy (the timeout only catches a hang; it is not a measurement)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            if self.closed.is_set():
                raise AssertionError(f"connection closed ({self.ws.close_code} {self.ws.close_reason}) while waiting")
            await asyncio.sleep(0.02)
        raise AssertionError("timed out waiting")

    def audio(self) -> list[Media]:
        return [m for m in self.media if m.kind == KIND_AUDIO]

    def video(self) -> list[Media]:
        return [m for m in self.media if m.kind == KIND_VIDEO]


async def open_client(url: str, hello: dict[str, Any] | None = None, **connect_args: Any) -> LiveClient:
    ws = await connect(url, max_size=None, **connect_args)
    client = LiveClient(ws)
    client.task = asyncio.create_task(client.reader())
    if hello is not False:
        await client.send("hello", **({"protocol": 1, "codecs": ["jpeg"]} | (hello or {})))
    return client


QUIET_PERSONA = """name: quiet
display_name: Test presenter
mode: presenter
system_prompt: You are a test presenter. Answer briefly.
"""


def live_config(cache: Path, **sections: dict[str, Any]) -> Config:
    """Espeak (instant, real), a cache of its own, and a presenter with no greeting so streams start idle."""
    persona = cache / "quiet.yaml"
    persona.write_text(QUIET_PERSONA)
    overrides: dict[str, Any] = {
        "avatar": {"cache_dir": str(cache)},
        "tts": {"engine": "espeak"},
        "agent": {"persona": str(persona)},
    }
    for name, values in sections.items():
        overrides[name] = overrides.get(name, {}) | values
    return load_config(overrides=overrides, environ={})


def shared_models(
    cfg: Config, prepared: object, tts: Any, llm: LLMClient | None, transcriber: Any = None
) -> SharedModels:
    """SharedModels from already-loaded parts (the real ones, loaded once per test module)."""
    models = SharedModels(cfg, tts, llm)
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[Any] = loop.create_future()
    ready.set_result((prepared, []))
    models._avatars[resolve_path(cfg.avatar.source).resolve()] = ready
    if transcriber is not None:
        loaded: asyncio.Future[Any] = loop.create_future()
        loaded.set_result(transcriber)
        models._transcriber = loaded
    return models


async def start_server(models: SharedModels, **options: Any) -> tuple[LiveServer, LiveAgent]:
    agent = LiveAgent(models, seed=1)
    server = LiveServer(ServerOptions(port=0, **options), agent.handle)
    await server.start()
    return server, agent


def ws_url(server: LiveServer, query: str = "") -> str:
    scheme = "wss" if server.options.ssl_context else "ws"
    return f"{scheme}://127.0.0.1:{server.port}/ws{query}"
