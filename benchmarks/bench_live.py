"""The live server under load, with the real offline stack: how many sessions hold 25 FPS, what each costs
in bandwidth, and the latencies a user feels (picture after sound, interrupt, typed question → first frame).

Everything is real: the piper voice of the default config, the bundled avatar at 512x512 on the CPU
renderer, H.264/JPEG encoders, the offline Qwen 0.5B through llama.cpp, and websocket clients on loopback
that read every message. The clients run on the server's own event loop (as in tests/test_live_server.py),
so their reading competes with the server for the same cores, as a browser on the same machine would.

A video frame is late when it reaches the client more than one frame period (40 ms) after its due time,
due = t0 + (pts - pts0) / 24000 on a steady 25 FPS clock whose t0 is the earliest the measured frames allow (a
constant offset from a slow first frame is not lateness; a clock slip is, for every frame after it). Video
frames the server dropped for a slow reader (an audio slice arrived without its picture) count as late too.
Writes benchmarks/results/live.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.live import LiveAgent, SharedModels  # noqa: E402
from agent.session import ConversationSession  # noqa: E402
from core.config import Config, load_config  # noqa: E402
from streaming.protocol import KIND_AUDIO, KIND_VIDEO  # noqa: E402
from streaming.server import LiveServer, ServerOptions  # noqa: E402
from tests.live_helpers import LiveClient, open_client, ws_url  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FPS = 25
RATE = 24_000
SIZE = (512, 512)
WINDOW = float(os.environ.get("BENCH_LIVE_WINDOW", "15"))
"""Seconds each load level is measured for."""
WARMUP = 3.0
COUNTS = (2, 4, 6, 8)
CODECS = ("h264", "jpeg")
LATE_LIMIT = 0.01
TURNS = 10
PARAGRAPH = (
    "Welcome back to the show. Today we are looking at how small computers can run a talking avatar "
    "without any graphics card, and why that matters for privacy. First, the voice is made on the "
    "machine itself, sentence by sentence, so nothing you say leaves the room. Then the picture is drawn "
    "from one photo, frame by frame, in step with the sound."
)
LONG_SAY = "This is a long sentence that keeps going for quite a while so that we can stop it midway. " * 4
QUESTIONS = (
    "What is Nimbus?",
    "Does Nimbus measure rain?",
    "How do I set it up?",
    "Can it measure wind speed?",
    "Does it need Wi-Fi?",
    "How long does the battery last?",
    "Can I see the data on my phone?",
    "Is it waterproof?",
    "Who makes Nimbus?",
    "Does it measure humidity?",
    "Where should I mount the sensor?",
    "Can it warn me about frost?",
    "How accurate is the temperature?",
    "Does it work offline?",
    "Can I export my data?",
    "What does the display show?",
    "Is there a subscription?",
    "How often does it update?",
    "Can it measure air pressure?",
    "What is in the box?",
)
QUIET_PERSONA = """name: quiet
display_name: Bench presenter
mode: presenter
system_prompt: You are a presenter. Answer briefly.
"""


class RecordingAgent(LiveAgent):
    """LiveAgent that keeps its sessions, so the benchmark can read their media streams' re-anchor counts."""

    def __init__(self, models: SharedModels) -> None:
        super().__init__(models, seed=1)
        self.sessions: list[ConversationSession] = []

    async def new_session(self, persona: Any, name: str) -> ConversationSession:
        session = await super().new_session(persona, name)
        self.sessions.append(session)
        return session


def bench_config(persona: Path | None) -> Config:
    overrides: dict[str, Any] = {"avatar": {"output_size": list(SIZE)}}
    if persona is not None:
        overrides["agent"] = {"persona": str(persona)}
    return load_config(overrides=overrides, environ={})


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


@contextlib.asynccontextmanager
async def serving(models: SharedModels, max_sessions: int = 16) -> Iterator[tuple[LiveServer, RecordingAgent]]:
    agent = RecordingAgent(models)
    server = LiveServer(ServerOptions(port=0, max_sessions=max_sessions), agent.handle)
    await server.start()
    try:
        yield server, agent
    finally:
        await server.close()


