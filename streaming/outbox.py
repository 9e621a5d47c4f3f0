"""Everything the server sends one client, in order: JSON events and the encoded A/V stream.

One sender task per connection, fed by a queue, so an event such as `turn_end` can never overtake
the media sent before it, and dropping a turn's queued frames before its `turn_end` goes out
guarantees that nothing of an interrupted turn follows it. Encoding runs in a worker thread.

Back-pressure: when a client reads slower than the stream is produced, the queue grows; frames
that are not the newest lose their picture (encoded frames are never dropped, so H.264 stays
decodable) and always keep their audio. A client too slow even for audio is disconnected
instead of letting its queue grow without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from core.events import Frame
from streaming.protocol import (
    CLOSE_TOO_SLOW,
    KIND_AUDIO,
    KIND_VIDEO,
    VIDEO_FLAG_KEY,
    event,
    pack_media,
)
from streaming.video_codec import VideoEncoder

log = logging.getLogger(__name__)

VIDEO_BACKLOG_FRAMES = 3
"""Frames waiting behind this one: more and this one is sent as audio only."""
MAX_BACKLOG_SECONDS = 5.0
"""A client this far behind on audio alone is disconnected."""


@dataclass(slots=True)
class _Media:
    frame: Frame
    turn: int
    pts: int


class Outbox:
    """Implements `streaming.media.FrameSink` for one websocket client."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.fps = 25
        self.encoder: VideoEncoder | None = None
        """Owned from `start_video` on: closed when the sender stops, never while it may be encoding."""
        self.on_first_frame_sent: Callable[[int, float], None] | None = None
        """Called with (turn, perf_counter time) when a turn's first frame has been sent."""
        self._queue: deque[_Media | str] = deque()
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._dropped = 0
        """Every turn up to this one has been dropped or is over (turns only ever increase)."""
        self._first_sent = 0
        self._want_key = True
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self.frames_sent = 0
        self.video_dropped = 0
        self.bytes_sent = 0

    def start_video(self, encoder: VideoEncoder, fps: int) -> None:
        self.encoder = encoder
        self.fps = fps
        self._want_key = True

    def _put(self, item: _Media | str) -> None:
        self._queue.append(item)
        self._empty.clear()
        self._wake.set()

    def send_event(self, kind: str, **fields: Any) -> None:
        if not self._closed:
            self._put(event(kind, **fields))

    def write(self, frame: Frame, turn: int, pts: int) -> None:
        if self._closed or self.encoder is None:
            return
        self._put(_Media(frame, turn, pts))
        if len(self._queue) > MAX_BACKLOG_SECONDS * self.fps:
            log.warning("client too slow even for audio: disconnecting")
            self._closed = True
            self._queue.clear()
            self._closing = asyncio.ensure_future(self.ws.close(CLOSE_TOO_SLOW, "client too slow"))

    def drop_turn(self, turn: int) -> None:
        """Forget what is queued of `turn`: its pts are skipped, and the `turn_end` that follows says why."""
        self._dropped = max(self._dropped, turn)
        self._queue = deque(m for m in self._queue if not (isinstance(m, _Media) and m.turn == turn))

    def request_keyframe(self) -> None:
        self._want_key = True

    async def flush(self, timeout: float = 2.0) -> None:
        """Until everything queued has been sent (e.g. a last error before the server closes)."""
        if self._queue and not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), timeout)

    async def aclose(self) -> None:
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        """Send until the connection closes; returns quietly when the client vanishes."""
        try:
            while True:
                while not self._queue:
                    self._empty.set()
                    if self._closed:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                item = self._queue.popleft()
                if isinstance(item, str):
                    await self.ws.send(item)
                    self.bytes_sent += len(item)
                else:
                    await self._send_media(item)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("sending to a client failed")
        finally:
            self._closed = True
            if self.encoder is not None:
                self.encoder.close()

    async def _send_media(self, item: _Media) -> None:
        assert self.encoder is not None
        backlog = sum(1 for m in self._queue if isinstance(m, _Media))
        new_turn = item.turn > self._first_sent
        messages: list[bytes] = []
        if backlog < VIDEO_BACKLOG_FRAMES or new_turn:
            key = self._want_key or new_turn
            encoded = await asyncio.to_thread(self.encoder.encode, item.frame.image, keyframe=key)
            self._want_key = False
            if item.turn and item.turn <= self._dropped:
                # Interrupted while it was being encoded: not sent, so the next picture must not refer to it.
                self._want_key = True
                return
            flags = VIDEO_FLAG_KEY if encoded.keyframe else 0
            messages.append(pack_media(KIND_VIDEO, item.turn, item.pts, bytes([flags]) + encoded.data))
        else:
            self.video_dropped += 1
        messages.append(pack_media(KIND_AUDIO, item.turn, item.pts, item.frame.audio.astype("<i2").tobytes()))
        for m in messages:
            await self.ws.send(m)
            self.bytes_sent += len(m)
        self.frames_sent += 1
        if new_turn:
            self._first_sent = item.turn
            if self.on_first_frame_sent is not None:
                self.on_first_frame_sent(item.turn, time.perf_counter())
