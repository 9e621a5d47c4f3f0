"""Protocol v1 of the live session (see PROTOCOL.md): message parsing, media framing, close codes.

Parsing is strict and total: anything a client sends either becomes one of the typed messages
below or a `ProtocolError` whose message can be shown to the client as-is, so a malformed or
hostile message can never raise anything else inside the server.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

PROTOCOL_VERSION = 1
MEDIA_HEADER = struct.Struct(">BIQ")
"""kind u8, turn u32, pts u64 (audio samples since the session started): 13 bytes."""
KIND_VIDEO = 1
KIND_AUDIO = 2
KIND_MIC = 3
VIDEO_FLAG_KEY = 1
CODECS = ("h264", "jpeg")
MAX_TEXT_CHARS = 2000
MAX_MIC_SECONDS = 1.0

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_SLOW = 1008
CLOSE_BAD_HELLO = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_HELLO_TIMEOUT = 4408
CLOSE_BAD_VERSION = 4426
CLOSE_FULL = 4503


class ProtocolError(Exception):
    """A client message that breaks the protocol; `code` is the `error` event's code."""

    def __init__(self, message: str, code: str = "bad_message") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Hello:
    protocol: int
    codecs: tuple[str, ...]
    persona: str | None = None
    token: str | None = None

    @property
    def codec(self) -> str:
        """The first codec both sides support, in the client's order; JPEG when it names none."""
        return next((c for c in self.codecs if c in CODECS), "jpeg")


@dataclass(frozen=True, slots=True)
class UserText:
    text: str


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Record:
    """Record the avatar saying `text` with the high-quality offline engine (LatentSync); a file, later."""

    text: str


@dataclass(frozen=True, slots=True)
class AudioStart:
    sample_rate: int


@dataclass(frozen=True, slots=True)
class AudioStop:
    pass


@dataclass(frozen=True, slots=True)
class Interrupt:
    pass


@dataclass(frozen=True, slots=True)
class Playback:
    turn: int
    played_samples: int


@dataclass(frozen=True, slots=True)
class KeyframeRequest:
    pass


@dataclass(frozen=True, slots=True)
class MicAudio:
    """Microphone PCM16 mono at the rate given by `audio_start`."""

    pcm: bytes
    pts: int


ClientMessage = (
    Hello | UserText | Say | Record | AudioStart | AudioStop | Interrupt | Playback | KeyframeRequest | MicAudio
)


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if name not in data:
        if default is ...:
            raise ProtocolError(f"'{data.get('type')}' needs a '{name}' field")
        return default
    value = data[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProtocolError(f"'{data.get('type')}' field '{name}' has the wrong type")
    return value


def _text(data: dict[str, Any]) -> str:
    text = _field(data, "text", str).strip()
    if not text:
        raise ProtocolError("the text is empty", "empty_text")
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError(f"the text is longer than {MAX_TEXT_CHARS} characters", "too_long")
    return text


def _non_negative(data: dict[str, Any], name: str) -> int:
    value = _field(data, name, int)
    if value < 0 or value >= 2**63:
        raise ProtocolError(f"'{data.get('type')}' field '{name}' is out of range")
    return value


def parse_text_message(raw: str) -> ClientMessage:
    """One JSON message from the client."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError("the message is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("a message must be a JSON object with a 'type'")
    kind = data["type"]
    if kind == "hello":
        codecs = _field(data, "codecs", list, [])
        persona = _field(data, "persona", (str, type(None)), None)
        token = _field(data, "token", (str, type(None)), None)
        protocol = _field(data, "protocol", int)
        return Hello(protocol, tuple(c for c in codecs if isinstance(c, str)), persona or None, token)
    if kind == "text":
        return UserText(_text(data))
    if kind == "say":
        return Say(_text(data))
    if kind == "record":
        return Record(_text(data))
    if kind == "audio_start":
        rate = _field(data, "sample_rate", int)
        if not 8000 <= rate <= 48000:
            raise ProtocolError(f"microphone sample rate {rate} Hz is not supported (8000-48000)")
        return AudioStart(rate)
    if kind == "audio_stop":
        return AudioStop()
    if kind == "interrupt":
        return Interrupt()
    if kind == "playback":
        return Playback(_non_negative(data, "turn"), _non_negative(data, "played_samples"))
    if kind == "keyframe":
        return KeyframeRequest()
    raise ProtocolError(f"unknown message type {kind!r}")


def parse_binary_message(data: bytes) -> MicAudio:
    """A binary message from the client: only microphone frames travel that way."""
    if len(data) < MEDIA_HEADER.size:
        raise ProtocolError("binary message shorter than its 13-byte header")
    kind, _turn, pts = MEDIA_HEADER.unpack_from(data)
    if kind != KIND_MIC:
        raise ProtocolError(f"clients may only send microphone frames (kind {KIND_MIC}), not kind {kind}")
    payload = data[MEDIA_HEADER.size :]
    if len(payload) % 2:
        raise ProtocolError("microphone PCM16 payload has an odd number of bytes")
    return MicAudio(payload, pts)


def pack_media(kind: int, turn: int, pts: int, payload: bytes) -> bytes:
    return MEDIA_HEADER.pack(kind, turn, pts) + payload


def unpack_media(data: bytes) -> tuple[int, int, int, bytes]:
    """(kind, turn, pts, payload) of a binary message; for clients and tests."""
    kind, turn, pts = MEDIA_HEADER.unpack_from(data)
    return kind, turn, pts, data[MEDIA_HEADER.size :]


def event(kind: str, **fields: Any) -> str:
    """A server → client JSON message."""
    return json.dumps({"type": kind, **fields}, ensure_ascii=False, separators=(",", ":"))