async def close(clients: list[LiveClient]) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            await client.ws.close()
        client.task.cancel()  # type: ignore[attr-defined]
        with contextlib.suppress(BaseException):
            await client.task  # type: ignore[attr-defined]


# --- 1 and 2: sessions at 25 FPS, bandwidth ----------------------------------------------------------------


@dataclass
class SessionStats:
    speaking: bool
    frames: int
    late: int
    dropped: int
    stalls: int
    """Late frames for a player that waits when it runs dry: each late frame restarts its schedule."""
    kbit_s: float

    @property
    def late_share(self) -> float:
        return (self.late + self.dropped) / max(1, self.frames + self.dropped)


@dataclass
class Load:
    codec: str
    mix: str
    sessions: int
    stats: list[SessionStats] = field(default_factory=list)
    reanchors: int = 0
    cpu_cores: float = 0.0
    frames_per_s: float = 0.0
    """Frames the server drew per second, all sessions together (every frame's audio reaches the client)."""

    @property
    def worst_late(self) -> float:
        return max(s.late_share for s in self.stats)

    def kbit(self, speaking: bool) -> float | None:
        values = [s.kbit_s for s in self.stats if s.speaking == speaking]
        return statistics.median(values) if values else None


def session_stats(client: LiveClient, start: float, end: float, speaking: bool) -> SessionStats:
    """Lateness of the video frames that arrived in [start, end], against the pts clock of the whole session."""
    media = client.media
    window = [m for m in media if start <= m.at <= end]
    pts0 = window[0].pts
    offsets = [m.at - (m.pts - pts0) / RATE for m in window if m.kind == KIND_VIDEO]
    late = sum(offset > min(offsets) + 1 / FPS for offset in offsets)
    videos = {m.pts for m in window if m.kind == KIND_VIDEO}
    dropped = sum(m.pts not in videos for m in window if m.kind == KIND_AUDIO)
    first = next(m for m in media if m.kind == KIND_VIDEO)
    t0, pts0 = first.at, first.pts
    stalls = 0
    for m in (m for m in media if m.kind == KIND_VIDEO):
        if m.at > t0 + (m.pts - pts0) / RATE + 1 / FPS:
            stalls += start <= m.at <= end
            t0, pts0 = m.at, m.pts
    size = sum(len(m.payload) + 13 for m in window)
    return SessionStats(speaking, len(videos), late, dropped, stalls, size * 8 / 1000 / (end - start))


async def keep_speaking(client: LiveClient, stop: asyncio.Event) -> None:
    """`say` the paragraph again whenever the previous one has ended (within the 10 per 10 s rate limit)."""
    while not stop.is_set():
        ends = len(client.of("turn_end"))
        await client.send("say", text=PARAGRAPH)
        while len(client.of("turn_end")) == ends and not stop.is_set() and not client.closed.is_set():
            await asyncio.sleep(0.05)
        if client.closed.is_set():
            return


async def run_load(models: SharedModels, codec: str, mix: str, count: int) -> Load:
    speakers = count if mix == "all speaking" else count // 2
    async with serving(models) as (server, agent):
        clients = [await open_client(ws_url(server), {"codecs": [codec]}) for _ in range(count)]
        for client in clients:
            await client.until(lambda c=client: c.video())
        stop = asyncio.Event()
        talkers = [asyncio.create_task(keep_speaking(c, stop)) for c in clients[:speakers]]
        await asyncio.sleep(WARMUP)
        anchors = sum(s.media.reanchors for s in agent.sessions)
        start, cpu = time.perf_counter(), cpu_seconds()
        await asyncio.sleep(WINDOW)
        end = time.perf_counter()
        load = Load(codec, mix, count)
        load.cpu_cores = (cpu_seconds() - cpu) / (end - start)
        load.reanchors = sum(s.media.reanchors for s in agent.sessions) - anchors
        stop.set()
        load.stats = [session_stats(c, start, end, k < speakers) for k, c in enumerate(clients)]
        load.frames_per_s = sum(sum(start <= m.at <= end for m in c.audio()) for c in clients) / (end - start)
        for task in talkers:
            task.cancel()
        await close(clients)
    return load


