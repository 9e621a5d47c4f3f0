"""Soak test of the livestream host: does a looping show run for hours without drift or growth?

Two runs of the `host` persona's show (night-sky.md, `loop: true`) with the real espeak voice, the real CPU
renderer (bundled avatar, 512x512, 25 FPS) and viewer questions every ~20 s answered by the scripted
OpenAI-compatible server of the tests (real HTTP and SSE; an offline model would only slow the soak down):

1. **Virtual time**: as many hours of session time as fit in `BENCH_SOAK_WALL` seconds of wall time, on
   `streaming.clock.VirtualClock`: the media loop is the only thing that sleeps on the session's clock, so
   time jumps to each frame's due time and frames are drawn back to back, as fast as the renderer goes.
   Questions and samples are scheduled on the stream's own timeline (a viewer watching the pts), because a
   second sleeper on a VirtualClock would push time ahead of the frames. Python heap (tracemalloc, after a
   full collection, without the benchmark's own records), RSS and the sizes of every collection the session
   keeps are sampled every `SAMPLE_EVERY` session seconds; heap snapshots every `SNAPSHOT_EVERY` session
   seconds after the warm-up show which allocating lines own any growth (a line that grows in every
   interval, not just a reply in flight).
2. **Real time**: `BENCH_SOAK_REALTIME` seconds of the show served by the real live server (`LiveAgent`,
   `LiveServer`) to a real websocket viewer reading H.264 + audio, with questions posted to `/api/ask`. The
   drift is how the viewer's audio clock (pts / 24000) moves against its wall clock, fitted by a line.

Writes benchmarks/results/host_soak.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import gc
import itertools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import connect  # noqa: E402

from agent.cli_live import _question_route  # noqa: E402
from agent.live import LiveAgent  # noqa: E402
from agent.llm import LLMClient  # noqa: E402
from agent.modes.host import HostMode, QuestionRejected  # noqa: E402
from agent.personas import Persona, create_mode, load_persona  # noqa: E402
from agent.renderers import create_renderer, prepare  # noqa: E402
from agent.session import ConversationSession  # noqa: E402
from core.config import Config, load_config  # noqa: E402
from core.events import Frame  # noqa: E402
from speech.tts_select import create_tts  # noqa: E402
from streaming.clock import Clock, VirtualClock  # noqa: E402
from streaming.protocol import KIND_AUDIO, KIND_VIDEO, unpack_media  # noqa: E402
from streaming.server import LiveServer, ServerOptions  # noqa: E402
from tests.live_helpers import shared_models, ws_url  # noqa: E402
from tests.llm_server import Reply, ScriptedOpenAIServer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FPS = 25
RATE = 24_000
SOAK_WALL = float(os.environ.get("BENCH_SOAK_WALL", "600"))
REALTIME_WALL = float(os.environ.get("BENCH_SOAK_REALTIME", "180"))
QUESTION_EVERY = 20.0
"""Session seconds between two viewer questions."""
SAMPLE_EVERY = 120.0
"""Session seconds between two samples of heap, RSS and collection sizes."""
SNAPSHOT_EVERY = 300.0
"""Session seconds between two heap snapshots (by allocating line) once tracing has warmed up."""
UNTRACED_SHARE = 0.5
"""Share of the wall-clock budget run without tracemalloc, for RSS and malloc as in production: tracing costs
its own records and more than halves the speed. The same session then goes on with tracemalloc."""
TRACE_WARMUP = 600.0
"""Session seconds of tracing left out of the heap fit: blocks allocated before tracing started are not
counted, so the traced heap first rises to what the session holds in flight."""
WARMUP = 1200.0
"""Session seconds left out of the RSS and malloc fits: the first pass of the script, memory filling to its budget,
the question queue filling up, lazily built caches."""
REALTIME_WARMUP = 5.0
REALTIME_SAMPLE_EVERY = 10.0
ENVELOPE_WINDOW = 10.0
"""Seconds of arrivals whose earliest (least delayed) one traces the clock without the delivery jitter."""
TRACE_FRAMES = 1
ANSWER = Reply(pieces=("What a lovely question! ", "Look for it after sunset, ", "low in the western sky. "))
QUESTIONS = (
    "What is a comet made of?",
    "How far away is the Moon?",
    "Can I see Saturn's rings with binoculars?",
    "Why do stars twinkle?",
    "What is the brightest star tonight?",
    "How old is the Milky Way?",
    "Is Pluto still a planet?",
    "When is the next meteor shower?",
    "Why is Mars red?",
    "How many moons does Jupiter have?",
)


# --- the session, its viewer and what is measured -----------------------------------------------------------


@dataclass
class Tally:
    """A viewer that keeps counts, not frames (so the benchmark itself does not grow)."""

    clock: Clock
    frames: int = 0
    speech_frames: int = 0
    done: Counter[str] = field(default_factory=Counter)
    """Turns ended uninterrupted, by source (script, question)."""
    interrupted: int = 0
    gaps: list[float] = field(default_factory=list)
    """Session seconds from each turn_end to the next turn_start."""
    errors: list[str] = field(default_factory=list)
    on_pts: Callable[[int], None] | None = None
    """Called with each frame's pts: the benchmark's own schedule, on the stream's timeline."""
    _sources: dict[int, str] = field(default_factory=dict)
    _last_end: float | None = None

    def write(self, frame: Frame, turn: int, pts: int) -> None:
        self.frames += 1
        self.speech_frames += turn != 0
        if self.on_pts is not None:
            self.on_pts(pts)

    def drop_turn(self, turn: int) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def send_event(self, kind: str, **fields: Any) -> None:
        if kind == "turn_start":
            self._sources[fields["turn"]] = fields["source"]
            if self._last_end is not None:
                self.gaps.append(self.clock.now() - self._last_end)
        elif kind == "turn_end":
            source = self._sources.pop(fields["turn"], "?")
            if fields["interrupted"]:
                self.interrupted += 1
            else:
                self.done[source] += 1
            self._last_end = self.clock.now()
        elif kind == "error" and len(self.errors) < 5:
            self.errors.append(str(fields.get("message")))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_file_mb() -> float:
    """The file-backed part of RSS (libraries' code and data as pages are touched): bounded, not a leak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ]


def c_heap_mb() -> tuple[float, float]:
    """glibc malloc, all arenas: (MB in use, MB free but kept); NaN without glibc 2.33+.

    Tells RSS growth apart: memory C code still holds (a leak outside Python's heap) or holes malloc keeps.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return float("nan"), float("nan")
    info = libc.mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20


def containers(prefix: str, obj: object) -> dict[str, int]:
    """The length of every list, deque, set, dict and queue `obj` holds in its attributes.

    Found by looking, not by name, so a collection added to the session later is watched too."""
    out: dict[str, int] = {}
    for name, value in vars(obj).items():
        if isinstance(value, list | deque | set | dict | bytearray):
            out[f"{prefix}.{name}"] = len(value)
        elif isinstance(value, asyncio.Queue):
            out[f"{prefix}.{name}"] = value.qsize()
    return out


def sizes(session: ConversationSession) -> dict[str, int]:
    """Every collection a long-running show keeps, by where it lives."""
    media, mode, renderer = session.media, session.mode, session.media.renderer
    out = containers("session", session) | containers("media", media) | containers("renderer", renderer)
    for name in ("_queue", "_life", "_driver"):
        if hasattr(renderer, name):
            out |= containers(f"renderer.{name}", getattr(renderer, name))
    out |= containers("mode", mode)
    if isinstance(mode, HostMode):
        out |= containers("mode.memory", mode.memory) | containers("mode.questions", mode.questions)
        out["mode.memory tokens"] = mode.memory.tokens()
    if session.reply is not None:
        out |= containers("reply", session.reply)
    for k, viewer in enumerate(session.viewers):
        if not isinstance(viewer, Tally):
            out |= containers(f"viewer{k}", viewer)
    pool = getattr(
        getattr(getattr(getattr(session.llm, "_client", None), "_client", None), "_transport", None), "_pool", None
    )
    if pool is not None:
        out["llm http connections"] = len(pool.connections)
    out["asyncio tasks"] = len(asyncio.all_tasks())
    out["threads"] = threading.active_count()
    return out


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope (nan with fewer than 3 points)."""
    if len(xs) < 3:
        return float("nan")
    return float(np.polyfit(np.asarray(xs, np.float64), np.asarray(ys, np.float64), 1)[0])


def host_persona() -> Persona:
    """The bundled host persona, its show looping (a 24/7 stream)."""
    persona = load_persona("host")
    return persona.model_copy(update={"host": persona.host.model_copy(update={"loop": True})})


def bench_config() -> Config:
    return load_config(overrides={"tts": {"engine": "espeak"}, "agent": {"persona": "host"}}, environ={})


@dataclass
class Parts:
    cfg: Config
    prepared: object
    tts: Any
    persona: Persona


def new_session(parts: Parts, llm: LLMClient, clock: Clock) -> ConversationSession:
    return ConversationSession(
        mode=create_mode(parts.persona, llm_available=True),
        renderer=create_renderer(parts.cfg, parts.prepared, seed=3),
        tts=parts.tts,
        llm=llm,
        vad=parts.cfg.vad,
        clock=clock,
        name="soak",
    )


def llm_client(server: ScriptedOpenAIServer) -> LLMClient:
    return LLMClient(base_url=server.url, api_key=None, model="test", first_token_timeout=10, retries=1)


# --- 1: hours of show on the stepped clock ------------------------------------------------------------------


@dataclass
class Sample:
    session_s: float
    wall_s: float
    traced: bool
    heap_mb: float
    """Traced Python heap (NaN before tracing starts)."""
    rss_mb: float
    rss_file_mb: float
    c_used_mb: float
    c_free_mb: float
    gc_objects: int
    frames: int
    sizes: dict[str, int]


@dataclass
class Soak:
    samples: list[Sample] = field(default_factory=list)
    session_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    frames: int = 0
    speech_frames: int = 0
    reanchors: int = 0
    loops: int = 0
    done: Counter[str] = field(default_factory=Counter)
    interrupted: int = 0
    asked: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    gaps: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    peak_sizes: dict[str, int] = field(default_factory=dict)
    traced_from: float = float("inf")
    """Session second at which tracemalloc started."""
    traced_wall_s: float = 0.0
    snapshots: list[tuple[float, dict[str, tuple[int, int]]]] = field(default_factory=list)
    """(session s, {allocating line: (bytes, blocks)}) every SNAPSHOT_EVERY after the warm-up."""


def heap_by_line() -> dict[str, tuple[int, int]]:
    """Live Python heap by allocating line: (bytes, blocks); the benchmark's own records are left out."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, __file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        )
    )
    return {short(stat.traceback[0]): (stat.size, stat.count) for stat in snapshot.statistics("lineno")}


