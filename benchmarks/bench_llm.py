"""Offline LLM speed under load: which model size and thread setting can start a spoken reply in time.

The product goal is typed message → first reply frame ≤ 1.0 s (p50), so the LLM's first speakable
unit (what `SentenceSegmenter` hands to TTS) must come well before that. Every case starts the
offline server as the product does (child process, persona prompt warmed); one more runs llama.cpp
inside the measuring process instead, to compare. All of them are loaded together and take turns
— round i asks every case question i — so the load of the shared machine, which changes by the
minute, weighs on all cases alike. Meanwhile another process keeps one core busy (a stand-in for
TTS and rendering; other jobs on this machine add more). A turn is a new ~60-token user message
after the ~300-token persona prompt. Reported: time to first token and to first speakable unit,
prompt and generation speed (llama.cpp's own timings), tokens read per turn (the warm prefix is
not read again), the CPU the server actually got, start-up and resident memory; medians and p90.
OMP_WAIT_POLICY=ACTIVE runs alone afterwards: its idle threads would spin during the other turns.
Writes benchmarks/results/llm.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.llm import LLMClient  # noqa: E402
from agent.llm_local import LocalLLMServer, assemble_model  # noqa: E402
from core.errors import UserError  # noqa: E402
from speech.text import SentenceSegmenter  # noqa: E402

REPEATS = 7
MAX_TOKENS = 48
RESULTS = ROOT / "benchmarks" / "results"
CACHE = Path("~/.cache/digital-human/models")
TARGET_FIRST_UNIT = 0.6
"""Seconds: the LLM's share of the 1.0 s budget to the first frame (TTS, render and send need the rest)."""

PERSONA = (
    "You are Mia, the virtual presenter of the Harbour Light Maritime Museum. You stand at the entrance "
    "of the exhibition 'Ships of the North Sea', which tells the story of fishing, trade and rescue at sea "
    "from 1850 to today. The exhibition has four rooms. Room one shows wooden sailing trawlers and the "
    "tools fishermen used, including a full-size model of the lugger 'Grace', built in 1896. Room two is "
    "about the herring trade: barrels, salt, the women who gutted fish on the quay, and the railway that "
    "carried the catch inland. Room three tells the history of the lifeboat service, with the rowing "
    "lifeboat 'Providence' and the radio room of a 1950s rescue station. Room four looks at the sea today: "
    "wind farms, shipping lanes, and how scientists count fish. The museum is open every day from ten to "
    "five, except on Mondays from November to March. Tickets cost twelve euros for adults, six for "
    "children, and families pay thirty. The café on the top floor looks over the harbour. Guided tours "
    "start at eleven and at three, and last about an hour. Answer visitors' questions in the user's "
    "language, in two or three short spoken sentences without markdown, lists or emoji. If you do not "
    "know something, say so and suggest asking at the front desk."
)
QUESTIONS = (
    "Hello Mia, my two children and I have just arrived and we only have about an hour before our train "
    "leaves. Which room do you think we should visit first, and is there anything there they can touch?",
    "Good afternoon. My grandfather worked on a herring boat in the nineteen fifties and I would love to "
    "learn what his days were like. Where in the exhibition should I look, and what will I find there?",
    "Hi there, I am a teacher planning a school trip for thirty pupils aged ten next month. Could you tell "
    "me how the guided tours work, how long they take, and what the tickets would cost for a class?",
    "Excuse me, I heard there is an old rowing lifeboat somewhere in the building. How did the crews row "
    "it out in a storm, and how many people could it rescue at a time? It sounds incredibly brave.",
    "We are thinking of coming back on a Monday in January because that is our only free day this winter. "
    "Will the museum be open then, and is the café on the top floor open on the same days as well?",
    "I am curious about the wind farms you mentioned at the entrance. Do they harm the fish or the birds "
    "out at sea, and how do the scientists in room four actually count the fish that live there today?",
    "My wife uses a wheelchair and we would like to see the lugger model and then have lunch with a view "
    "of the harbour. Is everything reachable without stairs, and roughly how long should we plan for it?",
)


