"""One reply ("turn"): steps → sentences → speech → the session's media stream, as one cancellable object.

The LLM writes into a small bounded queue of sentences while the voice speaks the previous one, so
the avatar starts talking after the first sentence, not the whole answer; the first sentence even goes to
the voice while it is being written (`_Drafts`), so a voice that can start on its first words does.
Every sample is fed to the media stream tagged with the turn, and every word is remembered with the pts
it plays at: when the user interrupts, what they actually heard is the words whose end the client had
played.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.cues import Cue, closing_cues, opening_cues, thinking_cue
from agent.llm import LLMClient, LLMError
from agent.modes.base import Generate, Say, Step
from core.events import Notice
from speech.text import SentenceSegmenter, clean_for_speech, split_for_speech
from speech.tts import TTSEngine
from streaming.media import MediaStream

log = logging.getLogger(__name__)

SENTENCE_QUEUE = 4
"""Sentences the LLM may write ahead of the voice."""
MAX_AHEAD_SECONDS = 8.0
"""Speech queued in the media stream beyond this waits: bounded memory, quick cancels."""
APOLOGY = {
    "en": "Sorry, I lost my train of thought. Could you ask me again?",
    "zh": "抱歉，我刚才走神了，请再问一次。",
}

Broadcast = Callable[..., None]
"""`broadcast(kind, **fields)`: an event to every client watching the session."""


class _Drafts:
    """The first sentence of a Generate step while the LLM writes it: each draft (the text so far), then the
    sentence the segmenter cut, for `TTSEngine.stream_progressive`."""

    def __init__(self) -> None:
        self.text = ""
        self.final = False
        self.since: float | None = None
        """When the first draft came: the voice's latency counts from there."""
        self._queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()

    def put(self, text: str, final: bool = False) -> None:
        self.text, self.final = text, final
        self.since = self.since or time.perf_counter()
        self._queue.put_nowait(text)
        if final:
            self._queue.put_nowait(None)

    def fail(self, error: BaseException) -> None:
        self._queue.put_nowait(error)

    def known_words(self) -> str:
        """The text so far without its last word, which may be unfinished (all of it once final)."""
        return self.text if self.final else self.text.rpartition(" ")[0]

    async def __aiter__(self) -> AsyncIterator[str]:
        while (item := await self._queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item


@dataclass(slots=True)
class _Word:
    text: str
    end_pts: int


@dataclass
class ReplyMetrics:
    """Milliseconds from the reply's origin (message arrival or the end of the user's speech)."""

    origin: float
    values: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str, at: float | None = None) -> None:
        if name not in self.values:
            self.values[name] = round(((time.perf_counter() if at is None else at) - self.origin) * 1000, 1)

    def set(self, name: str, ms: float) -> None:
        self.values[name] = round(ms, 1)


