"""One live conversation: microphone and typed text in, a speaking avatar out, interruptible.

A session is self-contained: its media stream (renderer state and pacing loop), its mode (what to
say, with its memory), its current reply, its voice-activity detector. Heavy models (voice,
Whisper, the LLM client, the prepared avatar) are shared by reference. Viewers (websocket outboxes,
an RTMP push) attach to it: one for a conversation, many for a livestream host's show.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from agent.llm import LLMClient
from agent.modes.base import Generate, Mode, Say, Step
from agent.reply import Reply, ReplyMetrics, metrics_event
from avatar.base import Renderer
from core.config import VADConfig
from speech.asr import Transcriber, TurnTranscriber
from speech.text import HAN
from speech.tts import TTSEngine
from speech.vad import TurnDetector, UserPaused, UserStartedSpeaking, UserStoppedSpeaking
from streaming.clock import Clock, MonotonicClock
from streaming.media import FrameSink, MediaStream

log = logging.getLogger(__name__)
metrics_log = logging.getLogger("digital_human.metrics")

BargeIn = Literal["off", "stop", "voice"]
IDLE_CHECK_FRAMES = 5
"""The mode's idle policy is asked every 5 frames (0.2 s at 25 fps)."""
MIC_QUEUE = 64


class Viewer(FrameSink, Protocol):
    """A client watching the session: gets the frames and the events."""

    def send_event(self, kind: str, **fields: Any) -> None: ...


@dataclass
class SessionOptions:
    barge_in: BargeIn = "voice"
    """off: nothing interrupts; stop: only the Stop button; voice: also the user talking over the avatar."""
    barge_in_seconds: float = 0.5
    """Speech this long interrupts (a cough or a short "mm-hm" does not)."""
    lead: float = 0.16


