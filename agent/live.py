"""Live sessions: the shared models, and the handler that turns a websocket connection into a conversation.

Models are heavy and shared (voices, Whisper, the prepared avatars, the LLM client or the local
LLM server); a session holds only its own state and takes them by reference. A conversation is
one session per connection; a livestream host's show is one session that every connection watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.llm import LLMClient
from agent.llm_local import LocalLLMServer, assemble_model
from agent.modes.prompt import persona_prefix
from agent.personas import Persona, create_mode, load_persona
from agent.renderers import create_renderer, prepare
from agent.session import ConversationSession, SessionOptions
from avatar.base import Renderer
from core.config import Config, resolve_path
from core.errors import UserError
from speech.asr import Transcriber
from speech.tts import TTSEngine
from streaming.clock import Clock, MonotonicClock
from streaming.media import FrameSink
from streaming.protocol import (
    PROTOCOL_VERSION,
    AudioStart,
    AudioStop,
    Interrupt,
    KeyframeRequest,
    MicAudio,
    Playback,
    Say,
    UserText,
)
from streaming.server import Connection
from streaming.video_codec import create_encoder

log = logging.getLogger(__name__)

LOCAL_FIRST_TOKEN_S = 30.0
WS_KEYFRAME_SECONDS = 10.0


@dataclass
class SharedModels:
    """Everything heavy, loaded once per process and shared by every session."""

    cfg: Config
    tts: TTSEngine
    llm: LLMClient | None
    local_llm: LocalLLMServer | None = None
    _transcriber: asyncio.Task[Transcriber] | None = None
    _avatars: dict[Path, object] = field(default_factory=dict)
    _voices: dict[tuple[str | None, str | None], TTSEngine] = field(default_factory=dict)

    @classmethod
    async def load(cls, cfg: Config, *, llm: bool = True, notices: list[str] | None = None) -> SharedModels:
        """Voice, avatar and LLM side by side; Whisper goes on loading in the background."""
        from speech.tts_select import check_tts_config, create_tts

        check_tts_config(cfg.tts)
        tts_task = asyncio.create_task(asyncio.to_thread(create_tts, cfg.tts))
        avatar_task = asyncio.create_task(asyncio.to_thread(prepare, cfg))
        local, client = await _start_llm(cfg) if llm else (None, None)
        try:
            tts = await tts_task
            prepared, avatar_notices = await avatar_task
        except BaseException:
            if local is not None:
                local.close()
            raise
        if notices is not None:
            notices.extend(avatar_notices)
        models = cls(cfg, tts, client, local)
        models._avatars[resolve_path(cfg.avatar.source).resolve()] = prepared
        models._voices[(None, None)] = tts
        models._transcriber = asyncio.create_task(asyncio.to_thread(Transcriber, cfg.asr))
        return models

    async def transcriber(self) -> Transcriber:
        assert self._transcriber is not None
        return await self._transcriber

    def renderer(self, persona: Persona | None, seed: int | None = None) -> Renderer:
        source = resolve_path(persona.avatar if persona and persona.avatar else self.cfg.avatar.source).resolve()
        prepared = self._avatars.get(source)
        if prepared is None:
            prepared, _ = prepare(self.cfg, source)
            self._avatars[source] = prepared
        return create_renderer(self.cfg, prepared, seed=seed)

    def voice(self, persona: Persona | None) -> TTSEngine:
        if persona is None or (persona.tts_engine is None and persona.voice is None):
            return self.tts
        key = (persona.tts_engine, persona.voice)
        if key not in self._voices:
            from speech.tts_select import create_tts

            update: dict[str, Any] = {"voice": persona.voice}
            if persona.tts_engine:
                update["engine"] = persona.tts_engine
            self._voices[key] = create_tts(self.cfg.tts.model_copy(update=update))
        return self._voices[key]

    async def aclose(self) -> None:
        if self._transcriber is not None:
            self._transcriber.cancel()
            with contextlib.suppress(BaseException):
                await self._transcriber
        for voice in set(self._voices.values()):
            await voice.aclose()
        if self.llm is not None:
            await self.llm.aclose()
        if self.local_llm is not None:
            self.local_llm.close()


async def _start_llm(cfg: Config) -> tuple[LocalLLMServer | None, LLMClient]:
    if not cfg.llm.uses_local_model:
        return None, LLMClient.from_config(cfg.llm)
    path = await asyncio.to_thread(assemble_model, cfg.llm.local_model, cfg.llm.cache_dir.expanduser())
    server = LocalLLMServer(
        path, name=cfg.llm.local_model, threads=cfg.llm.local_threads, context=cfg.llm.local_context
    )
    await server.start()
    label = f"the offline model {cfg.llm.local_model}"
    # A CPU model reads a turn's new prompt tokens (retrieved knowledge, memory) at ~100-150 tokens/s on a
    # busy 2-core machine: its first token may legitimately take longer than a cloud endpoint's.
    llm = cfg.llm.model_copy(update={"first_token_timeout": max(cfg.llm.first_token_timeout, LOCAL_FIRST_TOKEN_S)})
    return server, LLMClient.from_config(llm, base_url=server.base_url, model=cfg.llm.local_model, label=label)


class LiveAgent:
    """The server's session handler: one conversation per connection, or viewers of one show."""

    def __init__(self, models: SharedModels, *, clock: Clock | None = None, seed: int | None = None) -> None:
        self.models = models
        self.cfg = models.cfg
        self.clock = clock or MonotonicClock()
        self.seed = seed
        self.show: ConversationSession | None = None
        self._warmed: set[str] = set()
        self._show_task: asyncio.Task[None] | None = None

    def warm(self, persona: Persona) -> None:
        """Have the LLM read the persona's fixed prompt prefix now (once), so turns pay only for their own tokens."""
        if self.models.llm is None or persona.name in self._warmed:
            return
        self._warmed.add(persona.name)
        task = asyncio.create_task(self.models.llm.warm(persona_prefix(persona.system_prompt)))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a failed warm-up only costs latency

    def new_session(self, persona: Persona, name: str) -> ConversationSession:
        self.warm(persona)
        options = SessionOptions(
            barge_in=self.cfg.agent.barge_in,
            barge_in_seconds=self.cfg.agent.barge_in_ms / 1000,
            lead=self.cfg.server.lead_ms / 1000,
        )
        return ConversationSession(
            mode=create_mode(persona, llm_available=self.models.llm is not None),
            renderer=self.models.renderer(persona, self.seed),
            tts=self.models.voice(persona),
            llm=self.models.llm,
            vad=self.cfg.vad,
            options=options,
            clock=self.clock,
            name=name,
        )

    def start_show(self, persona: Persona, sinks: Sequence[FrameSink] = ()) -> ConversationSession:
        """The livestream host's one session: it runs whether or not anyone watches."""
        self.show = self.new_session(persona, "show")
        for sink in sinks:
            self.show.media.add_sink(sink)
        self._show_task = asyncio.create_task(self.show.run(), name="show")
        return self.show

    async def stop_show(self) -> None:
        if self.show is not None and self._show_task is not None:
            self.show.close()
            await self._show_task

    async def handle(self, conn: Connection) -> None:
        try:
            persona = load_persona(conn.hello.persona or self.cfg.agent.persona)
            if self.show is not None and persona.mode == "host":
                session, own = self.show, False
            else:
                session, own = self.new_session(persona, conn.id), True
        except UserError as exc:
            conn.error("bad_persona", str(exc))
            return
        renderer = session.media.renderer
        width, height = renderer.frame_size
        # A websocket is lossless and every reply opens with a keyframe: periodic ones (~40% of the bytes at
        # 2 s) only matter as a safety net.
        encoder = create_encoder(
            conn.hello.codec,
            width,
            height,
            renderer.fps,
            jpeg_quality=self.cfg.renderer.jpeg_quality,
            keyframe_seconds=WS_KEYFRAME_SECONDS,
        )
        conn.outbox.start_video(encoder, renderer.fps)
        conn.outbox.on_first_frame_sent = session.first_frame_sent
        conn.send_event(
            "ready",
            session=conn.id,
            protocol=PROTOCOL_VERSION,
            video={
                "fps": renderer.fps,
                "width": encoder.width,
                "height": encoder.height,
                "codec": encoder.codec,
                "codec_string": encoder.codec_string,
            },
            audio={"sample_rate": renderer.sample_rate, "channels": 1, "format": "s16le"},
            persona=persona.name,
            display_name=persona.display_name,
            mode=session.mode.name,
            lead_ms=round(session.media.lead * 1000),
        )
        session.attach(conn.outbox)
        runner = asyncio.create_task(session.run(), name=f"session {conn.id}") if own else None
        try:
            while (message := await conn.receive()) is not None:
                await self._dispatch(session, conn, message, own)
        finally:
            session.detach(conn.outbox)
            if runner is not None:
                session.close()
                await runner
            encoder.close()

    async def _dispatch(self, session: ConversationSession, conn: Connection, message: object, own: bool) -> None:
        if isinstance(message, UserText):
            await session.user_text(message.text, time.perf_counter())
        elif isinstance(message, Say):
            await session.say(message.text)
        elif isinstance(message, Interrupt):
            await session.interrupt("stop")
        elif isinstance(message, Playback):
            session.playback(message.turn, message.played_samples)
        elif isinstance(message, KeyframeRequest):
            conn.outbox.request_keyframe()
        elif isinstance(message, AudioStart):
            if not own:
                conn.error("no_microphone", "a live show takes typed questions, not the microphone")
                return
            session.transcriber = await self.models.transcriber()
            session.mic_start(message.sample_rate)
        elif isinstance(message, MicAudio):
            if own and not session.mic_audio(np.frombuffer(message.pcm, "<i2")):
                conn.error("busy", "speech recognition is behind; microphone audio dropped")
        elif isinstance(message, AudioStop):
            session.mic_stop()