class Reply:
    def __init__(
        self,
        turn: int,
        steps: list[Step],
        source: str,
        *,
        media: MediaStream,
        tts: TTSEngine,
        llm: LLMClient | None,
        broadcast: Broadcast,
        metrics: ReplyMetrics,
        language: str | None = None,
    ) -> None:
        self.turn = turn
        self.steps = steps
        self.source = source
        self.media = media
        self.tts = tts
        self.llm = llm
        self.broadcast = broadcast
        self.metrics = metrics
        self.language = language
        self.started = False
        """Its first audio has been fed (turn_start was sent)."""
        self.interrupted = False
        self._words: list[_Word] = []
        self._sentences: list[list[Any]] = []
        """[text, start pts, end pts so far] of every sentence begun."""
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self._run(), name=f"reply {self.turn}")
        return self.task

    async def cancel(self) -> None:
        """Stop now: LLM stream closed, TTS stopped, queued media dropped everywhere (the caller says turn_end)."""
        self.interrupted = True
        self.media.cancel(self.turn)
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait({self.task})  # not `await task`: our caller's own cancellation must not be eaten

    def spoken_text(self) -> str:
        return " ".join(text for text, _, _ in self._sentences)

    def heard_text(self, played_pts: int) -> str:
        """The words whose audio had been played by `played_pts`."""
        heard: list[str] = []
        for text, start, end in self._sentences:
            if end <= played_pts:
                heard.append(text)
                continue
            words = [w.text for w in self._words if start <= w.end_pts <= played_pts and w.end_pts <= end]
            if words:
                heard.append(" ".join(words))
            elif played_pts > start and end > start:
                # No word timings from this voice: cut the sentence in proportion to the time played.
                cut = int(len(text) * (played_pts - start) / (end - start))
                heard.append(text[:cut].rsplit(" ", 1)[0] if " " in text[:cut] else text[:cut])
            break
        return " ".join(h for h in heard if h)

    async def _run(self) -> None:
        try:
            for step in self.steps:
                if isinstance(step, Say):
                    for sentence in split_for_speech(step.text):
                        await self._speak(sentence)
                else:
                    await self._generate(step)
            await self.media.wait_drained(self.turn)
        except Exception:
            self.media.cancel(self.turn)  # a failed voice or step: nothing of it may keep playing
            raise
        finally:
            self.media.end_turn(self.turn)

    async def _generate(self, step: Generate) -> None:
        if self.llm is None:
            await self._speak(_apology(self.language))
            return
        if not self.started:
            self._cue(thinking_cue())
        queue: asyncio.Queue[str | _Drafts | None] = asyncio.Queue(SENTENCE_QUEUE)
        writer = asyncio.create_task(self._write(step, queue))
        try:
            while (sentence := await queue.get()) is not None:
                await self._speak(sentence)
            await writer  # re-raises an LLM failure
        except LLMError as exc:
            log.warning("turn %d: %s", self.turn, exc)
            self.broadcast("error", code="llm", message=str(exc))
            await self._speak(_apology(self.language))
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, LLMError):
                await writer

    async def _write(self, step: Generate, queue: asyncio.Queue[str | _Drafts | None]) -> None:
        """The LLM's text, cut into sentences as soon as each is certain; the first one as it is written."""
        assert self.llm is not None
        segmenter = SentenceSegmenter()
        first: _Drafts | None = _Drafts()
        written = ""
        await queue.put(first)

        async def hand_on(sentence: str) -> None:
            """A complete sentence: the first sentence's last draft, or a sentence of its own."""
            nonlocal first
            self.metrics.mark("llm_first_sentence_ms")
            if first is None:
                await queue.put(sentence)
            else:
                first.put(sentence, final=True)
                first = None

        try:
            async with self.llm.stream(step.messages) as pieces:
                async for piece in pieces:
                    self.metrics.mark("llm_first_token_ms")
                    sentences = segmenter.feed(piece)
                    if first is not None and not sentences:
                        written += piece
                        first.put(clean_for_speech(written))
                    for sentence in sentences:
                        await hand_on(sentence)
            for sentence in segmenter.flush():
                await hand_on(sentence)
            if first is not None:
                first.put("", final=True)  # the LLM wrote nothing to say
        except BaseException as exc:
            if first is not None:
                first.fail(exc)
            raise
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def _speak(self, sentence: str | _Drafts) -> None:
        asked = time.perf_counter()
        entry: list[Any] | None = None
        speech = self.tts.stream(sentence) if isinstance(sentence, str) else self.tts.stream_progressive(sentence)
        async for item in speech:
            if isinstance(item, Notice):
                self.broadcast("notice", message=item.message)
                continue
            while self.media.queued_samples(self.turn) > MAX_AHEAD_SECONDS * self.media.sample_rate:
                await asyncio.sleep(0.1)
            if entry is None:
                text = sentence if isinstance(sentence, str) else sentence.known_words()
                for cue in opening_cues(text, first=not self._sentences):
                    self._cue(cue)
            pts = self.media.feed(self.turn, item.pcm, item.visemes)
            if not self.started:
                self.started = True
                self.metrics.mark("tts_first_audio_ms")
                since = asked if isinstance(sentence, str) else sentence.since or asked
                self.metrics.set("tts_latency_ms", (time.perf_counter() - since) * 1000)
                self.broadcast("turn_start", turn=self.turn, pts=pts, source=self.source)
                self.broadcast("state", state="speaking")
            if entry is None:
                # Recorded at its first audio, so an interruption mid-sentence still knows what was heard of it.
                entry = [text, pts, pts]
                self._sentences.append(entry)
                self.broadcast("reply", turn=self.turn, text=text, pts=pts)
            elif isinstance(sentence, _Drafts) and sentence.final and entry[0] != sentence.text:
                # The rest of a sentence the voice began while it was being written.
                rest = sentence.text.removeprefix(entry[0]).strip() if entry[0] else sentence.text
                entry[0] = sentence.text
                self.broadcast("reply", turn=self.turn, text=rest, pts=entry[1])
            self._words += [_Word(w.text, pts + int(w.end * item.sample_rate)) for w in item.words]
            entry[2] = pts + len(item.pcm)
        if entry is not None:
            # The question's brows go with its end, so they are cued once all of its speech is in.
            for cue in closing_cues(entry[0]):
                self._cue(cue)

    def _cue(self, cue: Cue) -> None:
        self.media.cue(self.turn, cue.expression, cue.intensity, cue.at)


def _apology(language: str | None) -> str:
    return APOLOGY["zh" if language == "zh" else "en"]


def metrics_event(reply: Reply) -> dict[str, Any]:
    return {"turn": reply.turn, "source": reply.source, "interrupted": reply.interrupted, **reply.metrics.values}
