"""The conversation session with real components: the CPU renderer, espeak-ng, Whisper base on recorded
speech, Silero VAD, the real modes and personas. The LLM is the scripted OpenAI-compatible server
(a contract test of the streaming format). A `Recorder` is a plain sink: it keeps what a client gets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.llm import LLMClient
from agent.personas import create_mode, load_persona
from agent.session import ConversationSession
from avatar.prepare import prepare_avatar
from avatar.realtime import RealtimeRenderer
from core.audio import read_audio_file
from core.config import ASRConfig, resolve_path
from core.events import Frame
from speech.asr import Transcriber
from speech.tts_select import create_tts
from streaming.clock import Clock, MonotonicClock, VirtualClock
from tests.live_helpers import live_config
from tests.llm_server import Reply, ScriptedOpenAIServer

LONG_REPLY = tuple(f"This is sentence number {n} of a long story about the sea. " for n in range(1, 12))


@dataclass
class Recorder:
    clock: Clock
    events: list[dict[str, Any]] = field(default_factory=list)
    frames: list[tuple[int, int, bool]] = field(default_factory=list)

    def write(self, frame: Frame, turn: int, pts: int) -> None:
        self.frames.append((turn, pts, bool(np.any(frame.audio))))

    def drop_turn(self, turn: int) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def send_event(self, kind: str, **fields: Any) -> None:
        self.events.append({"type": kind, "at": self.clock.now(), **fields})

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind and all(e.get(k) == v for k, v in match.items())]


async def until(check: Any, timeout: float = 60.0) -> Any:
    """Poll until truthy; the timeout only catches a hang."""
    for _ in range(int(timeout / 0.02)):
        value = check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting")


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("avatars")
    cfg = live_config(cache)
    prepared, _ = prepare_avatar(resolve_path(cfg.avatar.source), cfg.avatar.cache_dir)
    return cfg, prepared, create_tts(cfg.tts)


@pytest.fixture(scope="module")
def transcriber(model_cache: Path) -> Transcriber:
    return Transcriber(ASRConfig(cache_dir=model_cache))


@pytest.fixture
async def llm():
    async with ScriptedOpenAIServer() as server:
        client = LLMClient(base_url=server.url, api_key=None, model="test", first_token_timeout=3, retries=0)
        yield server, client
        await client.aclose()


def make_session(parts, persona: str, llm_client: LLMClient | None, clock: Clock, **kw: Any) -> ConversationSession:
    cfg, prepared, tts = parts
    mode = create_mode(load_persona(persona), llm_available=llm_client is not None)
    return ConversationSession(
        mode=mode,
        renderer=RealtimeRenderer(prepared, fps=25, seed=3),
        tts=tts,
        llm=llm_client,
        vad=cfg.vad,
        clock=clock,
        **kw,
    )


@contextlib.asynccontextmanager
async def running(
    parts, persona: str, llm_client: LLMClient | None, clock: Clock, transcriber: Transcriber | None = None
) -> AsyncIterator[tuple[ConversationSession, Recorder]]:
    """A session running with a recording viewer attached; closed (and awaited) on exit."""
    session = make_session(parts, persona, llm_client, clock)
    session.transcriber = transcriber
    viewer = Recorder(clock)
    session.attach(viewer)
    runner = asyncio.create_task(session.run())
    try:
        yield session, viewer
    finally:
        session.close()
        await runner


async def feed_mic(session: ConversationSession, pcm: np.ndarray, rate: int = 16_000, realtime: bool = True) -> None:
    step = rate // 10
    for i in range(0, len(pcm), step):
        assert session.mic_audio(pcm[i : i + step])
        if realtime:
            await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def fox() -> np.ndarray:
    speech = read_audio_file(Path(__file__).parent / "data" / "audio" / "en" / "quick_brown_fox.wav", 16_000)
    return np.concatenate([np.zeros(8000, np.int16), speech, np.zeros(16000, np.int16)])


async def test_voice_barge_in_stops_the_reply_and_memory_keeps_only_what_was_heard(parts, llm, transcriber, fox):
    server, client = llm
    server.queue(Reply(pieces=LONG_REPLY), Reply(pieces=("A fox, how nice.",)))
    async with running(parts, str(parts[0].agent.persona), client, MonotonicClock(), transcriber) as (session, viewer):
        await session.user_text("Tell me a long story.")
        start = (await until(lambda: viewer.of("turn_start")))[0]
        await until(lambda: sum(t == start["turn"] for t, _, _ in viewer.frames) >= 50)  # 2 s of the reply
        heard_to = viewer.frames[-1][1] - 4 * 960  # the client is 4 frames behind what was sent
        session.playback(heard_to)
        session.mic_start(16_000)
        await feed_mic(session, fox)
        end = (await until(lambda: viewer.of("turn_end", turn=start["turn"])))[0]
        assert end["interrupted"] is True and end["reason"] == "voice"
        transcript = (await until(lambda: viewer.of("transcript")))[0]
        assert "quick brown fox" in transcript["text"].lower()
        await until(lambda: len(server.requests) == 2 and viewer.of("turn_end", turn=start["turn"] + 1))
        history = server.requests[1]["messages"]
        assistant = [m["content"] for m in history if m["role"] == "assistant"]
        assert len(assistant) == 1 and "interrupted" in assistant[0].lower()
        full = "".join(LONG_REPLY)
        said = assistant[0].split("[")[0].strip()
        assert said and full.startswith(said[:40]) and len(said) < len(full) / 2
        assert history[-1] == {"role": "user", "content": transcript["text"]}


async def test_a_short_sound_over_the_reply_does_not_interrupt(parts, transcriber, fox):
    async with running(parts, str(parts[0].agent.persona), None, MonotonicClock(), transcriber) as (session, viewer):
        await session.say("I will keep talking for a while, because a short sound should not stop me at all.")
        await until(lambda: viewer.of("turn_start"))
        session.mic_start(16_000)
        onset = int(np.argmax(np.abs(fox) > 2000))
        blip = np.concatenate(
            [np.zeros(4000, np.int16), fox[onset : onset + 4000], np.zeros(12000, np.int16)]
        )  # 0.25 s
        await feed_mic(session, blip)
        end = (await until(lambda: viewer.of("turn_end")))[0]
        assert session.user_speech_started == 1  # the detector did hear the sound
        assert end["interrupted"] is False
        assert not viewer.of("transcript")


async def test_spoken_question_is_transcribed_and_answered(parts, llm, transcriber, fox):
    server, client = llm
    server.queue(Reply(pieces=("Foxes are quick indeed.",)))
    async with running(parts, str(parts[0].agent.persona), client, MonotonicClock(), transcriber) as (session, viewer):
        session.mic_start(16_000)
        await feed_mic(session, fox)
        await until(lambda: viewer.of("turn_end"))
        states = [e["state"] for e in viewer.of("state")]
        assert states[:4] == ["idle", "listening", "thinking", "speaking"]
        metrics = (await until(lambda: viewer.of("metrics")))[0]
        assert metrics["source"] == "voice" and metrics["asr_ms"] > 0
        assert metrics["end_of_utterance_ms"] >= 400  # the VAD waits for 500 ms of silence (in 32 ms frames)


async def test_host_reads_the_script_with_idle_between_and_answers_a_queued_question(parts, llm):
    server, client = llm
    server.queue(Reply(pieces=("A comet is a ball of ice and dust.",)))
    async with running(parts, "host", client, VirtualClock()) as (session, viewer):
        await until(lambda: viewer.of("turn_start"))
        session.mode.ask("What is a comet?", "viewer")
        await until(lambda: len(viewer.of("turn_end")) >= 4, timeout=120)
        starts, ends = viewer.of("turn_start"), viewer.of("turn_end")
        assert [s["source"] for s in starts[:4]] == ["script", "question", "script", "script"]
        assert not any(e["interrupted"] for e in ends[:4])
        for end, nxt in zip(ends[:3], starts[1:4], strict=True):
            assert nxt["pts"] - end["pts"] >= 1.5 * 24_000  # the configured gap, on the stream's timeline
        assert "comet" in server.requests[0]["messages"][-1]["content"].lower()
        assert session.media.reanchors == 0  # virtual time followed the stream exactly


async def test_tutor_advances_on_right_answers_and_re_explains_a_wrong_one(parts, llm):
    server, client = llm
    server.queue(Reply(pieces=("Let me explain it more simply. What is it called?",)))
    async with running(parts, "tutor", client, VirtualClock()) as (session, viewer):

        async def answer(text: str) -> dict[str, Any]:
            done = len(viewer.of("turn_end"))
            await session.user_text(text)
            await until(lambda: len(viewer.of("turn_end")) > done, timeout=120)
            return viewer.of("progress")[-1]

        await until(lambda: viewer.of("turn_end"), timeout=120)  # the greeting: intro, step 1, question
        assert viewer.of("progress")[-1]["step"] == 1
        wrong = await answer("I think it is called melting.")
        assert wrong["step"] == 1 and len(server.requests) == 1  # re-explained by the LLM, same step
        assert (await answer("It is evaporation."))["step"] == 2
        assert (await answer("Clouds form, and that is condensation."))["step"] == 3
        last = await answer("Precipitation!")
        assert last["status"] == "done"


async def test_a_reply_cues_its_expressions_in_time_with_its_speech(parts, llm):
    """The agent thinks (gaze away) before speaking, smiles at its greeting and raises its brows at its question;
    the cues reach the real renderer between its speech, and the smile shows in the frames."""
    server, client = llm
    server.queue(Reply(pieces=("Hello there! ", "Nimbus measures wind and rain. ", "Shall I tell you the price?")))
    cues: list[tuple[str, float | None, int]] = []
    extras: list[tuple[int, dict[str, float]]] = []
    async with running(parts, str(parts[0].agent.persona), client, MonotonicClock()) as (session, viewer):
        renderer = session.media.renderer
        real_cue = renderer.cue

        def spy(expression: Any, intensity: float = 1.0, at: float | None = None, duration: float | None = None):
            cues.append((str(expression), at, renderer.queued_samples))
            real_cue(expression, intensity, at, duration)

        renderer.cue = spy  # type: ignore[method-assign]
        real_write = viewer.write

        def write(frame: Frame, turn: int, pts: int) -> None:
            extras.append((turn, dict(frame.extras)))
            real_write(frame, turn, pts)

        viewer.write = write  # type: ignore[method-assign]
        await session.user_text("Hi, what does Nimbus measure?")
        await until(lambda: viewer.of("turn_end"), timeout=120)
    assert [c[0] for c in cues] == ["thinking", "smile", "raised_brows"]
    thinking, smile, brows = cues
    assert thinking[1] is None and smile[1] == 0.0 and brows[1] is not None and brows[1] < 0
    assert brows[2] > smile[2], "the question's brows come after its speech was fed"
    turn = viewer.of("turn_end")[0]["turn"]
    first = next(i for i, (t, _) in enumerate(extras) if t == turn)
    spoken = [e for t, e in extras if t == turn]
    assert max(e["smile"] for e in spoken[: len(spoken) // 3]) > 0.3, "the greeting smiles"
    # The glance starts on the frame after the cue and holds ~2 s: a fast LLM may already be speaking by then.
    assert any(abs(e["gaze_x"]) > 0.1 for _, e in extras[: first + 40]), "it glances away while the LLM thinks"