def short(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for prefix in (str(ROOT) + "/", *(p + "/" for p in sys.path if "site-packages" in p), sys.prefix + "/lib/"):
        name = name.removeprefix(prefix)
    return f"{name}:{frame.lineno}"


@dataclass
class LineGrowth:
    where: str
    first_kb: float
    last_kb: float
    kb_per_hour: float
    grew: int
    """Intervals between snapshots in which it grew."""
    intervals: int
    blocks: tuple[int, int]


def growing_lines(snapshots: list[tuple[float, dict[str, tuple[int, int]]]], top: int = 8) -> list[LineGrowth]:
    """The allocating lines whose live heap grew fastest across the snapshots (least-squares, KB per hour)."""
    hours = [t / 3600 for t, _ in snapshots]
    lines = set().union(*(stats for _, stats in snapshots))
    out = []
    for line in lines:
        sizes = [stats.get(line, (0, 0))[0] / 1024 for _, stats in snapshots]
        blocks = (snapshots[0][1].get(line, (0, 0))[1], snapshots[-1][1].get(line, (0, 0))[1])
        grew = sum(b > a for a, b in itertools.pairwise(sizes))
        out.append(LineGrowth(line, sizes[0], sizes[-1], slope(hours, sizes), grew, len(sizes) - 1, blocks))
    return sorted(out, key=lambda g: -g.kb_per_hour)[:top]


async def soak_run(parts: Parts) -> Soak:
    clock = VirtualClock()
    soak = Soak()
    async with ScriptedOpenAIServer(ANSWER) as server:
        llm = llm_client(server)
        session = new_session(parts, llm, clock)
        mode = session.mode
        assert isinstance(mode, HostMode)
        tally = Tally(clock)
        session.attach(tally)
        stop = asyncio.Event()
        next_question, next_sample = QUESTION_EVERY, SAMPLE_EVERY
        traced_from = float("inf")

        def ask() -> None:
            soak.asked += 1
            n = soak.asked
            try:
                mode.ask(f"{QUESTIONS[n % len(QUESTIONS)]} (question {n})", f"viewer{n}")
            except QuestionRejected as exc:
                soak.rejected[exc.reason] += 1
            server.requests.clear()  # the scripted server's log of requests is the harness's, not the session's

        def sample(seconds: float) -> None:
            nonlocal traced_from
            gc.collect()
            tracing = tracemalloc.is_tracing()
            heap = heap_by_line() if tracing else {}
            s = Sample(
                seconds,
                time.perf_counter() - wall0,
                tracing,
                sum(size for size, _ in heap.values()) / 2**20 if tracing else float("nan"),
                rss_mb(),
                rss_file_mb(),
                *c_heap_mb(),
                len(gc.get_objects()),
                session.media.frames,
                sizes(session),
            )
            soak.samples.append(s)
            for name, value in s.sizes.items():
                soak.peak_sizes[name] = max(soak.peak_sizes.get(name, 0), value)
            print(
                f"session {s.session_s / 60:6.1f} min, wall {s.wall_s:5.0f} s: heap {s.heap_mb:.2f} MB, "
                f"RSS {s.rss_mb:.0f} MB, segments {tally.done['script']}, questions {tally.done['question']}, "
                f"queue {len(mode.questions)}, re-anchors {session.media.reanchors}",
                flush=True,
            )
            last_snapshot = soak.snapshots[-1][0] if soak.snapshots else -SNAPSHOT_EVERY
            final = s.wall_s >= SOAK_WALL
            warm = tracing and s.session_s >= traced_from + TRACE_WARMUP
            if warm and (final or s.session_s - last_snapshot >= SNAPSHOT_EVERY - 1):
                soak.snapshots.append((s.session_s, heap))
            if final:
                stop.set()
            elif not tracing and s.wall_s >= SOAK_WALL * UNTRACED_SHARE:
                tracemalloc.start(TRACE_FRAMES)
                traced_from = soak.traced_from = s.session_s

        def on_pts(pts: int) -> None:
            nonlocal next_question, next_sample
            seconds = pts / RATE
            if seconds >= next_question:
                next_question += QUESTION_EVERY
                ask()
            if seconds >= next_sample and not stop.is_set():
                next_sample += SAMPLE_EVERY
                sample(seconds)

        tally.on_pts = on_pts
        wall0, cpu0 = time.perf_counter(), time.process_time()
        runner = asyncio.create_task(session.run(), name="session")
        await asyncio.wait({runner, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
        tracemalloc.stop()
        soak.wall_s, soak.cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
        soak.traced_wall_s = soak.wall_s - next((s.wall_s for s in soak.samples if s.traced), soak.wall_s)
        soak.session_s = clock.now()
        soak.frames, soak.speech_frames = tally.frames, tally.speech_frames
        soak.reanchors = session.media.reanchors
        soak.loops = mode.progress()["loops"]
        soak.done, soak.interrupted, soak.gaps, soak.errors = tally.done, tally.interrupted, tally.gaps, tally.errors
        session.close()
        await runner
        await llm.aclose()
    return soak


# --- 2: real time, a websocket viewer, drift ----------------------------------------------------------------


@dataclass
class Viewer:
    """A websocket viewer that keeps only what drift needs: each audio slice's pts and arrival time."""

    pts: list[int] = field(default_factory=list)
    at: list[float] = field(default_factory=list)
    video: int = 0
    sources: dict[int, str] = field(default_factory=dict)
    done: Counter[str] = field(default_factory=Counter)

    async def read(self, url: str) -> None:
        async with connect(url, max_size=None) as ws:
            await ws.send(json.dumps({"type": "hello", "protocol": 1, "codecs": ["h264"]}))
            async for raw in ws:
                now = time.perf_counter()
                if isinstance(raw, str):
                    event = json.loads(raw)
                    if event["type"] == "turn_start":
                        self.sources[event["turn"]] = event["source"]
                    elif event["type"] == "turn_end" and not event["interrupted"]:
                        self.done[self.sources.pop(event["turn"], "?")] += 1
                    continue
                kind, _, pts, _ = unpack_media(raw)
                if kind == KIND_AUDIO:
                    self.pts.append(pts)
                    self.at.append(now)
                elif kind == KIND_VIDEO:
                    self.video += 1


@dataclass
class Realtime:
    wall_s: float = 0.0
    frames_drawn: int = 0
    expected: float = 0.0
    reanchors: int = 0
    audio_received: int = 0
    video_received: int = 0
    drift_ms_per_hour: float = float("nan")
    envelope_ms_per_hour: float = float("nan")
    drift_range_ms: float = float("nan")
    drift_first_last_ms: float = float("nan")
    lateness_p99_ms: float = float("nan")
    done: Counter[str] = field(default_factory=Counter)
    posted: Counter[int] = field(default_factory=Counter)
    rss: list[tuple[float, float]] = field(default_factory=list)
    peak_sizes: dict[str, int] = field(default_factory=dict)
    last_sizes: dict[str, int] = field(default_factory=dict)


def post_question(port: int, n: int) -> int:
    query = urllib.parse.urlencode({"text": QUESTIONS[n % len(QUESTIONS)], "author": f"viewer{n}"})
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/ask?{query}", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def drift(viewer: Viewer, result: Realtime) -> None:
    """Audio clock minus wall clock at each arrival, after the warm-up: its fitted trend and its spread."""
    at = np.asarray(viewer.at)
    pts = np.asarray(viewer.pts, np.float64)
    keep = at >= at[0] + REALTIME_WARMUP
    at, pts = at[keep], pts[keep]
    t = at - at[0]
    offset = (pts - pts[0]) / RATE - t
    result.drift_ms_per_hour = slope(list(t), list(offset)) * 3600 * 1000
    # Delivery jitter only ever makes a slice late, so the earliest arrivals trace the clocks themselves.
    window = (t // ENVELOPE_WINDOW).astype(int)
    best = [int(np.flatnonzero(window == w)[np.argmax(offset[window == w])]) for w in np.unique(window)]
    result.envelope_ms_per_hour = slope(list(t[best]), list(offset[best])) * 3600 * 1000
    result.drift_range_ms = float(offset.max() - offset.min()) * 1000
    tail = max(1, FPS * 5)
    result.drift_first_last_ms = float(np.median(offset[-tail:]) - np.median(offset[:tail])) * 1000
    # Lateness as a player with a fixed schedule (its earliest arrival) would see it.
    late = offset.max() - offset
    result.lateness_p99_ms = float(np.percentile(late, 99)) * 1000


async def realtime_run(parts: Parts) -> Realtime:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=64))  # as `digital-human host` does
    result = Realtime()
    async with ScriptedOpenAIServer(ANSWER) as llm_server:
        llm = llm_client(llm_server)
        agent = LiveAgent(shared_models(parts.cfg, parts.prepared, parts.tts, llm), seed=3)
        session = await agent.start_show(parts.persona)
        start = time.monotonic()
        options = ServerOptions(port=0)
        options.http_routes["/api/ask"] = _question_route(session)
        server = LiveServer(options, agent.handle)
        await server.start()
        viewer = Viewer()
        reader = asyncio.create_task(viewer.read(ws_url(server)))
        wall0 = time.perf_counter()
        for k in itertools.count(1):
            await asyncio.sleep(wall0 + k * REALTIME_SAMPLE_EVERY - time.perf_counter())
            elapsed = time.perf_counter() - wall0
            if k % round(QUESTION_EVERY / REALTIME_SAMPLE_EVERY) == 0:
                result.posted[await asyncio.to_thread(post_question, server.port, k)] += 1
            result.rss.append((elapsed, rss_mb()))
            result.last_sizes = sizes(session)
            for name, value in result.last_sizes.items():
                result.peak_sizes[name] = max(result.peak_sizes.get(name, 0), value)
            if elapsed >= REALTIME_WALL:
                break
        result.wall_s = time.perf_counter() - wall0
        result.frames_drawn = session.media.frames
        result.expected = FPS * (time.monotonic() - start)
        result.reanchors = session.media.reanchors
        await server.close()
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        await agent.stop_show()
        await llm.aclose()
    result.audio_received, result.video_received, result.done = len(viewer.pts), viewer.video, viewer.done
    drift(viewer, result)
    return result


# --- report -------------------------------------------------------------------------------------------------


def code_version() -> str:
    """The commit measured, and whether the session's code had uncommitted changes (`BENCH_COMMIT` outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "agent", "avatar", "speech", "streaming", "core"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"commit {os.environ.get('BENCH_COMMIT', 'unknown')}"
    return f"commit {commit}" + (" with uncommitted changes" if dirty else "")


def load_line() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def rate(samples: list[Sample], value: Callable[[Sample], float]) -> float:
    """Least-squares growth per session hour of `value` over `samples`."""
    return slope([s.session_s / 3600 for s in samples], [value(s) for s in samples])


def report(soak: Soak | None, real: Realtime | None, start_load: str) -> str:
    lines = [
        f"Host soak benchmark, {datetime.date.today().isoformat()}, {code_version()}: the `host` persona's show "
        f"(night-sky.md, 5 segments, `loop: true`), espeak voice, CPU renderer 512x512 at {FPS} FPS, a viewer "
        f"question every {QUESTION_EVERY:.0f} s answered by the scripted OpenAI-compatible server (real HTTP + SSE). "
        f"The machine is shared: {start_load} at the start, {load_line()} at the end.",
    ]
    if soak:
        lines += soak_report(soak)
    if real:
        lines += realtime_report(real)
    return "\n".join(lines) + "\n"


def soak_report(soak: Soak) -> list[str]:
    plain = [s for s in soak.samples if not s.traced and s.session_s >= WARMUP]
    traced = [s for s in soak.samples if s.traced and s.session_s >= soak.traced_from + TRACE_WARMUP]
    hours = soak.session_s / 3600
    expected = FPS * soak.session_s
    untraced_s = min(soak.traced_from, soak.session_s)
    untraced_wall = soak.wall_s - soak.traced_wall_s

    def growth(samples: list[Sample], label: str, value: Callable[[Sample], float], unit: str = "MB") -> str:
        if len(samples) < 3:
            return f"| {label} | too few samples |"
        a, b = samples[0], samples[-1]
        digits = 0 if unit == "objects" else 2 if unit == "MB" and "heap" in label else 1
        return (
            f"| {label}: {a.session_s / 60:.0f} → {b.session_s / 60:.0f} min ({unit}); growth per session hour "
            f"| {value(a):.{digits}f} → {value(b):.{digits}f}; **{rate(samples, value):+.{digits}f}** |"
        )

    lines = [
        "",
        f"## 1. {hours:.2f} hours of show in {soak.wall_s / 60:.1f} minutes (virtual time)",
        "",
        f"The first {untraced_s / 60:.0f} min of session time ran without tracemalloc "
        f"({untraced_s / max(untraced_wall, 1e-9):.1f}x faster than the wall clock): RSS, malloc and object counts "
        f"as in production, fitted after the first {WARMUP / 60:.0f} min. The same session then went on with "
        f"tracemalloc ({TRACE_FRAMES} frame; {(soak.session_s - untraced_s) / max(soak.traced_wall_s, 1e-9):.1f}x): "
        f"the Python heap is fitted from {TRACE_WARMUP / 60:.0f} min after tracing started. Samples every "
        f"{SAMPLE_EVERY / 60:.0f} min of session time, after a full garbage collection; growth rates are "
        f"least-squares slopes. CPU: {soak.cpu_s / soak.wall_s:.2f} cores on average.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| session time | {soak.session_s:.0f} s ({hours:.2f} h) |",
        f"| script passes (loops) | {soak.loops} |",
        f"| segments read to the end | {soak.done['script']} |",
        f"| questions posted / answered / refused (queue full) | {soak.asked} / {soak.done['question']} / "
        f"{sum(soak.rejected.values())} |",
        f"| turns interrupted, errors | {soak.interrupted}, {len(soak.errors)} |",
        f"| frames drawn / expected (fps x session s) | {soak.frames} / {expected:.0f} "
        f"({soak.frames - expected:+.0f}) |",
        f"| frames with speech | {soak.speech_frames} ({soak.speech_frames / max(soak.frames, 1):.0%}) |",
        f"| re-anchors | {soak.reanchors} |",
        f"| gap between turns, min / median (s) | {min(soak.gaps, default=float('nan')):.2f} / "
        f"{statistics.median(soak.gaps) if soak.gaps else float('nan'):.2f} |",
        growth(plain, "RSS", lambda s: s.rss_mb),
        growth(plain, "file-backed part of RSS (libraries' pages)", lambda s: s.rss_file_mb),
        growth(plain, "malloc heap in use", lambda s: s.c_used_mb),
        growth(plain, "malloc heap free but kept", lambda s: s.c_free_mb),
        growth(plain, "gc-tracked objects", lambda s: s.gc_objects, "objects"),
        growth(traced, "Python heap (tracemalloc)", lambda s: s.heap_mb),
        growth(traced, "gc-tracked objects while tracing", lambda s: s.gc_objects, "objects"),
    ]
    if soak.errors:
        lines.append(f"| first errors | {'; '.join(soak.errors)} |")
    lines += [
        "",
        "Sizes of the session's collections (at the samples: first after warm-up, last, and the largest seen):",
        "",
        "| collection | first | last | peak |",
        "|---|---|---|---|",
    ]
    first, last = (plain or soak.samples)[0], soak.samples[-1]
    for name in last.sizes:
        lines.append(f"| {name} | {first.sizes.get(name, 0)} | {last.sizes[name]} | {soak.peak_sizes[name]} |")
    lines += [
        "",
        "Over session time (the last three columns are the question queue, the host's memory turns and the "
        "speech segments queued in the media stream):",
        "",
        "| session (min) | wall (s) | heap (MB) | RSS (MB) | malloc in use / free (MB) | gc objects | frames | queue "
        "| memory turns | segments |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    step = max(1, len(soak.samples) // 12)
    for s in [*soak.samples[::step], *([soak.samples[-1]] if (len(soak.samples) - 1) % step else [])]:
        got = s.sizes.get
        lines.append(
            f"| {s.session_s / 60:.0f} | {s.wall_s:.0f} | {'—' if math.isnan(s.heap_mb) else f'{s.heap_mb:.2f}'} "
            f"| {s.rss_mb:.1f} "
            f"| {s.c_used_mb:.0f} / {s.c_free_mb:.0f} | {s.gc_objects} "
            f"| {s.frames} | {got('mode.questions._items', 0)} | {got('mode.memory._turns', 0)} "
            f"| {got('media._segments', 0)} |"
        )
    if len(soak.snapshots) >= 3:
        times = ", ".join(f"{t / 60:.0f}" for t, _ in soak.snapshots)
        lines += [
            "",
            f"Allocating lines whose live heap grew fastest, over the snapshots at {times} min of session time "
            "(least-squares slope; 'grew' = intervals between snapshots in which it grew; a reply in flight "
            "comes and goes, a leak grows in every interval):",
            "",
            "| allocating line | first (KB) | last (KB) | KB per hour | grew | blocks first → last |",
            "|---|---|---|---|---|---|",
            *(
                f"| `{g.where}` | {g.first_kb:.1f} | {g.last_kb:.1f} | {g.kb_per_hour:+.0f} | {g.grew}/{g.intervals} "
                f"| {g.blocks[0]} → {g.blocks[1]} |"
                for g in growing_lines(soak.snapshots)
            ),
        ]
        steady = [g.where for g in growing_lines(soak.snapshots) if g.grew == g.intervals and g.kb_per_hour > 0]
        hours = [t / 3600 for t, _ in soak.snapshots]
        rest = [sum(v[0] for k, v in stats.items() if k not in steady) / 2**20 for _, stats in soak.snapshots]
        lines += [
            "",
            f"All the other lines together: {slope(hours, rest):+.2f} MB per hour ({rest[0]:.2f} → {rest[-1]:.2f} MB) "
            f"once the {len(steady)} line(s) that grew in every interval are left out.",
        ]
        if any("ctypeslib" in w for w in steady):
            lines += ["", CTYPES_NOTE]
    return lines


CTYPES_NOTE = (
    "**The growth is espeak's audio callback** (`speech/tts_espeak.py`, `_on_audio`: "
    "`np.ctypeslib.as_array(wav, shape=(count,))`). For a ctypes pointer, numpy builds the type "
    "`c_short * count` and `POINTER` of it; ctypes caches both for ever (its array-type cache and "
    "`ctypes._pointer_type_cache`), so every sample count not seen before keeps about 5.6 KB of heap (measured "
    "alone). Full 100 ms buffers all have one count (2206 samples), but the last, partial buffer of each "
    "sentence has a new one until every count up to 2206 has been seen: bounded (~12 MB of heap) but growing "
    "for many hours of varied text. Copying the samples without making a type per length (e.g. "
    "`np.frombuffer(ctypes.string_at(wav, 2 * count), np.int16).copy()`) makes it flat."
)


def realtime_report(real: Realtime) -> list[str]:
    rss0, rss1 = real.rss[0][1], real.rss[-1][1]
    lines = [
        "",
        f"## 2. {real.wall_s / 60:.1f} minutes in real time, served to a websocket viewer (H.264)",
        "",
        "The real live server (`LiveAgent.start_show`, `LiveServer`) on the monotonic clock; a websocket viewer "
        "in the same process reads every message; questions are posted to `/api/ask` every "
        f"{QUESTION_EVERY:.0f} s. Drift: for each audio slice, (pts - pts0) / 24000 - (arrival - arrival0), "
        f"after {REALTIME_WARMUP:.0f} s; the trend is a least-squares line, extrapolated to an hour.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| frames drawn / expected (fps x elapsed) | {real.frames_drawn} / {real.expected:.0f} "
        f"({real.frames_drawn - real.expected:+.0f}) |",
        f"| re-anchors (the loop fell > lead + 3 frames behind) | {real.reanchors} |",
        f"| audio slices / video frames received | {real.audio_received} / {real.video_received} |",
        f"| drift trend (ms per hour) | {real.drift_ms_per_hour:+.1f} |",
        f"| drift trend of the earliest arrival in each {ENVELOPE_WINDOW:.0f} s (ms per hour) "
        f"| {real.envelope_ms_per_hour:+.1f} |",
        f"| drift, last 5 s vs first 5 s (ms) | {real.drift_first_last_ms:+.1f} |",
        f"| spread of audio clock - wall clock (ms) | {real.drift_range_ms:.0f} |",
        f"| arrival lateness on a fixed schedule, p99 (ms) | {real.lateness_p99_ms:.0f} |",
        f"| segments / questions read to the end | {real.done['script']} / {real.done['question']} |",
        f"| questions posted (HTTP status: count) | {', '.join(f'{k}: {v}' for k, v in sorted(real.posted.items()))} |",
        f"| RSS first → last sample (MB) | {rss0:.0f} → {rss1:.0f} |",
        f"| peak RSS of the process (MB) | {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} |",
        "",
        "| collection | last | peak |",
        "|---|---|---|",
        *(f"| {n} | {real.last_sizes[n]} | {real.peak_sizes[n]} |" for n in real.last_sizes),
    ]
    return lines


async def amain() -> int:
    start_load = load_line()
    parts_wanted = set(sys.argv[1:]) or {"soak", "realtime"}
    cfg = bench_config()
    prepared, _ = await asyncio.to_thread(prepare, cfg)
    parts = Parts(cfg, prepared, await asyncio.to_thread(create_tts, cfg.tts), host_persona())
    soak = await soak_run(parts) if "soak" in parts_wanted else None
    real = await realtime_run(parts) if "realtime" in parts_wanted else None
    await asyncio.sleep(0.1)  # the scripted servers' aborted connections end their handlers
    text = report(soak, real, start_load)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "host_soak.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(amain()))
