"""One session's audio/video timeline: the paced loop that is the only producer of frames.

Every `render_next()` turns exactly `sample_rate / fps` samples into one frame, so the frame index
*is* the clock: frame k carries the audio at pts `k * samples_per_frame`, and every sink (websocket,
RTMP, MP4) receives the same frames in the same order, in sync by construction. The loop keeps a
small lead over real time and re-anchors instead of bursting when the machine stalls.

Audio is tagged with the reply ("turn") it belongs to. Feeds are applied to the renderer only
between frames, on the loop, so the bookkeeping of which samples each frame consumes is exact
even though frames are drawn in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from avatar.base import Renderer
from avatar.expressions import check_cue
from core.events import Expression, Frame, VisemeEvent
from streaming.clock import Clock, MonotonicClock

log = logging.getLogger(__name__)


class FrameSink(Protocol):
    """Where frames go. `write` never blocks: a sink buffers (boundedly) and drops what it must."""

    def write(self, frame: Frame, turn: int, pts: int) -> None: ...

    def drop_turn(self, turn: int) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Segment:
    turn: int
    samples: int


@dataclass(slots=True)
class _Pending:
    turn: int
    pcm: np.ndarray
    visemes: Sequence[VisemeEvent]


@dataclass(slots=True)
class _PendingCue:
    """An expression cue, kept in order with the speech around it so its time keeps its meaning."""

    turn: int
    expression: Expression | str
    intensity: float
    at: float | None
    duration: float | None


class MediaStream:
    def __init__(
        self,
        renderer: Renderer,
        clock: Clock | None = None,
        *,
        lead: float = 0.16,
        max_behind_frames: int = 3,
    ) -> None:
        self.renderer = renderer
        self.clock = clock or MonotonicClock()
        self.fps = renderer.fps
        self.sample_rate = renderer.sample_rate
        self.samples_per_frame = renderer.samples_per_frame
        self.lead = lead
        self.max_behind = max_behind_frames / self.fps
        self.sinks: list[FrameSink] = []
        self.frames = 0
        """Frames handed to the renderer so far (the next frame's pts is `frames * samples_per_frame`)."""
        self.reanchors = 0
        """Times the loop fell behind by more than `max_behind_frames` and restarted its schedule."""
        self.on_first_frame: Callable[[int], None] | None = None
        """Called with the turn when the first frame of a turn goes to the sinks."""
        self.on_frame: Callable[[int], None] | None = None
        """Called with each frame's pts once it has gone to the sinks (the session's idle policy runs on it)."""
        self._segments: deque[_Segment] = deque()
        self._pending: deque[_Pending | _PendingCue] = deque()
        self._over = 0
        """Every turn up to this one has ended or been cancelled (turns only ever increase)."""
        self._first_sent = 0
        self._reset = False
        self._drained: dict[int, asyncio.Event] = {}
        self._active = 0
        self._closed = False

    @property
    def pts(self) -> int:
        """The pts of the next frame to be drawn."""
        return self.frames * self.samples_per_frame

    def add_sink(self, sink: FrameSink) -> None:
        self.sinks.append(sink)

    def remove_sink(self, sink: FrameSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def queued_samples(self, turn: int | None = None) -> int:
        """Audio fed but not yet drawn (of one turn, or all)."""
        segs = sum(s.samples for s in self._segments if turn is None or s.turn == turn)
        pending = (p for p in self._pending if isinstance(p, _Pending))
        return segs + sum(len(p.pcm) for p in pending if turn is None or p.turn == turn)

    def feed(self, turn: int, pcm: np.ndarray, visemes: Sequence[VisemeEvent] = ()) -> int:
        """Queue a turn's speech; returns the pts at which its first sample will play."""
        if turn <= self._over:
            raise ValueError(f"turn {turn} is over; speech belongs to a new turn")
        start = self.pts + self.queued_samples()
        if len(pcm):
            self._pending.append(_Pending(turn, pcm, visemes))
            self._active = turn
        return start

    def cue(
        self,
        turn: int,
        expression: Expression | str,
        intensity: float = 1.0,
        at: float | None = None,
        duration: float | None = None,
    ) -> None:
        """Cue an expression for a turn (`Renderer.cue`'s meaning of `at`: seconds from the end of the speech
        fed so far); it reaches the renderer between frames, after the speech fed before it, and an
        interrupted turn's cues that have not reached it are dropped with its speech."""
        check_cue(expression, intensity, duration)
        if turn > self._over:
            self._pending.append(_PendingCue(turn, expression, intensity, at, duration))

    def end_turn(self, turn: int) -> None:
        """The turn has no more speech: later frames are idle (turn 0), even those already being drawn."""
        self._over = max(self._over, turn)
        if self._active <= turn:
            self._active = 0

    def cancel(self, turn: int) -> None:
        """Drop everything of `turn` at once: queued audio, the renderer's queue, what sinks still hold.

        The renderer itself is reset between two frames (a reset now would wait for the frame being drawn,
        on the event loop); a frame of the turn drawn meanwhile goes out silent, as idle.
        """
        self.end_turn(turn)
        if any(s.turn == turn for s in self._segments):
            self._reset = True
            self._segments = deque(s for s in self._segments if s.turn != turn)
        self._pending = deque(p for p in self._pending if p.turn != turn)
        for sink in self.sinks:
            sink.drop_turn(turn)
        self._signal_drained(turn)

    async def wait_drained(self, turn: int) -> None:
        """Until every sample fed for `turn` has been drawn and handed to the sinks (or it was cancelled)."""
        if self.queued_samples(turn) == 0:
            return
        event = self._drained.setdefault(turn, asyncio.Event())
        await event.wait()

    def _signal_drained(self, turn: int) -> None:
        event = self._drained.pop(turn, None)
        if event is not None:
            event.set()

    def _next_frame_turn(self) -> int:
        """Apply a pending reset and feeds, then account for the samples the next frame will consume."""
        if self._reset:
            self._reset = False
            self.renderer.reset()
        while self._pending:
            item = self._pending.popleft()
            if isinstance(item, _PendingCue):
                self.renderer.cue(item.expression, item.intensity, item.at, item.duration)
                continue
            self.renderer.feed(item.pcm, item.visemes)
            self._segments.append(_Segment(item.turn, len(item.pcm)))
        turn, need = 0, self.samples_per_frame
        if not self._segments:
            return self._active  # between sentences of a reply the frames still belong to it
        while need and self._segments:
            head = self._segments[0]
            turn = turn or head.turn
            take = min(need, head.samples)
            head.samples -= take
            need -= take
            if head.samples == 0:
                self._segments.popleft()
        return turn

    async def step(self) -> Frame:
        """Draw the next frame and hand it to every sink."""
        turn = self._next_frame_turn()
        pts = self.pts
        self.frames += 1
        frame = await asyncio.to_thread(self.renderer.render_next)
        if turn and turn <= self._over:
            # Drawn while its turn ended or was interrupted: it goes out as idle, and silent.
            frame.audio = np.zeros_like(frame.audio)
            turn = 0
        if turn > self._first_sent:
            self._first_sent = turn
            if self.on_first_frame is not None:
                self.on_first_frame(turn)
        for sink in list(self.sinks):
            try:
                sink.write(frame, turn, pts)
            except Exception:
                # One broken output (an RTMP worker that died, say) must not stop the others or the session.
                log.exception("frame sink %r failed; detached", sink)
                self.remove_sink(sink)
        if turn and self.queued_samples(turn) == 0:
            self._signal_drained(turn)
        if self.on_frame is not None:
            self.on_frame(pts)
        return frame

    async def run(self) -> None:
        """Draw frames at `fps`, `lead` seconds ahead of real time, until `close()`.

        A loop that is late eats into the lead and catches up by drawing back to back; one that has
        fallen further behind than the lead plus `max_behind_frames` (the client has run dry) drops
        the missed time and restarts its schedule instead, rebuilding only the lead: never a burst
        of everything missed.
        """
        anchor = self.clock.now()
        first = self.frames
        while not self._closed:
            due = anchor + (self.frames - first) / self.fps - self.lead
            now = self.clock.now()
            if now < due:
                await self.clock.sleep_until(due)
            elif now - due > self.lead + self.max_behind:
                self.reanchors += 1
                log.info("media loop %.0f ms behind: re-anchored", (now - due) * 1000)
                anchor, first = now, self.frames
            if self._closed:
                break
            await self.step()

    def close(self) -> None:
        self._closed = True
        for turn in list(self._drained):
            self._signal_drained(turn)