@dataclass
class Case:
    model: str
    threads: int
    batch_threads: int
    omp_wait: str = "PASSIVE"
    in_process: bool = False
    client: LLMClient | None = None
    in_process_server: object = None
    pid: int = 0
    ready: float = 0.0
    warm_tokens: int = 0
    warm: float = 0.0
    rss_mb: float = 0.0
    turn_wall: float = 0.0
    turn_cpu: float = 0.0
    ttft: list[float] = field(default_factory=list)
    first_unit: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    prompt_tps: list[float] = field(default_factory=list)
    gen_tps: list[float] = field(default_factory=list)
    sample: str = ""

    @property
    def label(self) -> str:
        where = "in-process" if self.in_process else "child process"
        return f"{self.model}, {self.threads} gen / {self.batch_threads} prompt thread(s), OMP {self.omp_wait}, {where}"

    @property
    def cpu_share(self) -> float:
        """CPU seconds the server got per second of its turns (1.0 = one whole core)."""
        return self.turn_cpu / self.turn_wall if self.turn_wall else 0.0


def client_for(url: str, key: str, model: str) -> LLMClient:
    return LLMClient(
        base_url=url, api_key=key, model=model, first_token_timeout=120, token_timeout=60, caches_prompts=True
    )


async def start(case: Case, stack: contextlib.AsyncExitStack) -> None:
    """Serve the case's model (child process, or in this process) and warm the persona prompt."""
    path = assemble_model(case.model, CACHE)
    started = time.perf_counter()
    if case.in_process:
        import xllamacpp  # only now: OMP_WAIT_POLICY must be set before OpenMP loads into this process

        from agent.llama_process import _params

        options = {"context": 4096, "parallel": 2, "threads": case.threads, "batch_threads": case.batch_threads}
        server = xllamacpp.Server(_params(argparse.Namespace(model=str(path), alias=case.model, **options), "bench"))
        url, key, case.pid = server.listening_address + "/v1", "bench", os.getpid()
        case.in_process_server = server  # it has no stop method: it lives until the benchmark exits
    else:
        os.environ["OMP_WAIT_POLICY"] = case.omp_wait
        child = LocalLLMServer(path, name=case.model, threads=case.threads, batch_threads=case.batch_threads)
        await stack.enter_async_context(child)
        assert child.base_url is not None and child.pid is not None
        url, key, case.pid = child.base_url, child.api_key, child.pid
    case.ready = time.perf_counter() - started
    case.client = client_for(url, key, case.model)
    warm = await case.client.warm(PERSONA)
    assert warm is not None and warm.server is not None
    case.warm, case.warm_tokens = warm.total or 0.0, int(warm.server.get("prompt_n", 0))