async def bench_sessions(models: SharedModels) -> list[Load]:
    """Count up per codec and mix, and stop a mix once it fails twice in a row (more would only fail more)."""
    loads: list[Load] = []
    for codec in CODECS:
        for mix in ("mixed", "all speaking"):
            failures = 0
            for count in COUNTS:
                load = await run_load(models, codec, mix, count)
                loads.append(load)
                print(
                    f"{codec} {mix} {count}: worst late {load.worst_late:.1%}, re-anchors {load.reanchors}, "
                    f"CPU {load.cpu_cores:.2f} cores",
                    flush=True,
                )
                failures = failures + 1 if load.worst_late >= LATE_LIMIT else 0
                if failures == 2:
                    break
    return loads


# --- 3 and 4: picture after sound, interrupt ---------------------------------------------------------------


async def next_event(client: LiveClient, kind: str, seen: int, timeout: float = 60.0) -> dict[str, Any]:
    """The first `kind` event after the `seen` ones already received."""
    return (await client.until(lambda: client.of(kind)[seen:], timeout=timeout))[0]


async def turn_media(client: LiveClient, turn: int, kind: int, count: int) -> None:
    await client.until(lambda: sum(m.turn == turn and m.kind == kind for m in client.media) >= count)


async def bench_turns(models: SharedModels) -> tuple[list[float], list[float], list[float]]:
    """(frame_after_audio_ms per `say`, interrupt → turn_end ms, interrupt → last media of the turn ms)."""
    after_audio: list[float] = []
    to_end: list[float] = []
    to_last: list[float] = []
    async with serving(models) as (server, _):
        client = await open_client(ws_url(server), {"codecs": ["h264"]})
        await client.until(lambda: client.video())
        for k in range(TURNS):
            seen = len(client.of("metrics"))
            await client.send("say", text=f"Here is answer number {k + 1}. It is short.")
            metrics = await next_event(client, "metrics", seen)
            after_audio.append(metrics.get("frame_after_audio_ms", float("nan")))
            await asyncio.sleep(1.1)  # the `say` rate limit is 10 per 10 s
        for _ in range(TURNS):
            seen = len(client.of("turn_start")), len(client.of("turn_end"))
            await client.send("say", text=LONG_SAY)
            turn = (await next_event(client, "turn_start", seen[0]))["turn"]
            await turn_media(client, turn, KIND_AUDIO, 25)
            sent = time.perf_counter()
            await client.send("interrupt")
            end = await next_event(client, "turn_end", seen[1])
            await asyncio.sleep(0.5)  # anything of the turn still in flight arrives by now
            last = max(m.at for m in client.media if m.turn == turn)
            to_end.append((end["_at"] - sent) * 1000)
            to_last.append(max(0.0, last - sent) * 1000)
            await asyncio.sleep(0.6)
        await close([client])
    return after_audio, to_end, to_last


# --- 5: typed question → first reply frame with the offline LLM -------------------------------------------


async def bench_llm(models: SharedModels) -> list[dict[str, Any]]:
    metrics: list[dict[str, Any]] = []
    async with serving(models) as (server, _):
        client = await open_client(ws_url(server), {"codecs": ["h264"]})
        await client.until(lambda: client.of("turn_end"), timeout=120)  # the persona's greeting
        for question in QUESTIONS:
            seen = len(client.of("metrics")), len(client.of("turn_start"))
            await client.send("text", text=question)
            # Once the reply's first frame is here its latencies are known: stop it rather than hear it all.
            turn = (await next_event(client, "turn_start", seen[1], timeout=180))["turn"]
            await turn_media(client, turn, KIND_VIDEO, 1)
            await asyncio.sleep(0.5)
            await client.send("interrupt")
            metrics.append(await next_event(client, "metrics", seen[0]))
            print(f"{question} → {metrics[-1].get('end_to_end_ms', float('nan')):.0f} ms", flush=True)
            await asyncio.sleep(1.1)
        await close([client])
    return metrics


