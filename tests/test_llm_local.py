"""The offline LLM: model assembly from part packages, and the real 0.5B model served by llama.cpp.

Assembly runs on small part packages made here (real files, real imports) so that corruption,
a wrong pin and a missing package can be played quickly. The server tests use the real Qwen2.5
0.5B from its registry packages; their waits are generous (a loaded 2-core machine can be slow)
and assert on counts (tokens read, processes alive), not on speed.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent import llm_local
from agent.llm import LLMClient, LLMError
from agent.llm_local import LocalLLMServer, LocalModel, assemble_model, open_llm
from core.config import LLMConfig
from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
PROCESS_EXIT_WAIT = 30.0
"""Seconds for a process to disappear: it takes milliseconds; only a process that never exits fails."""
PERSONA = (
    "You are Mia, the virtual presenter of a small maritime museum. The museum has four rooms: sailing "
    "trawlers, the herring trade, the lifeboat service and the sea today. It opens every day from ten to "
    "five. Answer in the user's language, in one or two short spoken sentences without markdown."
)


# --- assembly, on part packages made for the test ---------------------------------------------------


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalModel:
    """Three part packages `fakellm_partN` on sys.path, registered as offline model "fake"."""
    site = tmp_path / "site"
    parts = [os.urandom(1000 + n) for n in range(3)]
    for n, data in enumerate(parts, start=1):
        package = site / f"fakellm_part{n}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{n:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    whole = b"".join(parts)
    digest = hashlib.sha256(whole).hexdigest()
    model = LocalModel("fake", "fake.gguf", "fakellm_part", 3, len(whole), digest, "make fake")
    monkeypatch.setitem(llm_local.MODELS, "fake", model)
    return model


def test_parts_are_joined_in_order_and_pinned(fake_model: LocalModel, tmp_path: Path):
    path = assemble_model("fake", tmp_path / "cache")
    assert path.read_bytes() == b"".join(
        (tmp_path / "site" / f"fakellm_part{n}" / "data" / f"part{n:02d}.bin").read_bytes() for n in (1, 2, 3)
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf", "fake.gguf.verified"]


def test_a_verified_model_is_not_read_again(fake_model: LocalModel, tmp_path: Path):
    path = assemble_model("fake", tmp_path / "cache")
    (tmp_path / "site" / "fakellm_part2" / "data" / "part02.bin").unlink()  # the parts are not needed any more
    assert assemble_model("fake", tmp_path / "cache") == path


def test_a_corrupted_model_is_rebuilt(fake_model: LocalModel, tmp_path: Path):
    path = assemble_model("fake", tmp_path / "cache")
    data = bytearray(path.read_bytes())
    data[500] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, new mtime: the stamp no longer vouches for it
    assert hashlib.sha256(assemble_model("fake", tmp_path / "cache").read_bytes()).hexdigest() == fake_model.sha256


def test_packages_that_do_not_match_the_pin_leave_nothing(
    fake_model: LocalModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(llm_local.MODELS, "fake", replace(fake_model, sha256="0" * 64))
    with pytest.raises(UserError, match=r"^the offline model fake's packages do not match its pinned SHA-256"):
        assemble_model("fake", tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_missing_package_says_how_to_install_it(fake_model: LocalModel, tmp_path: Path, monkeypatch):
    monkeypatch.setitem(llm_local.MODELS, "fake", replace(fake_model, parts=4))
    expected = r"^the offline model fake is not installed \(package fakellm-part4 is missing\): run `make fake`$"
    with pytest.raises(UserError, match=expected):
        assemble_model("fake", tmp_path / "cache")


def test_the_large_model_names_its_install_target():
    assert llm_local.MODELS["qwen2.5-1.5b"].install == "make llm-large"
    assert LLMConfig().local_model == "qwen2.5-0.5b"


async def test_a_model_llama_cpp_cannot_load_is_one_line_and_leaves_no_process(tmp_path: Path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(4096))
    server = LocalLLMServer(bad, name="bad", threads=1)
    with pytest.raises(UserError, match=r"^the offline model bad could not start: \S"):
        await server.start()
    assert server.pid is None


# --- the real 0.5B model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return assemble_model("qwen2.5-0.5b", tmp_path_factory.mktemp("llm-models"))


@pytest.fixture(scope="module")
def server(qwen_path: Path) -> Iterator[LocalLLMServer]:
    s = LocalLLMServer(qwen_path, name="qwen2.5-0.5b", threads=1)
    asyncio.run(s.start())
    yield s
    s.close()


def client_of(server: LocalLLMServer) -> LLMClient:
    assert server.base_url is not None
    return LLMClient(
        base_url=server.base_url,
        api_key=server.api_key,
        model=server.name,
        temperature=0.2,
        first_token_timeout=120,
        token_timeout=60,
        caches_prompts=True,
    )


async def answer(client: LLMClient, question: str, max_tokens: int = 24) -> tuple[str, dict]:
    messages = [{"role": "system", "content": PERSONA}, {"role": "user", "content": question}]
    reply = client.stream(messages, max_tokens=max_tokens)
    text = "".join([piece async for piece in reply])
    assert reply.timings.finish_reason in ("stop", "length")
    return text, reply.timings.server or {}


@pytest.mark.slow
async def test_answers_in_english(server: LocalLLMServer):
    text, _ = await answer(client_of(server), "When does the museum open? Answer in English.")
    assert sum(ch.isascii() and ch.isalpha() for ch in text) >= 10


@pytest.mark.slow
async def test_answers_in_chinese(server: LocalLLMServer):
    text, _ = await answer(client_of(server), "博物馆有几个展厅？请用中文回答。")
    assert sum("\u4e00" <= ch <= "\u9fff" for ch in text) >= 5


@pytest.mark.slow
async def test_a_warmed_persona_is_not_read_again(server: LocalLLMServer):
    client = client_of(server)
    warm = await client.warm(PERSONA)
    assert warm is not None and warm.server is not None
    _, timings = await answer(client, "Is there a café?", max_tokens=4)
    assert timings["cache_n"] >= warm.server["cache_n"] + warm.server["prompt_n"] - 8  # the persona, from cache
    assert timings["prompt_n"] <= 20  # only the new question and the chat markup around it


@pytest.mark.slow
async def test_requests_without_the_key_are_refused(server: LocalLLMServer):
    assert server.base_url is not None
    stranger = LLMClient(base_url=server.base_url, api_key=None, model=server.name, first_token_timeout=120)
    with pytest.raises(LLMError, match="rejected the API key"):
        await anext(stranger.stream([{"role": "user", "content": "Hi"}], max_tokens=1))


def slots(server: LocalLLMServer) -> list[dict]:
    """llama.cpp's view of its slots (GET /slots): what each is doing and how many tokens it generated."""
    assert server.base_url is not None
    url = server.base_url.removesuffix("/v1") + "/slots"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {server.api_key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.mark.slow
async def test_closing_a_reply_stops_generation(server: LocalLLMServer):
    """Hanging up must free the model at once, not let it write the rest of a reply nobody will hear.

    Counting to 1000 in words takes thousands of tokens: even at 100 tokens/s (twice this machine's
    best) the 1500 allowed would keep the slot busy for 15 s, while a cancelled one is free within
    a token or two; so a 10 s wait separates the two on a slow machine as well as on a fast one.
    """
    reply = client_of(server).stream([{"role": "user", "content": "Count from 1 to 1000, in words."}], max_tokens=1500)
    await anext(reply)
    await reply.aclose()
    deadline = time.monotonic() + 10
    while any(s["is_processing"] for s in await asyncio.to_thread(slots, server)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not any(s["is_processing"] for s in await asyncio.to_thread(slots, server))


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an exited child nobody has reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + PROCESS_EXIT_WAIT
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def our_servers() -> set[int]:
    """Pids of llama.cpp server processes started by this test process."""
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            if b"agent.llama_process" in (proc / "cmdline").read_bytes().split(b"\0") and alive(int(proc.name)):
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == os.getpid():
                    pids.add(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids


@pytest.mark.slow
async def test_open_llm_serves_warms_and_stops(qwen_path: Path):
    before = our_servers()
    cfg = LLMConfig(provider="local", cache_dir=qwen_path.parent, system_prompt=PERSONA, max_tokens=8)
    async with open_llm(cfg) as client:
        (pid,) = our_servers() - before
        _, timings = await answer(client, "Hello!", max_tokens=4)
        assert timings["prompt_n"] <= 20  # open_llm warmed the configured persona
    assert wait_gone(pid)


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_the_server_dies_with_its_parent(qwen_path: Path, how: signal.Signals):
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from agent.llm_local import LocalLLMServer\n"
        "async def main():\n"
        "    server = LocalLLMServer(Path(sys.argv[1]), name='qwen2.5-0.5b', threads=1)\n"
        "    await server.start()\n"
        "    print(server.pid, flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(qwen_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.send_signal(how)
        parent.wait(timeout=PROCESS_EXIT_WAIT)
        assert wait_gone(pid)
    finally:
        parent.kill()
        parent.wait()
