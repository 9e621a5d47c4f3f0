"""The live server: the websocket endpoint `/ws`, the page, `/healthz`, all on one port.

The server owns everything about a connection that is not conversation: the handshake (origin,
token, `hello`), message parsing and rate limits, the ordered outbox, the session limit and a clean
shutdown. What a session *does* is the `SessionHandler` given at start-up (the agent package wires
it), so this package never imports the agent. A handler gets a `Connection`, reads typed messages
from it and returns when the session is over; a handler that crashes ends its own session only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import itertools
import json
import logging
import mimetypes
import secrets
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from streaming.outbox import Outbox
from streaming.protocol import (
    CLOSE_BAD_HELLO,
    CLOSE_BAD_VERSION,
    CLOSE_FULL,
    CLOSE_HELLO_TIMEOUT,
    CLOSE_UNAUTHORIZED,
    MAX_MIC_SECONDS,
    PROTOCOL_VERSION,
    AudioStart,
    AudioStop,
    ClientMessage,
    Hello,
    ProtocolError,
    Record,
    Say,
    UserText,
    parse_binary_message,
    parse_text_message,
)

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_MESSAGE_BYTES = 1 << 20
HELLO_TIMEOUT = 10.0
INBOX_SIZE = 256
USER_MESSAGES_PER_10S = 10
"""`text`, `say` and `record`: each can start an LLM reply or a recording, so they are the expensive ones."""
MESSAGES_PER_SECOND = 50
"""Every JSON message (playback reports arrive a few times a second)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_sessions: int = 4
    allowed_origins: tuple[str, ...] = ()
    ssl_context: ssl.SSLContext | None = None
    static_dir: Path = STATIC_DIR
    http_routes: dict[str, Callable[[dict[str, list[str]]], tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    """Extra GET endpoints answering JSON, e.g. `/api/ask` for a live show's question queue."""
    file_routes: dict[str, Callable[[str], Path | None]] = field(default_factory=dict)
    """GET endpoints answering a file, by path prefix (e.g. `/recordings/` for recorded replies): the handler gets
    the rest of the path and returns the file, or None for 404. Same token and cross-site rules as `http_routes`."""
    hello_timeout: float = HELLO_TIMEOUT


class _RateLimit:
    """At most `limit` events in any `window` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self._times and now - self._times[0] >= self.window:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True


class Connection:
    """One client, as a session sees it: typed messages in, events and media out."""

    def __init__(self, session_id: str, ws: ServerConnection, hello: Hello, outbox: Outbox) -> None:
        self.id = session_id
        self.ws = ws
        self.hello = hello
        self.outbox = outbox
        self.inbox: asyncio.Queue[ClientMessage | None] = asyncio.Queue(INBOX_SIZE)
        self.mic_rate: int | None = None
        self.mic_started = 0.0
        self.mic_samples = 0

    @property
    def remote(self) -> str:
        addr = self.ws.remote_address
        return f"{addr[0]}:{addr[1]}" if addr else "?"

    async def receive(self) -> ClientMessage | None:
        """The next message; None once the client has gone."""
        return await self.inbox.get()

    def send_event(self, kind: str, **fields: Any) -> None:
        self.outbox.send_event(kind, **fields)

    def error(self, code: str, message: str) -> None:
        self.outbox.send_event("error", code=code, message=message)


SessionHandler = Callable[[Connection], Awaitable[None]]


class LiveServer:
    def __init__(self, options: ServerOptions, handler: SessionHandler) -> None:
        self.options = options
        self.handler = handler
        self.sessions: dict[str, Connection] = {}
        self._server: Server | None = None
        self._ids = itertools.count(1)
        self.started = time.monotonic()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        scheme = "https" if self.options.ssl_context else "http"
        host = self.options.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
        query = f"?token={self.options.token}" if self.options.token else ""
        return f"{scheme}://{shown}:{self.port}/{query}"

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.options.host,
            self.options.port,
            process_request=self._process_request,
            max_size=MAX_MESSAGE_BYTES,
            ssl=self.options.ssl_context,
            ping_interval=20,
            ping_timeout=20,
            server_header="digital-human",
        )

    async def close(self) -> None:
        """Every client gets a close frame (1001); returns when all sessions have ended."""
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    def health(self) -> dict[str, Any]:
        return {
            "ok": True,
            "protocol": PROTOCOL_VERSION,
            "sessions": len(self.sessions),
            "max_sessions": self.options.max_sessions,
            "uptime_s": round(time.monotonic() - self.started, 1),
        }

    # HTTP: the page, health, extra routes, and the origin check before the websocket upgrade.

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        host = request.headers.get("Host", "")
        if not self.options.token and not self._host_allowed(host):
            # Without a token, only names of this machine: a web page that rebinds its own domain to
            # 127.0.0.1 must not reach the avatar (its Origin and Host would agree).
            return _response(HTTPStatus.FORBIDDEN, b"unknown host name; use localhost or 127.0.0.1\n", "text/plain")
        if url.path == "/ws":
            origin = request.headers.get("Origin")
            if origin is not None and not self._origin_allowed(origin, host):
                return _response(HTTPStatus.FORBIDDEN, b"origin not allowed\n", "text/plain")
            return None
        if url.path == "/healthz":
            return _json(HTTPStatus.OK, self.health())
        if url.path in self.options.http_routes:
            if refused := self._refused(request, url.query):
                return refused
            status, body = self.options.http_routes[url.path](parse_qs(url.query))
            return _json(HTTPStatus(status), body)
        for prefix, route in self.options.file_routes.items():
            if url.path.startswith(prefix):
                return self._refused(request, url.query) or _file(route(url.path.removeprefix(prefix)))
        return self._static(url.path)

    def _refused(self, request: Request, query: str) -> Response | None:
        """The API routes' guard: other sites' pages (an <img>, a form) must not trigger a state-changing GET or
        read a recording, and a server with a token wants it."""
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return _json(HTTPStatus.FORBIDDEN, {"error": "cross-site request refused"})
        if self.options.token and not _token_ok(self.options.token, parse_qs(query).get("token", [None])[0]):
            return _json(HTTPStatus.UNAUTHORIZED, {"error": "token missing or wrong"})
        return None

    def _host_allowed(self, host: str) -> bool:
        name = urlsplit(f"//{host}").hostname or ""
        allowed = {"localhost", "127.0.0.1", "::1", self.options.host}
        allowed |= {urlsplit(o).hostname or "" for o in self.options.allowed_origins}
        return name in allowed

    def _origin_allowed(self, origin: str, host: str) -> bool:
        if origin in self.options.allowed_origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()

    def _static(self, path: str) -> Response:
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        if name == path or not name or "/" in name or name.startswith("."):
            return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        file = self.options.static_dir / name
        if not file.is_file():
            return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if name.endswith(".js"):
            kind = "text/javascript"
        charset = "; charset=utf-8" if kind.startswith("text") else ""
        return _response(HTTPStatus.OK, file.read_bytes(), kind + charset)

    # Websocket sessions.

    async def _handle(self, ws: ServerConnection) -> None:
        outbox = Outbox(ws)
        sender = asyncio.create_task(outbox.run())
        try:
            hello = await self._hello(ws)
            if hello is None:
                return
            if len(self.sessions) >= self.options.max_sessions:
                await ws.close(CLOSE_FULL, f"server full ({self.options.max_sessions} sessions)")
                return
            conn = Connection(f"s{next(self._ids)}-{secrets.token_hex(3)}", ws, hello, outbox)
            self.sessions[conn.id] = conn
            log.info("session %s opened from %s", conn.id, conn.remote)
            try:
                await self._run_session(conn)
            finally:
                del self.sessions[conn.id]
                log.info("session %s closed", conn.id)
        finally:
            await outbox.aclose()
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                await asyncio.wait_for(sender, 2.0)
            sender.cancel()

    async def _hello(self, ws: ServerConnection) -> Hello | None:
        """The client's `hello`, after the token check; None once the connection has been closed."""
        token = self.options.token
        query_token = parse_qs(urlsplit(ws.request.path if ws.request else "").query).get("token", [None])[0]
        if token and query_token is not None and not _token_ok(token, query_token):
            await ws.close(CLOSE_UNAUTHORIZED, "token wrong")
            return None
        try:
            raw = await asyncio.wait_for(ws.recv(), self.options.hello_timeout)
        except TimeoutError:
            await ws.close(CLOSE_HELLO_TIMEOUT, "no hello")
            return None
        except ConnectionClosed:
            return None
        try:
            if not isinstance(raw, str):
                raise ProtocolError("the first message must be a JSON hello")
            hello = parse_text_message(raw)
            if not isinstance(hello, Hello):
                raise ProtocolError("the first message must be a hello")
        except ProtocolError as exc:
            await ws.close(CLOSE_BAD_HELLO, str(exc)[:120])
            return None
        if token and not _token_ok(token, query_token or hello.token):
            await ws.close(CLOSE_UNAUTHORIZED, "token missing or wrong")
            return None
        if hello.protocol != PROTOCOL_VERSION:
            await ws.close(CLOSE_BAD_VERSION, f"protocol {PROTOCOL_VERSION} is supported")
            return None
        return hello

    async def _run_session(self, conn: Connection) -> None:
        session = asyncio.create_task(self._guarded(conn), name=f"session {conn.id}")
        reader = asyncio.create_task(self._read(conn), name=f"reader {conn.id}")
        await asyncio.wait({session, reader}, return_when=asyncio.FIRST_COMPLETED)
        if not reader.done():
            # The session ended on its own: deliver what it said last, say goodbye, stop reading.
            await conn.outbox.flush()
            await conn.ws.close()
            reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        if not session.done():
            # The client went away: the session gets `None` and a moment to wind down.
            with contextlib.suppress(asyncio.QueueFull):
                conn.inbox.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(session), 2.0)
            except TimeoutError:
                session.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await session

    async def _guarded(self, conn: Connection) -> None:
        try:
            await self.handler(conn)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("session %s failed", conn.id)
            conn.error("internal", "the session failed on the server; please reconnect")

    async def _read(self, conn: Connection) -> None:
        user_limit = _RateLimit(USER_MESSAGES_PER_10S, 10.0)
        all_limit = _RateLimit(MESSAGES_PER_SECOND, 1.0)
        try:
            async for raw in conn.ws:
                try:
                    message = self._parse(conn, raw, user_limit, all_limit)
                except ProtocolError as exc:
                    conn.error(exc.code, str(exc))
                    continue
                if message is None:
                    continue
                try:
                    conn.inbox.put_nowait(message)
                except asyncio.QueueFull:
                    conn.error("busy", "the server is behind on this session; message dropped")
        except ConnectionClosed:
            pass
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                conn.inbox.put_nowait(None)

    def _parse(
        self, conn: Connection, raw: str | bytes, user_limit: _RateLimit, all_limit: _RateLimit
    ) -> ClientMessage | None:
        now = time.monotonic()
        if isinstance(raw, bytes):
            mic = parse_binary_message(raw)
            if conn.mic_rate is None:
                raise ProtocolError("microphone audio before audio_start", "mic_not_started")
            if len(mic.pcm) > 2 * conn.mic_rate * MAX_MIC_SECONDS:
                raise ProtocolError("microphone frame longer than 1 s")
            # A microphone delivers audio in real time: more than that (plus 1 s of slack) is a flood that
            # would run the voice detector and recogniser for everyone else's CPU.
            conn.mic_samples += len(mic.pcm) // 2
            if conn.mic_samples > (now - conn.mic_started + MAX_MIC_SECONDS) * conn.mic_rate:
                conn.mic_samples -= len(mic.pcm) // 2
                raise ProtocolError("microphone audio faster than real time; dropped", "rate_limited")
            return mic
        if not all_limit.allow(now):
            raise ProtocolError("too many messages; slow down", "rate_limited")
        message = parse_text_message(raw)
        if isinstance(message, Hello):
            raise ProtocolError("hello was already received")
        if isinstance(message, UserText | Say | Record) and not user_limit.allow(now):
            raise ProtocolError(f"at most {USER_MESSAGES_PER_10S} messages per 10 s", "rate_limited")
        if isinstance(message, AudioStart):
            conn.mic_rate = message.sample_rate
            conn.mic_started, conn.mic_samples = now, 0
        elif isinstance(message, AudioStop):
            if conn.mic_rate is None:
                return None
            conn.mic_rate = None
        return message


def _token_ok(expected: str, given: str | None) -> bool:
    if given is None:
        return False
    try:
        return hmac.compare_digest(expected.encode(), given.encode())
    except UnicodeEncodeError:  # a lone surrogate from a hostile client
        return False


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def _file(path: Path | None) -> Response:
    if path is None or not path.is_file():
        return _json(HTTPStatus.NOT_FOUND, {"error": "no such file"})
    return _response(HTTPStatus.OK, path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream")


def _json(status: HTTPStatus, data: dict[str, Any]) -> Response:
    return _response(status, json.dumps(data).encode(), "application/json")