# --- report -------------------------------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    values = sorted(v for v in values if v == v)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def other_load() -> str:
    """What else was using the machine: load average and the busiest other processes (by name)."""
    names: dict[str, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            name = text[text.index("(") + 1 : text.rindex(")")]
            if int(stat.parent.name) != os.getpid() and text[text.rindex(")") + 2] == "R":
                names[name] = names.get(name, 0) + 1
    running = ", ".join(f"{n} ×{c}" if c > 1 else n for n, c in sorted(names.items())) or "nothing else"
    return f"load average {os.getloadavg()[0]:.1f}; other runnable processes: {running}"


def report(loads: list[Load], turns: tuple[list[float], list[float], list[float]], llm: list[dict[str, Any]]) -> str:
    lines = [
        f"Live server benchmark, {datetime.date.today().isoformat()}, {os.cpu_count()} cores, avatar "
        f"{SIZE[0]}x{SIZE[1]} at {FPS} FPS, piper voice, real websocket clients on loopback in the same process.",
        "",
        "**This machine is shared** with other agents' builds, tests and benchmarks, so every number here is "
        f"a lower bound of what an idle 2-core machine does. At the start: {START_LOAD}. At the end: "
        f"{other_load()}.",
    ]
    if loads:
        lines += sessions_report(loads)
    if turns[0]:
        lines += turns_report(*turns)
    if llm:
        lines += llm_report(llm)
    return "\n".join(lines) + "\n"


def sessions_report(loads: list[Load]) -> list[str]:
    lines = [
        "",
        "## Sessions sustained at 25 FPS",
        "",
        f"Each level runs {WINDOW:.0f} s after {WARMUP:.0f} s of warm-up. Speaking sessions `say` a paragraph "
        "again and again; idle ones stream the idle avatar. A frame is late when it reaches the client more than "
        "40 ms after its due time on a steady 25 FPS clock (due = t0 + (pts - pts0) / 24000, t0 anchored at the "
        "earliest arrival the window's frames allow, so one slow start does not mark a smooth stream late, but "
        "every clock slip marks all frames after it); a picture the server dropped for a slow reader counts as "
        "late. 'Worst late' is the session with the most late frames. CPU is this "
        "process (server and clients), in cores. A mix stops after two failing levels in a row.",
        "",
        "'Stalls' counts late frames as a player that waits when it runs dry sees them (each late frame restarts "
        "its schedule), worst session. 'CPU ms/frame' is this process's CPU time per frame drawn: with nothing "
        "else running, 2 cores would carry about 2000 / (25 × that) sessions — an estimate, not a measurement.",
        "",
        "| codec | mix | sessions | worst late | median late | worst stalls | server re-anchors | frames/s drawn "
        "| CPU (cores) | CPU ms/frame | pass (< 1 %) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for load in loads:
        per_frame = load.cpu_cores * 1000 / max(load.frames_per_s, 1e-9)
        lines.append(
            f"| {load.codec} | {load.mix} | {load.sessions} | {load.worst_late:.1%} "
            f"| {statistics.median(s.late_share for s in load.stats):.1%} | {max(s.stalls for s in load.stats)} "
            f"| {load.reanchors} | {load.frames_per_s:.0f} / {FPS * load.sessions} | {load.cpu_cores:.2f} "
            f"| {per_frame:.1f} | {'yes' if load.worst_late < LATE_LIMIT else 'no'} |"
        )
    lines += ["", "| codec | mix | most sessions with < 1 % late frames | goal |", "|---|---|---|---|"]
    for codec in CODECS:
        for mix, goal in (("mixed", 8), ("all speaking", 4)):
            passed = [x.sessions for x in loads if x.codec == codec and x.mix == mix and x.worst_late < LATE_LIMIT]
            lines.append(f"| {codec} | {mix} | {max(passed) if passed else 'fewer than 2'} | ≥ {goal} |")
    lines += [
        "",
        "## Bandwidth per session",
        "",
        "Bytes received by the client (headers included) over the window, median over the sessions of the "
        "smallest level of each run.",
        "",
        "| codec | idle (kbit/s) | speaking (kbit/s) |",
        "|---|---|---|",
    ]
    for codec in CODECS:
        first = [x for x in loads if x.codec == codec and x.mix == "mixed"]
        if first:
            idle, speaking = first[0].kbit(False), first[0].kbit(True)
            lines.append(f"| {codec} | {idle:.0f} | {speaking:.0f} |")
    return lines


def turns_report(after_audio: list[float], to_end: list[float], to_last: list[float]) -> list[str]:
    return [
        "",
        "## Latencies of one session (h264)",
        "",
        f"Median and p90 over {TURNS} turns each.",
        "",
        "| measure | median (ms) | p90 (ms) | target (ms) |",
        "|---|---|---|---|",
        f"| first video frame sent after its first TTS audio (`frame_after_audio_ms`, `say`) "
        f"| {quantile(after_audio, 0.5):.0f} | {quantile(after_audio, 0.9):.0f} | ≤ 50 |",
        f"| `interrupt` → client receives `turn_end` | {quantile(to_end, 0.5):.0f} | {quantile(to_end, 0.9):.0f} "
        "| ≤ 200 |",
        f"| `interrupt` → last media of the turn arrives | {quantile(to_last, 0.5):.0f} "
        f"| {quantile(to_last, 0.9):.0f} | ≤ 200 |",
    ]


def llm_report(llm: list[dict[str, Any]]) -> list[str]:
    def values(key: str) -> list[float]:
        return [float(m[key]) for m in llm if key in m]

    e2e = values("end_to_end_ms")
    lines = [
        "",
        f"## Typed message → first reply frame, offline LLM (Qwen 0.5B, llama.cpp), {len(llm)} questions",
        "",
        "From the server receiving `text` to the first frame of the reply sent (the `metrics` event). "
        "Questions about the presenter persona's product (Nimbus), one session, h264.",
        "",
        "| measure | p50 (ms) | p90 (ms) |",
        "|---|---|---|",
        f"| end to end (target ≤ 1000 p50, aim 500) | {quantile(e2e, 0.5):.0f} | {quantile(e2e, 0.9):.0f} |",
    ]
    for key in ("llm_first_token_ms", "llm_first_sentence_ms", "tts_first_audio_ms"):
        lines.append(f"| {key} | {quantile(values(key), 0.5):.0f} | {quantile(values(key), 0.9):.0f} |")
    return lines


START_LOAD = ""


async def with_offline_llm() -> list[dict[str, Any]]:
    """The presenter persona with the offline LLM, loaded as `digital-human serve` loads it."""
    models = await SharedModels.load(bench_config(None))
    try:
        return await bench_llm(models)
    finally:
        await models.aclose()


async def amain() -> int:
    global START_LOAD
    START_LOAD = other_load()
    parts = set(sys.argv[1:]) or {"sessions", "turns", "llm"}
    with tempfile.TemporaryDirectory() as tmp:
        persona = Path(tmp) / "quiet.yaml"
        persona.write_text(QUIET_PERSONA)
        models = await SharedModels.load(bench_config(persona), with_llm=False)
        loads = await bench_sessions(models) if "sessions" in parts else []
        turns = await bench_turns(models) if "turns" in parts else ([], [], [])
        await models.aclose()
    llm: list[dict[str, Any]] = []
    if "llm" in parts:
        llm = await with_offline_llm()
    text = report(loads, turns, llm)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "live.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(amain()))