async def turn(case: Case, i: int) -> None:
    """Question i after the persona prompt; time it to the first token and to the first speakable unit."""
    assert case.client is not None
    messages = [{"role": "system", "content": PERSONA}, {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
    segmenter = SentenceSegmenter()
    cpu_before, started = cpu_seconds(case.pid), time.perf_counter()
    first_unit = None
    text = ""
    async with case.client.stream(messages, max_tokens=MAX_TOKENS) as reply:
        async for piece in reply:
            text += piece
            if first_unit is None and segmenter.feed(piece):
                first_unit = time.perf_counter() - started
    if first_unit is None and segmenter.flush():
        first_unit = time.perf_counter() - started
    case.turn_wall += time.perf_counter() - started
    case.turn_cpu += cpu_seconds(case.pid) - cpu_before
    server = reply.timings.server or {}
    case.ttft.append(reply.timings.ttft or 0.0)
    case.first_unit.append(first_unit or float("nan"))
    case.prompt_tokens.append(int(server.get("prompt_n", 0)))
    case.prompt_tps.append(float(server.get("prompt_per_second", 0.0)))
    case.gen_tps.append(float(server.get("predicted_per_second", 0.0)))
    if i == 0:
        case.sample = text


async def run(cases: list[Case]) -> None:
    """Start every case, then REPEATS rounds in which each case answers the same question."""
    async with contextlib.AsyncExitStack() as stack:
        for case in cases:
            await start(case, stack)
            print(f"- {case.label}: ready in {case.ready:.1f} s, persona warmed in {case.warm:.1f} s", flush=True)
        with busy_core():
            for i in range(REPEATS):
                for case in cases:
                    await turn(case, i)
                print(f"  round {i + 1}/{REPEATS} done", flush=True)
        for case in cases:
            case.rss_mb = rss_mb(case.pid)
            assert case.client is not None
            await case.client.aclose()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def busy_core() -> Iterator[None]:
    """Another process spinning on one core for the whole measurement (and not a moment after we die)."""
    spinner = subprocess.Popen([sys.executable, "-c", f"import os\nwhile os.getppid() == {os.getpid()}: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def report(cases: list[Case], load: str) -> str:
    lines = [
        f"Offline LLM on this machine (2 shared cores; {load}). {REPEATS} turns per case, cases taking turns: "
        f"a new ~60-token user message after the warmed {cases[0].warm_tokens}-token persona prompt, up to "
        f"{MAX_TOKENS} tokens of reply. Times in seconds; medians with p90. Target for the first speakable "
        f"unit: ≤ {TARGET_FIRST_UNIT} s (the LLM's share of 1.0 s to the first reply frame). CPU share is the "
        "CPU time the server got per second of its turns (1.0 = one whole core): what the other jobs left it.",
        "",
        "| case | ready | first token p50 / p90 | first speakable unit p50 / p90 | tokens read per turn "
        "| prompt tok/s | generation tok/s | CPU share | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        lines.append(
            f"| {c.label} | {c.ready:.2f} | {p50(c.ttft):.2f} / {p90(c.ttft):.2f} "
            f"| {p50(c.first_unit):.2f} / {p90(c.first_unit):.2f} | {p50(c.prompt_tokens):.0f} "
            f"| {p50(c.prompt_tps):.0f} | {p50(c.gen_tps):.1f} | {c.cpu_share:.2f} | {c.rss_mb:.0f} |"
        )
    lines += [
        "",
        "Persona prompt warmed at start (once per persona): "
        + "; ".join(f"{c.label.split(',')[0]} {c.warm_tokens} tokens in {c.warm:.1f} s" for c in cases)
        + ". The last row ran alone after the others. RSS of the in-process case is the whole measuring process.",
        "",
        "First reply of each case (question: “" + QUESTIONS[0] + "”):",
        "",
    ]
    lines += [f"- {c.label}: “{c.sample.strip()}”" for c in cases]
    return "\n".join(lines) + "\n"


def _installed(model: str) -> bool:
    try:
        assemble_model(model, CACHE)
    except UserError as exc:
        print(f"skipping {model}: {exc}", flush=True)
        return False
    return True


async def main() -> None:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # for the in-process case, before OpenMP loads
    together = [
        Case("qwen2.5-0.5b", 1, 1),
        Case("qwen2.5-0.5b", 1, 2),
        Case("qwen2.5-0.5b", 2, 2),
        Case("qwen2.5-0.5b", 1, 2, in_process=True),
        Case("qwen2.5-1.5b", 1, 1),
        Case("qwen2.5-1.5b", 1, 2),
        Case("qwen2.5-1.5b", 2, 2),
    ]
    alone = [Case("qwen2.5-0.5b", 2, 2, "ACTIVE")]
    together = [c for c in together if _installed(c.model)]
    alone = [c for c in alone if _installed(c.model)]
    await run(together)
    await run(alone)
    with open("/proc/loadavg") as f:
        load = f"one core kept busy by another process, other jobs running too; load average {f.read().split()[0]}"
    text = report(together + alone, load)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llm.md").write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    os._exit(0)  # the in-process llama.cpp server has no stop method; its threads would keep us alive