class ConversationSession:
    def __init__(
        self,
        *,
        mode: Mode,
        renderer: Renderer,
        tts: TTSEngine,
        llm: LLMClient | None,
        transcriber: Transcriber | None = None,
        vad: VADConfig | None = None,
        options: SessionOptions | None = None,
        clock: Clock | None = None,
        name: str = "session",
    ) -> None:
        self.mode = mode
        self.tts = tts
        self.llm = llm
        self.transcriber = transcriber
        self.vad = vad or VADConfig()
        self.options = options or SessionOptions()
        self.clock = clock or MonotonicClock()
        self.name = name
        self.media = MediaStream(renderer, self.clock, lead=self.options.lead)
        self.media.on_first_frame = self._first_frame_drawn
        self.media.on_frame = self._on_frame
        self.viewers: list[Viewer] = []
        self.reply: Reply | None = None
        self.turns = 0
        self.last_metrics: dict[str, Any] | None = None
        self._state = "idle"
        self._progress: dict | None = None
        self._idle_since = 0
        """Pts at which the avatar last fell silent or the user last spoke: idle time is stream time."""
        self._played: tuple[int, float] | None = None
        self._detector: TurnDetector | None = None
        self._asr: TurnTranscriber | None = None
        self._mic: asyncio.Queue[np.ndarray | None] = asyncio.Queue(MIC_QUEUE)
        self._barge_start: float | None = None
        self.user_speech_started = 0
        """Times the voice detector heard the user start speaking (for tests and metrics)."""
        self._turn_lock = asyncio.Lock()
        """One reply at a time: cancelling the old one and starting the next must not interleave with another."""
        self._tasks: list[asyncio.Task[Any]] = []
        self._closed = asyncio.Event()

    # Viewers and events.

    def attach(self, viewer: Viewer) -> None:
        self.viewers.append(viewer)
        self.media.add_sink(viewer)
        viewer.send_event("state", state=self._state)
        if self._progress is not None:
            viewer.send_event("progress", **self._progress)

    def detach(self, viewer: Viewer) -> None:
        if viewer in self.viewers:
            self.viewers.remove(viewer)
        self.media.remove_sink(viewer)

    def broadcast(self, kind: str, **fields: Any) -> None:
        if kind == "state":
            self._state = fields["state"]
        for viewer in list(self.viewers):
            viewer.send_event(kind, **fields)

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self.broadcast("state", state=state)

    def _sync_progress(self) -> None:
        progress = self.mode.progress()
        if progress != self._progress:
            self._progress = progress
            if progress is not None:
                self.broadcast("progress", **progress)

    # Life cycle.

    async def run(self) -> None:
        """Pace the media and run the mode until `close()`."""
        for job in (self.media.run(), self._listen()):
            self._spawn(job)
        greeting = self.mode.greeting()
        self._sync_progress()
        if greeting:
            await self._start(greeting, "greeting", ReplyMetrics(time.perf_counter()))
        try:
            await self._closed.wait()
        finally:
            await self._shutdown()

    def close(self) -> None:
        self._closed.set()

    async def _shutdown(self) -> None:
        if self.reply is not None:
            await self.reply.cancel()
        self.media.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # Inputs.

    async def user_text(self, text: str, origin: float | None = None) -> None:
        """A typed message (or a transcript): the mode answers it as a new turn."""
        metrics = ReplyMetrics(time.perf_counter() if origin is None else origin)
        language = "zh" if HAN.search(text) else None
        await self._respond(text, language, metrics, "text")

    async def say(self, text: str) -> None:
        await self._start([Say(text)], "say", ReplyMetrics(time.perf_counter()))

    async def interrupt(self, reason: str = "stop") -> None:
        """The user's Stop: ends the current reply unless barge-in is configured off."""
        if self.options.barge_in != "off":
            async with self._turn_lock:
                await self._cancel_reply(reason)

    async def _cancel_reply(self, reason: str) -> None:
        """Stop the current reply at once; history keeps what the user heard of it. Hold `_turn_lock`."""
        reply = self.reply
        if reply is None:
            return
        self.reply = None
        await reply.cancel()
        self.broadcast("turn_end", turn=reply.turn, interrupted=True, pts=self.media.pts, reason=reason)
        heard = reply.heard_text(self._played_pts()) if reply.started else ""
        self._end(reply, heard)

    def playback(self, played_samples: int) -> None:
        """A client's report of how far it has played the session's audio."""
        if played_samples <= self.media.pts:
            self._played = (played_samples, self.clock.now())

    def mic_start(self, sample_rate: int) -> None:
        if self.transcriber is None:
            raise RuntimeError("this session has no speech recognition")
        self._detector = TurnDetector(self.vad, sample_rate)
        self._asr = TurnTranscriber(self.transcriber)

    @property
    def mic_open(self) -> bool:
        return self._detector is not None

    def mic_audio(self, pcm: np.ndarray) -> bool:
        """Queue microphone samples; False when the recogniser is too far behind (the chunk is dropped)."""
        if self._detector is None:
            return False
        try:
            self._mic.put_nowait(pcm)
        except asyncio.QueueFull:
            return False
        return True

    def mic_stop(self) -> None:
        if self._detector is not None:
            with contextlib.suppress(asyncio.QueueFull):
                self._mic.put_nowait(None)

    # Replies.

    async def _respond(self, text: str, language: str | None, metrics: ReplyMetrics, source: str) -> None:
        async with self._turn_lock:
            if not self.mode.user_interrupts and self.reply is not None:
                self.mode.on_user(text, language)  # queued (a viewer's question): the show goes on
                return
            await self._cancel_reply("new message")
            steps = self.mode.on_user(text, language)
            self._sync_progress()
            self._idle_since = self.media.pts
            self._begin(steps, source, metrics, language)

    async def _start(self, steps: list[Step], source: str, metrics: ReplyMetrics, language: str | None = None) -> None:
        async with self._turn_lock:
            await self._cancel_reply("new turn")
            self._begin(steps, source, metrics, language)

    def _begin(self, steps: list[Step], source: str, metrics: ReplyMetrics, language: str | None) -> None:
        if not steps:
            self._set_state("idle")
            return
        self.turns += 1
        reply = Reply(
            self.turns,
            steps,
            source,
            media=self.media,
            tts=self.tts,
            llm=self.llm,
            broadcast=self.broadcast,
            metrics=metrics,
            language=language,
        )
        self.reply = reply
        if isinstance(steps[0], Generate):
            self._set_state("thinking")
        task = reply.start()
        task.add_done_callback(lambda t: self._finished(reply, t))

    def _finished(self, reply: Reply, task: asyncio.Task[None]) -> None:
        if reply.interrupted or self.reply is not reply:
            return
        self.reply = None
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: reply %d failed: %s", self.name, reply.turn, task.exception())
            self.broadcast("error", code="reply_failed", message="the reply failed; please try again")
        self.broadcast("turn_end", turn=reply.turn, interrupted=False, pts=self.media.pts)
        self._end(reply, reply.spoken_text())

    def _end(self, reply: Reply, heard: str) -> None:
        self.mode.on_reply_done(heard, reply.interrupted)
        self._sync_progress()
        self._idle_since = self.media.pts
        self._set_state("listening" if self._detector is not None and self._detector.speaking else "idle")
        event = metrics_event(reply)
        self.last_metrics = event
        self.broadcast("metrics", **event)
        metrics_log.info(json.dumps({"session": self.name, **event}))

    def _first_frame_drawn(self, turn: int) -> None:
        if self.reply is not None and self.reply.turn == turn:
            self.reply.metrics.mark("first_frame_drawn_ms")

    def first_frame_sent(self, turn: int, at: float) -> None:
        """A viewer sent the first frame of `turn`: the end-to-end latency as the user sees it."""
        if self.reply is not None and self.reply.turn == turn:
            metrics = self.reply.metrics
            metrics.mark("end_to_end_ms", at)
            first_audio = metrics.values.get("tts_first_audio_ms")
            if first_audio is not None:
                metrics.set("frame_after_audio_ms", metrics.values["end_to_end_ms"] - first_audio)

    def _played_pts(self) -> int:
        """Where the client's playback is now: its last report moved on by the time since (never past what was sent)."""
        if self._played is None:
            return max(0, self.media.pts - int(self.media.lead * self.media.sample_rate))
        pts, at = self._played
        return min(self.media.pts, pts + int((self.clock.now() - at) * self.media.sample_rate))

    # A show's script runs on idle, measured on the stream's own timeline (what viewers experience).

    def _on_frame(self, pts: int) -> None:
        if (pts // self.media.samples_per_frame) % IDLE_CHECK_FRAMES:
            return
        if self.reply is not None or self._state == "listening" or self._turn_lock.locked():
            return
        steps = self.mode.on_idle((pts - self._idle_since) / self.media.sample_rate)
        if steps:
            source = "question" if any(isinstance(s, Generate) for s in steps) else "script"
            self._spawn(self._start(steps, source, ReplyMetrics(time.perf_counter())))

    # Listening.

    async def _listen(self) -> None:
        while True:
            pcm = await self._mic.get()
            detector = self._detector
            if detector is None:
                continue
            if pcm is None:
                events = await asyncio.to_thread(detector.flush)
            else:
                events = await asyncio.to_thread(detector.feed, pcm)
            now = time.perf_counter()
            for ev in events:
                self._on_turn_event(ev, detector, now)
            if pcm is None and self._detector is detector:
                self._detector = None  # unless audio_start has already installed the next one
            self._check_barge_in(detector)

    def _on_turn_event(self, ev: object, detector: TurnDetector, now: float) -> None:
        assert self._asr is not None
        if isinstance(ev, UserStartedSpeaking):
            self.user_speech_started += 1
            self._idle_since = self.media.pts
            if self.reply is not None and self.reply.started and self.options.barge_in == "voice":
                self._barge_start = ev.start
            elif self.reply is None:
                self._set_state("listening")
        elif isinstance(ev, UserPaused):
            self._asr.observe(ev)
        elif isinstance(ev, UserStoppedSpeaking):
            self._barge_start = None
            if self.reply is not None and self.reply.started:
                return  # a short sound over the reply ("mm-hm", a cough): not a turn
            # While the avatar is still thinking, the user may have rephrased: the new words are the turn.
            # The speech ended (detector.time - ev.end) seconds of stream ago: that is the turn's origin.
            origin = now - max(0.0, detector.time - ev.end)
            self._spawn(self._answer_voice(ev, origin, self._asr))

    def _check_barge_in(self, detector: TurnDetector) -> None:
        if self._barge_start is None or self.reply is None:
            return
        if detector.speaking and detector.speech_end - self._barge_start >= self.options.barge_in_seconds:
            self._barge_start = None
            self._spawn(self.interrupt("voice"))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks = [t for t in self._tasks if not t.done()]
        task = asyncio.create_task(coro)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """A background job that crashed ends the session loudly (a dead microphone or a frozen show would not)."""
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: %s failed: %r", self.name, task.get_coro().__qualname__, task.exception())
            self.broadcast("error", code="internal", message="the session failed on the server; please reconnect")
            self.close()

    async def _answer_voice(self, turn: UserStoppedSpeaking, origin: float, asr: TurnTranscriber) -> None:
        self._set_state("thinking")
        metrics = ReplyMetrics(origin)
        metrics.mark("end_of_utterance_ms")
        started = time.perf_counter()
        transcript = await asr.finish(turn)
        metrics.set("asr_ms", (time.perf_counter() - started) * 1000)
        self.broadcast("transcript", text=transcript.text, final=True, language=transcript.language)
        if not transcript.text:
            self._set_state("idle")
            return
        await self._respond(transcript.text, transcript.language, metrics, "voice")
