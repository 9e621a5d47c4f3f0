"""Offline LLM speed under load: which model size and thread setting can start a spoken reply in time.

The product goal is typed message → first reply frame ≤ 1.0 s (p50), so the LLM's first speakable
unit (what `SentenceSegmenter` hands to TTS) must come well before that. Each case starts the
offline server as the product does (child process, persona prompt warmed), keeps one core busy
with another process (a stand-in for TTS and rendering; other jobs on this machine add more),
then sends distinct ~60-token user messages after the ~300-token persona prompt. Reported: time to
first token and to first speakable unit, prompt and generation speed (llama.cpp's own timings),
tokens read per turn (the warm prefix is not read again), start-up and resident memory.
Medians and p90 over REPEATS runs. One case runs llama.cpp inside the measuring process instead of
a child, to compare. Writes benchmarks/results/llm.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
CASE_BUDGET = 150.0
"""Seconds of turns per case: a setting whose threads collapse stops there (its turn count says so)."""
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
    omp_wait: str
    in_process: bool = False
    ready: float | None = None
    warm_tokens: int | None = None
    warm: float | None = None
    rss_mb: float | None = None
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


async def measure(client: LLMClient, case: Case) -> None:
    """Warm the persona, then time REPEATS turns of new user messages."""
    warm = await client.warm(PERSONA)
    assert warm is not None and warm.server is not None
    case.warm, case.warm_tokens = warm.total, warm.server.get("prompt_n")
    budget_end = time.perf_counter() + CASE_BUDGET
    for i in range(REPEATS):
        if time.perf_counter() > budget_end:
            break
        question = QUESTIONS[i % len(QUESTIONS)]
        messages = [{"role": "system", "content": PERSONA}, {"role": "user", "content": question}]
        segmenter = SentenceSegmenter()
        started = time.perf_counter()
        first_unit = None
        text = ""
        async with client.stream(messages, max_tokens=MAX_TOKENS) as reply:
            async for piece in reply:
                text += piece
                if first_unit is None and segmenter.feed(piece):
                    first_unit = time.perf_counter() - started
        if first_unit is None and segmenter.flush():
            first_unit = time.perf_counter() - started
        server = reply.timings.server or {}
        case.ttft.append(reply.timings.ttft or 0.0)
        case.first_unit.append(first_unit or float("nan"))
        case.prompt_tokens.append(int(server.get("prompt_n", 0)))
        case.prompt_tps.append(float(server.get("prompt_per_second", 0.0)))
        case.gen_tps.append(float(server.get("predicted_per_second", 0.0)))
        if i == 0:
            case.sample = text


def rss_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


@contextlib.contextmanager
def busy_core() -> Iterator[None]:
    """Another process spinning on one core for the whole measurement (and not a moment after we die)."""
    spinner = subprocess.Popen([sys.executable, "-c", f"import os\nwhile os.getppid() == {os.getpid()}: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def client_for(url: str, key: str, model: str) -> LLMClient:
    return LLMClient(
        base_url=url, api_key=key, model=model, first_token_timeout=60, token_timeout=30, caches_prompts=True
    )


async def run_child_case(case: Case) -> None:
    path = assemble_model(case.model, CACHE)
    os.environ["OMP_WAIT_POLICY"] = case.omp_wait
    server = LocalLLMServer(path, name=case.model, threads=case.threads, batch_threads=case.batch_threads)
    async with server:
        case.ready = server.started_in
        assert server.base_url is not None and server.pid is not None
        client = client_for(server.base_url, server.api_key, case.model)
        await measure(client, case)
        case.rss_mb = rss_mb(server.pid)
        await client.aclose()


async def in_process_main(model: str, threads: int, batch_threads: int) -> None:
    """`--in-process`: serve from this very process (how xllamacpp.Server is meant to be used) and print the case."""
    import xllamacpp

    from agent.llama_process import _params

    case = Case(model, threads, batch_threads, os.environ.get("OMP_WAIT_POLICY", "default"), in_process=True)
    args = argparse.Namespace(
        model=str(assemble_model(model, CACHE)),
        alias=model,
        threads=threads,
        batch_threads=batch_threads,
        context=4096,
        parallel=2,
    )
    started = time.perf_counter()
    server = xllamacpp.Server(_params(args, "bench"))
    case.ready = time.perf_counter() - started
    client = client_for(server.listening_address + "/v1", "bench", model)
    await measure(client, case)
    case.rss_mb = rss_mb(os.getpid())
    print(json.dumps(case.__dict__), flush=True)
    os._exit(0)


def run_in_process_case(case: Case) -> None:
    env = dict(os.environ, OMP_WAIT_POLICY=case.omp_wait)
    command = [sys.executable, __file__, "--in-process", case.model, str(case.threads), str(case.batch_threads)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    for key, value in json.loads(out.strip().splitlines()[-1]).items():
        setattr(case, key, value)


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def report(cases: list[Case], load: str) -> str:
    lines = [
        f"Offline LLM on this machine (2 shared cores; {load}). {REPEATS} turns per case: a new ~60-token "
        f"user message after the warmed ~{cases[0].warm_tokens}-token persona prompt, up to {MAX_TOKENS} tokens "
        f"of reply. Times in seconds; medians with p90. Target for the first speakable unit: "
        f"≤ {TARGET_FIRST_UNIT} s (the LLM's share of 1.0 s to the first reply frame). A case stops after "
        f"{CASE_BUDGET:g} s of turns, so fewer than {REPEATS} turns means that setting collapsed.",
        "",
        "| case | turns | ready | first token p50 / p90 | first speakable unit p50 / p90 | tokens read per turn "
        "| prompt tok/s | generation tok/s | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        lines.append(
            f"| {c.label} | {len(c.ttft)} | {c.ready:.2f} | {p50(c.ttft):.2f} / {p90(c.ttft):.2f} "
            f"| {p50(c.first_unit):.2f} / {p90(c.first_unit):.2f} | {p50(c.prompt_tokens):.0f} "
            f"| {p50(c.prompt_tps):.0f} | {p50(c.gen_tps):.1f} | {c.rss_mb or 0:.0f} |"
        )
    lines += [
        "",
        "Warming the persona prompt at start (once per persona): "
        + "; ".join(f"{c.model} {c.warm_tokens} tokens in {c.warm:.2f} s" for c in cases if not c.in_process)
        + ".",
        "",
        "First reply of each case (question: “" + QUESTIONS[0] + "”):",
        "",
    ]
    lines += [f"- {c.label}: “{c.sample.strip()}”" for c in cases]
    return "\n".join(lines) + "\n"


async def main() -> None:
    cases = [
        Case("qwen2.5-0.5b", 1, 1, "PASSIVE"),
        Case("qwen2.5-0.5b", 1, 2, "PASSIVE"),
        Case("qwen2.5-0.5b", 2, 2, "PASSIVE"),
        Case("qwen2.5-0.5b", 2, 2, "ACTIVE"),
        Case("qwen2.5-0.5b", 1, 2, "PASSIVE", in_process=True),
        Case("qwen2.5-1.5b", 1, 1, "PASSIVE"),
        Case("qwen2.5-1.5b", 1, 2, "PASSIVE"),
        Case("qwen2.5-1.5b", 2, 2, "PASSIVE"),
    ]
    available = [c for c in cases if _installed(c.model)]
    with busy_core():
        for case in available:
            print(f"- {case.label}", flush=True)
            if case.in_process:
                run_in_process_case(case)
            else:
                await run_child_case(case)
            print(f"  first unit p50 {p50(case.first_unit):.2f} s, gen {p50(case.gen_tps):.1f} tok/s", flush=True)
    load = "one core kept busy by another process, other jobs running too"
    with open("/proc/loadavg") as f:
        load += f", load average {f.read().split()[0]} at the end"
    text = report(available, load)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llm.md").write_text(text)
    print(text)


def _installed(model: str) -> bool:
    try:
        assemble_model(model, CACHE)
    except UserError as exc:
        print(f"skipping {model}: {exc}", flush=True)
        return False
    return True


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--in-process":
        asyncio.run(in_process_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        asyncio.run(main())
