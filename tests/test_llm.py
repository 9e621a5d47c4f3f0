"""LLMClient against a scripted server over real HTTP.

These are contract tests of the OpenAI streaming chat format: no real endpoint can be made slow,
broken or rude on cue, so `tests/llm_server.py` speaks that wire format exactly and plays each
failure. Timeouts are a fraction of a second where a failure is expected and the server's delays
are far longer (or endless), so a slow machine cannot turn a pass into a fail; waits for the
server to notice a hang-up allow 5 s although it takes milliseconds, so only a real hang fails.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from llm_server import Reply, ScriptedOpenAIServer

from agent.llm import LLMClient, LLMError
from agent.llm_local import open_llm
from core.config import LLMConfig

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}]
HANG_UP_WAIT = 5.0


@pytest.fixture
async def server():
    async with ScriptedOpenAIServer() as s:
        yield s


def client_for(server: ScriptedOpenAIServer, **kwargs) -> LLMClient:
    options = {"first_token_timeout": 5.0, "token_timeout": 5.0, "retries": 2, "backoff": 0.01} | kwargs
    return LLMClient(base_url=server.url, api_key=None, model="test-model", **options)


async def collect(client: LLMClient, pieces: list[str] | None = None, **kwargs) -> list[str]:
    """Every piece of one reply; `pieces` keeps what arrived even if the reply then fails."""
    got = [] if pieces is None else pieces
    async with client.stream(MESSAGES, **kwargs) as reply:
        async for piece in reply:
            got.append(piece)
    return got


async def test_streams_pieces_and_sends_the_request(server):
    client = client_for(server, temperature=0.3, max_tokens=50)
    reply = client.stream(MESSAGES, max_tokens=12)
    pieces = [piece async for piece in reply]
    assert pieces == ["Hello", " there", "!"]
    assert reply.timings.finish_reason == "stop"
    assert reply.timings.attempts == 1 and reply.timings.deltas == 3
    assert 0 < reply.timings.ttft <= reply.timings.total
    request = server.requests[0]
    assert request["stream"] is True and request["model"] == "test-model"
    assert request["messages"] == MESSAGES
    assert request["max_tokens"] == 12 and request["temperature"] == 0.3


async def test_first_token_is_text_not_the_role_chunk(server):
    """The role chunk arrives at once; time to first token waits for real text."""
    server.queue(Reply(first_delay=0.3))
    reply = client_for(server).stream(MESSAGES)
    assert [p async for p in reply] == ["Hello", " there", "!"]
    assert reply.timings.ttft >= 0.3


async def test_no_first_token_in_time_is_one_line_and_hangs_up(server):
    server.queue(Reply(first_delay=60))
    expected = r"^the language model at http://127\.0\.0\.1:\d+/v1 did not answer within 0\.5 s$"
    with pytest.raises(LLMError, match=expected):
        await collect(client_for(server, first_token_timeout=0.5))
    await asyncio.wait_for(server.disconnected.wait(), HANG_UP_WAIT)
    assert len(server.requests) == 1  # the budget is spent: no retry


async def test_stall_mid_reply_keeps_what_was_said(server):
    server.queue(Reply(pieces=("One", " two"), ending="stall"))
    pieces: list[str] = []
    with pytest.raises(LLMError, match="stopped answering mid-reply"):
        await collect(client_for(server, token_timeout=0.3), pieces)
    assert pieces == ["One", " two"]
    assert len(server.requests) == 1


async def test_slow_but_steady_reply_completes(server):
    server.queue(Reply(pieces=("a", "b", "c"), delay=0.2))
    assert await collect(client_for(server, token_timeout=3.0)) == ["a", "b", "c"]


@pytest.mark.parametrize(
    "failure",
    [
        Reply(status=500),
        Reply(status=503),
        Reply(status=429, retry_after="0"),
        Reply(pieces=(), ending="drop"),
        Reply(pieces=(), ending="truncate"),
    ],
    ids=["500", "503", "429", "dropped", "ended-empty"],
)
async def test_failure_before_first_token_is_retried(server, failure):
    server.queue(failure, Reply(pieces=("Fine",)))
    reply = client_for(server).stream(MESSAGES)
    assert [p async for p in reply] == ["Fine"]
    assert reply.timings.attempts == 2 and len(server.requests) == 2


async def test_retries_are_bounded(server):
    server.queue(*[Reply(status=500)] * 5)
    with pytest.raises(LLMError, match=r"failed \(HTTP 500\)$"):
        await collect(client_for(server, retries=2))
    assert len(server.requests) == 3


async def test_retry_after_longer_than_the_budget_gives_up_at_once(server):
    server.queue(Reply(status=429, retry_after="30"))
    with pytest.raises(LLMError, match=r"rate-limiting requests \(HTTP 429\)"):
        await collect(client_for(server, first_token_timeout=2.0))
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "rejected the API key"),
        (404, "has no model 'test-model'"),
        (400, r"refused the request \(HTTP 400\): scripted failure 400"),
    ],
)
async def test_client_errors_are_not_retried(server, status, message):
    server.queue(Reply(status=status))
    with pytest.raises(LLMError, match=message):
        await collect(client_for(server))
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("ending", "message"),
    [("drop", "broke off its reply"), ("truncate", "cut its reply off"), ("garbage", "not in the OpenAI format")],
)
async def test_failure_after_text_is_never_retried(server, ending, message):
    """Text already handed out may have been spoken: a retry would say it twice."""
    server.queue(Reply(pieces=("Once", " only"), ending=ending))
    pieces: list[str] = []
    with pytest.raises(LLMError, match=message):
        await collect(client_for(server), pieces)
    assert pieces == ["Once", " only"]
    assert len(server.requests) == 1


async def test_garbage_before_text_is_not_retried(server):
    server.queue(Reply(pieces=(), ending="garbage"))
    with pytest.raises(LLMError, match="not in the OpenAI format"):
        await collect(client_for(server))
    assert len(server.requests) == 1


async def test_closing_the_reply_hangs_up(server):
    server.queue(Reply(pieces=("First",) + ("more",) * 1000, delay=0.05))
    reply = client_for(server).stream(MESSAGES)
    assert await anext(reply) == "First"
    await reply.aclose()
    await asyncio.wait_for(server.disconnected.wait(), HANG_UP_WAIT)
    assert server.pieces_sent < 1000


async def test_cancelling_the_reader_hangs_up(server):
    server.queue(Reply(pieces=("First",), ending="stall"))
    first = asyncio.Event()

    async def speak() -> None:
        async for _ in client_for(server).stream(MESSAGES):
            first.set()

    task = asyncio.create_task(speak())
    await asyncio.wait_for(first.wait(), HANG_UP_WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.disconnected.wait(), HANG_UP_WAIT)


async def test_nothing_listening_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the client connects: nothing listens there
    client = LLMClient(base_url=f"http://127.0.0.1:{port}/v1", api_key=None, model="m", retries=1, backoff=0.01)
    reply = client.stream(MESSAGES)
    with pytest.raises(LLMError, match=rf"^cannot reach language model at http://127\.0\.0\.1:{port}/v1$"):
        await anext(reply)
    assert reply.timings.attempts == 2


async def test_from_config_uses_the_endpoint_and_its_settings(server):
    cfg = LLMConfig(base_url=server.url, model="cfg-model", temperature=0.2, max_tokens=33)
    client = LLMClient.from_config(cfg)
    assert await collect(client) == ["Hello", " there", "!"]
    assert server.requests[0]["model"] == "cfg-model"
    assert server.requests[0]["max_tokens"] == 33 and server.requests[0]["temperature"] == 0.2
    await client.aclose()


async def test_local_server_stands_in_with_its_own_label(server):
    client = LLMClient.from_config(LLMConfig(), base_url=server.url, model="qwen", label="the offline model")
    server.queue(Reply(status=401))
    with pytest.raises(LLMError, match=r"^the offline model rejected the API key"):
        await collect(client)


@pytest.mark.parametrize(
    ("settings", "local"),
    [
        ({}, True),
        ({"api_key": "sk-x"}, False),
        ({"base_url": "http://127.0.0.1:11434/v1"}, False),
        ({"provider": "local", "api_key": "sk-x"}, True),
        ({"provider": "openai"}, False),
    ],
)
def test_auto_provider_is_offline_unless_an_endpoint_or_key_is_set(settings, local):
    assert LLMConfig(**settings).uses_local_model is local


async def test_open_llm_with_an_endpoint_starts_nothing_and_warms_nothing(server):
    async with open_llm(LLMConfig(base_url=server.url, model="remote")) as client:
        assert await client.warm("A long persona prompt.") is None
        assert server.requests == []  # warming a remote endpoint would only cost time and money
        assert await collect(client) == ["Hello", " there", "!"]
