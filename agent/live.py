"""Live sessions: the shared models, and the handler that turns a websocket connection into a conversation.

Models are heavy and shared (voices, Whisper, the prepared avatars, the LLM client or the local
LLM server); a session holds only its own state and takes them by reference. A conversation is
one session per connection; a livestream host's show is one session that every connection watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.llm import LLMClient
from agent.llm_local import open_llm
from agent.modes.prompt import persona_prefix
from agent.personas import Persona, create_mode, list_personas, load_persona
from agent.recordings import Recordings
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
    Record,
    Say,
    UserText,
)
from streaming.server import Connection
from streaming.video_codec import create_encoder

log = logging.getLogger(__name__)

LOCAL_FIRST_TOKEN_S = 30.0
WS_KEYFRAME_SECONDS = 10.0
PERSONA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class SharedModels:
    """Everything heavy, loaded once per process and shared by every session.

    Loading happens in worker threads, once per key (an avatar file, a voice): a session that needs a new
    one waits for it without freezing the other sessions' streams.
    """

    def __init__(self, cfg: Config, tts: TTSEngine, llm: LLMClient | None, avatar: Path | None = None) -> None:
        self.cfg = cfg
        self.tts = tts
        self.llm = llm
        self.avatar = avatar
        """The user's own avatar (`--avatar`): it wins over the personas' pictures."""
        self.stack = contextlib.AsyncExitStack()
        self._transcriber: asyncio.Future[Transcriber] | None = None
        self._avatars: dict[Path, asyncio.Future[Any]] = {}
        self._voices: dict[tuple[str | None, str | None], asyncio.Future[TTSEngine]] = {}

    @classmethod
    async def load(
        cls, cfg: Config, *, avatar: Path | None = None, notices: list[str] | None = None, with_llm: bool = True
    ) -> SharedModels:
        """Voice, avatar and LLM side by side; Whisper goes on loading in the background."""
        from speech.tts_select import check_tts_config, create_tts

        check_tts_config(cfg.tts)
        tts_task = asyncio.ensure_future(asyncio.to_thread(create_tts, cfg.tts))
        avatar_task = asyncio.ensure_future(asyncio.to_thread(prepare, cfg, avatar))
        stack = contextlib.AsyncExitStack()
        try:
            llm_cfg = cfg.llm
            if llm_cfg.uses_local_model:
                # A CPU model reads a turn's new prompt tokens (retrieved knowledge, memory) at ~100-150 tokens/s
                # on a busy 2-core machine: its first token may take longer than a cloud endpoint's.
                timeout = max(llm_cfg.first_token_timeout, LOCAL_FIRST_TOKEN_S)
                llm_cfg = llm_cfg.model_copy(update={"first_token_timeout": timeout})
            llm = await stack.enter_async_context(open_llm(llm_cfg)) if with_llm else None
            tts = await tts_task
            prepared, avatar_notices = await avatar_task
        except BaseException:
            for task in (tts_task, avatar_task):
                task.cancel()
            await stack.aclose()
            raise
        if notices is not None:
            notices.extend(avatar_notices)
        models = cls(cfg, tts, llm, avatar)
        models.stack = stack
        models._avatars[models._avatar_path(None)] = _done((prepared, avatar_notices))
        models._voices[(None, None)] = _done(tts)
        models._transcriber = asyncio.ensure_future(asyncio.to_thread(Transcriber, cfg.asr))
        return models

    async def transcriber(self) -> Transcriber:
        if self._transcriber is None:
            raise UserError("speech recognition is not available in this server")
        return await asyncio.shield(self._transcriber)

    def _avatar_path(self, persona: Persona | None) -> Path:
        chosen = self.avatar or (persona.avatar if persona and persona.avatar else None) or self.cfg.avatar.source
        return resolve_path(chosen).resolve()

    async def renderer(self, persona: Persona | None, seed: int | None = None) -> Renderer:
        source = self._avatar_path(persona)
        if source not in self._avatars:
            self._avatars[source] = asyncio.ensure_future(asyncio.to_thread(prepare, self.cfg, source))
        try:
            prepared, _ = await asyncio.shield(self._avatars[source])
        except UserError:
            del self._avatars[source]  # a bad picture is not cached: fixing the file must be enough
            raise
        return create_renderer(self.cfg, prepared, seed=seed)

    async def voice(self, persona: Persona | None) -> TTSEngine:
        if persona is None or (persona.tts_engine is None and persona.voice is None):
            return self.tts
        key = (persona.tts_engine, persona.voice)
        if key not in self._voices:
            from speech.tts_select import create_tts

            update: dict[str, Any] = {"voice": persona.voice}
            if persona.tts_engine:
                update["engine"] = persona.tts_engine
            self._voices[key] = asyncio.ensure_future(
                asyncio.to_thread(create_tts, self.cfg.tts.model_copy(update=update))
            )
        try:
            return await asyncio.shield(self._voices[key])
        except UserError:
            del self._voices[key]
            raise

    async def aclose(self) -> None:
        if self._transcriber is not None:
            self._transcriber.cancel()
        for future in self._voices.values():
            if future.done() and not future.cancelled() and future.exception() is None:
                await future.result().aclose()
        await self.stack.aclose()


def _done(value: Any) -> asyncio.Future[Any]:
    future = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


class LiveAgent:
    """The server's session handler: one conversation per connection, or viewers of one show."""

    def __init__(
        self,
        models: SharedModels,
        *,
        clock: Clock | None = None,
        seed: int | None = None,
        recordings: Recordings | None = None,
    ) -> None:
        self.models = models
        self.recordings = recordings
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

    async def new_session(self, persona: Persona, name: str) -> ConversationSession:
        self.warm(persona)
        options = SessionOptions(
            barge_in=self.cfg.agent.barge_in,
            barge_in_seconds=self.cfg.agent.barge_in_ms / 1000,
            lead=self.cfg.server.lead_ms / 1000,
        )
        return ConversationSession(
            mode=create_mode(persona, llm_available=self.models.llm is not None),
            renderer=await self.models.renderer(persona, self.seed),
            tts=await self.models.voice(persona),
            llm=self.models.llm,
            vad=self.cfg.vad,
            options=options,
            clock=self.clock,
            name=name,
        )

    async def start_show(self, persona: Persona, sinks: Sequence[FrameSink] = ()) -> ConversationSession:
        """The livestream host's one session: it runs whether or not anyone watches."""
        self.show = await self.new_session(persona, "show")
        for sink in sinks:
            self.show.media.add_sink(sink)
        self._show_task = asyncio.create_task(self.show.run(), name="show")
        return self.show

    async def stop_show(self) -> None:
        if self.show is not None and self._show_task is not None:
            self.show.close()
            await self._show_task

    def _persona(self, requested: str | None) -> Persona:
        """A client may pick one of the installed personas by name; files are for the operator's config."""
        if requested is None:
            return load_persona(self.cfg.agent.persona)
        if not PERSONA_NAME.fullmatch(requested) or requested not in list_personas():
            raise UserError(f"no persona named {requested[:40]!r}; available: {', '.join(list_personas())}")
        return load_persona(requested)

    async def handle(self, conn: Connection) -> None:
        try:
            persona = self._persona(conn.hello.persona)
            if self.show is not None and persona.mode == "host":
                session, own = self.show, False
            else:
                session, own = await self.new_session(persona, conn.id), True
        except UserError as exc:
            conn.error("bad_persona", str(exc))
            return
        renderer = session.media.renderer
        width, height = renderer.frame_size
        # A websocket is lossless and every reply opens with a keyframe: periodic ones (~40% of the bytes at
        # 2 s) only matter as a safety net. The outbox owns the encoder from here on.
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
        mic: asyncio.Task[None] | None = None
        followers: set[asyncio.Task[None]] = set()
        try:
            while (message := await conn.receive()) is not None:
                if isinstance(message, AudioStart) and own:
                    # Whisper may still be loading: the other messages (Stop, text) must not wait for it.
                    mic = asyncio.create_task(self._open_mic(session, conn, message.sample_rate))
                elif isinstance(message, Record) and own:
                    if follower := await self._record(conn, persona, message.text):
                        followers.add(follower)
                        follower.add_done_callback(followers.discard)
                else:
                    await self._dispatch(session, conn, message, own)
        finally:
            session.detach(conn.outbox)
            for task in [mic, *followers]:
                if task is not None:
                    task.cancel()
            if runner is not None:
                session.close()
                await runner

    async def _record(self, conn: Connection, persona: Persona, text: str) -> asyncio.Task[None] | None:
        """Queue a recorded reply in the persona's voice and avatar; the client hears of it until it is ready.

        The recording goes on if the client leaves: its file stays fetchable at the URL it was given.
        """
        if self.recordings is None:
            conn.error("record_unavailable", "this server does not record replies")
            return None
        cfg = self.cfg
        if persona.tts_engine or persona.voice:
            update = {"voice": persona.voice} | ({"engine": persona.tts_engine} if persona.tts_engine else {})
            cfg = cfg.model_copy(update={"tts": cfg.tts.model_copy(update=update)})
        try:
            job = await asyncio.to_thread(self.recordings.request, cfg, self.models._avatar_path(persona), text)
        except UserError as exc:
            conn.error("record_refused", str(exc))
            return None
        conn.send_event("record_queued", job=job.id)
        return asyncio.create_task(self.recordings.follow(job.id, conn.send_event))

    async def _open_mic(self, session: ConversationSession, conn: Connection, sample_rate: int) -> None:
        try:
            session.transcriber = await self.models.transcriber()
        except Exception as exc:
            log.error("speech recognition unavailable: %r", exc)
            conn.error("asr_unavailable", "speech recognition failed to load on the server; type instead")
            return
        session.mic_start(sample_rate)

    async def _dispatch(self, session: ConversationSession, conn: Connection, message: object, own: bool) -> None:
        if isinstance(message, UserText):
            await session.user_text(message.text, time.perf_counter())
        elif isinstance(message, Playback):
            session.playback(message.played_samples)
        elif isinstance(message, KeyframeRequest):
            conn.outbox.request_keyframe()
        elif not own:
            # A show's viewers ask questions; only its operator (the host command) speaks or stops it.
            conn.error("operator_only", "viewers of a show can send questions only")
        elif isinstance(message, Say):
            await session.say(message.text)
        elif isinstance(message, Interrupt):
            await session.interrupt("stop")
        elif isinstance(message, MicAudio):
            if session.mic_open and not session.mic_audio(np.frombuffer(message.pcm, "<i2")):
                conn.error("busy", "speech recognition is behind; microphone audio dropped")
        elif isinstance(message, AudioStop):
            session.mic_stop()
