"""A scriptable OpenAI-compatible chat server over real HTTP, for contract tests of the streaming client.

No real service can be made to be slow, fail or misbehave on cue, so this one speaks the wire format
of OpenAI's streaming chat completions exactly (HTTP/1.1, chunked `text/event-stream`, `data: {json}`
events of `chat.completion.chunk` objects, a role chunk first, a `finish_reason` chunk, `data: [DONE]`;
errors as JSON bodies `{"error": {...}}` with their status) and lets each test say what the next
requests get. It runs on the test's own event loop and records what it received and whether the
client hung up before a reply ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Ending = Literal["stop", "stall", "drop", "truncate", "garbage"]
"""After the pieces: `stop` finishes properly; `stall` sends nothing more but keeps the connection
open; `drop` closes the connection in the middle of the body; `truncate` ends the body cleanly but
without a finish_reason or [DONE]; `garbage` sends an event that is not JSON."""


@dataclass(frozen=True)
class Reply:
    """What the server does with one request."""

    pieces: Sequence[str] = ("Hello", " there", "!")
    ending: Ending = "stop"
    status: int = 200
    retry_after: str | None = None
    first_delay: float = 0.0
    """Seconds between the role chunk (sent at once) and the first piece of text."""
    delay: float = 0.0
    """Seconds before each later piece."""


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}


class ScriptedOpenAIServer:
    """`async with ScriptedOpenAIServer() as server:` then `server.queue(Reply(...), ...)`; point a client at `url`."""

    def __init__(self, default: Reply = Reply()) -> None:
        self.default = default
        self.requests: list[dict] = []
        self.pieces_sent = 0
        """Pieces of text written in the most recent streamed reply."""
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        """Set when a client hangs up before its reply ended."""
        self._replies: deque[Reply] = deque()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def queue(self, *replies: Reply) -> None:
        """The next requests get these replies in order; later ones get `default`."""
        self._replies.extend(replies)

    async def __aenter__(self) -> ScriptedOpenAIServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while await self._one_exchange(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _one_exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; False when the connection cannot be used again."""
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        self.requests.append(json.loads(await reader.readexactly(length)) if length else {})
        reply = self._replies.popleft() if self._replies else self.default
        if reply.status != 200:
            await self._send_error(writer, reply)
            return True
        return await self._stream(reply, reader, writer)

    @staticmethod
    async def _send_error(writer: asyncio.StreamWriter, reply: Reply) -> None:
        kind = "rate_limit_exceeded" if reply.status == 429 else "server_error"
        body = json.dumps(
            {"error": {"message": f"scripted failure {reply.status}", "type": kind, "param": None, "code": None}}
        ).encode()
        headers = [
            f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Internal Server Error')}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        if reply.retry_after is not None:
            headers.append(f"Retry-After: {reply.retry_after}")
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode() + body)
        await writer.drain()

    async def _stream(self, reply: Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        self.pieces_sent = 0
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n"
        )
        # The client sends nothing while it reads a reply, so a finished read means it hung up.
        hang_up = asyncio.ensure_future(reader.read(1))
        try:
            model = self.requests[-1].get("model", "test-model")
            await _event(writer, _chunk(model, {"role": "assistant", "content": ""}, None))
            for i, piece in enumerate(reply.pieces):
                if not await _pause(reply.first_delay if i == 0 else reply.delay, hang_up):
                    return self._hung_up()
                await _event(writer, _chunk(model, {"content": piece}, None))
                self.pieces_sent += 1
            if reply.ending == "stall":
                await hang_up
                return self._hung_up()
            if reply.ending == "drop":
                writer.transport.abort()
                return False
            if reply.ending == "garbage":
                await _event(writer, "{this is not json")
            elif reply.ending == "stop":
                await _event(writer, _chunk(model, {}, "stop"))
                await _event(writer, "[DONE]")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        except ConnectionError:
            return self._hung_up()
        finally:
            hang_up.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await hang_up

    def _hung_up(self) -> bool:
        self.disconnects += 1
        self.disconnected.set()
        return False


async def _pause(seconds: float, hang_up: asyncio.Future[bytes]) -> bool:
    """Wait, unless the client hangs up first (then False)."""
    if seconds <= 0:
        return not hang_up.done()
    done, _ = await asyncio.wait({hang_up}, timeout=seconds)
    return not done


def _chunk(model: str, delta: dict[str, str], finish_reason: str | None) -> str:
    return json.dumps(
        {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_scripted",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
    )


async def _event(writer: asyncio.StreamWriter, data: str) -> None:
    """One server-sent event as one HTTP chunk."""
    payload = f"data: {data}\n\n".encode()
    writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
    await writer.drain()
