"""Streaming replies from any OpenAI-compatible chat endpoint, with failures reduced to one short sentence.

The conversation cannot wait forever and cannot say a sentence twice, so the rules are strict: the
first word must arrive within `first_token_timeout` (connection, retries and backoff included); a
failure before the first word (refused connection, 429, 5xx, a stream that breaks or ends empty)
is retried with exponential backoff inside that budget; once text has been handed out nothing is
retried, because the caller may already have spoken it. Every failure becomes an `LLMError` whose
message can be shown or spoken as is. Closing a reply (or cancelling the task reading it) closes
the HTTP stream at once, which also tells llama.cpp to stop generating.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import openai
from pydantic import ValidationError

from core.config import LLMConfig
from core.errors import UserError

_KEYLESS = "not-needed"
"""The openai client insists on a key; local servers (llama.cpp, Ollama, vLLM) ignore it."""
_BACKOFF_CAP = 4.0
WARM_TIMEOUT = 300.0
"""Seconds allowed to process a long persona prompt once at start (a turn gets `first_token_timeout`)."""


class LLMError(UserError):
    """The language model failed; the message is short enough to show or speak to the user."""


class _Retryable(Exception):
    """A failure before the first word that another attempt may not repeat."""


@dataclass
class LLMTimings:
    """What one reply cost, for per-turn metrics; filled in while the reply streams."""

    ttft: float | None = None
    """Seconds from the request to the first piece of text (retries included)."""
    total: float | None = None
    """Seconds from the request to the end of the stream."""
    attempts: int = 0
    deltas: int = 0
    """Pieces of text received (≈ tokens for llama.cpp and OpenAI)."""
    finish_reason: str | None = None
    server: dict[str, Any] | None = None
    """llama.cpp's own `timings` from the last chunk (prompt_n, cache_n, predicted_per_second, …)."""


class LLMReply:
    """One streamed answer: iterate for text pieces; close it (or leave `async with`) to hang up early."""

    def __init__(self, pieces: AsyncGenerator[str, None], timings: LLMTimings) -> None:
        self._pieces = pieces
        self.timings = timings

    def __aiter__(self) -> LLMReply:
        return self

    async def __anext__(self) -> str:
        return await anext(self._pieces)

    async def aclose(self) -> None:
        await self._pieces.aclose()

    async def __aenter__(self) -> LLMReply:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class LLMClient:
    """Chat completions, streamed, from one endpoint and model."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        model: str,
        temperature: float = 0.7,
        max_tokens: int = 400,
        connect_timeout: float = 5.0,
        first_token_timeout: float = 10.0,
        token_timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.25,
        label: str | None = None,
        caches_prompts: bool = False,
    ) -> None:
        self.model = model
        self.caches_prompts = caches_prompts
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.first_token_timeout = first_token_timeout
        self.token_timeout = token_timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.backoff = backoff
        # Reads are bounded by our own deadlines (first token, gap between tokens), not by the HTTP layer.
        timeout = openai.Timeout(None, connect=connect_timeout)
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or _KEYLESS, timeout=timeout, max_retries=0
        )
        self.label = label or f"the language model at {self._client.base_url}".rstrip("/")

    @classmethod
    def from_config(
        cls,
        cfg: LLMConfig,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        label: str | None = None,
        caches_prompts: bool = False,
    ) -> LLMClient:
        """A client for `cfg`'s endpoint, or for `base_url` (with its own key) when a local server stands in."""
        if base_url is None:
            base_url, api_key = cfg.base_url, cfg.api_key.get_secret_value() if cfg.api_key else None
        return cls(
            base_url=base_url,
            api_key=api_key,
            model=model or cfg.model,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            connect_timeout=cfg.connect_timeout,
            first_token_timeout=cfg.first_token_timeout,
            token_timeout=cfg.token_timeout,
            retries=cfg.retries,
            label=label,
            caches_prompts=caches_prompts,
        )

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int | None = None, temperature: float | None = None
    ) -> LLMReply:
        """Start a reply; nothing is sent until the first piece is awaited."""
        return self._reply(messages, max_tokens, temperature, self.first_token_timeout)

    async def warm(self, system_prompt: str) -> LLMTimings | None:
        """Have a prompt-caching server (llama.cpp) process a persona prompt now, so turns only pay for their own
        tokens; does nothing for other endpoints, where it would only cost time and money."""
        if not self.caches_prompts:
            return None
        messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": "Hello"}]
        async with self._reply(messages, 1, None, max(WARM_TIMEOUT, self.first_token_timeout)) as reply:
            async for _ in reply:
                pass
        return reply.timings

    def _reply(
        self, messages: list[dict[str, str]], max_tokens: int | None, temperature: float | None, first_token: float
    ) -> LLMReply:
        timings = LLMTimings()
        request = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "max_tokens": self.max_tokens if max_tokens is None else max_tokens,
            "temperature": self.temperature if temperature is None else temperature,
        }
        return LLMReply(self._pieces(request, timings, first_token), timings)

    async def aclose(self) -> None:
        await self._client.close()

    async def _pieces(
        self, request: dict[str, Any], timings: LLMTimings, first_token_timeout: float
    ) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        stream, first = await self._open(request, timings, first_token_timeout)
        try:
            timings.ttft = loop.time() - started
            if first:
                yield first
            while True:
                try:
                    async with asyncio.timeout(self.token_timeout):
                        chunk = await anext(stream, None)
                    text = "" if chunk is None else self._read(chunk, timings)
                except (TimeoutError, openai.APIError, ValueError, ValidationError) as exc:
                    if timings.finish_reason is not None:
                        break  # the reply was complete; only its trailer (usage, [DONE]) went missing
                    raise self._mid_reply_error(exc) from None
                if chunk is None:
                    if timings.finish_reason is None:
                        raise LLMError(f"{self.label} cut its reply off")
                    break
                if text:
                    yield text
        finally:
            timings.total = loop.time() - started
            await stream.close()

    async def _open(
        self, request: dict[str, Any], timings: LLMTimings, budget: float
    ) -> tuple[openai.AsyncStream[Any], str]:
        """An open stream and its first text (empty if the reply finished without any), or LLMError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        while True:
            timings.attempts += 1
            stream: openai.AsyncStream[Any] | None = None
            try:
                async with asyncio.timeout_at(deadline):
                    stream = await self._client.chat.completions.create(**request)
                    return stream, await self._first_text(stream, timings)
            except Exception as exc:
                if stream is not None:
                    await stream.close()
                failure, retry_after = self._before_first_text(exc, budget)
            except BaseException:
                if stream is not None:
                    await stream.close()
                raise
            pause = min(self.backoff * 2 ** (timings.attempts - 1), _BACKOFF_CAP)
            pause = max(pause, retry_after or 0.0) * random.uniform(0.8, 1.2)
            if timings.attempts > self.retries or loop.time() + pause >= deadline:
                raise LLMError(failure)
            await asyncio.sleep(pause)

    async def _first_text(self, stream: openai.AsyncStream[Any], timings: LLMTimings) -> str:
        while (chunk := await anext(stream, None)) is not None:
            text = self._read(chunk, timings)
            if text or timings.finish_reason is not None:
                return text
        raise _Retryable(f"{self.label} ended its reply before any text")

    def _before_first_text(self, exc: Exception, budget: float) -> tuple[str, float | None]:
        """(message, server's Retry-After) for a failure worth retrying; raises LLMError for the others."""
        where = self.label.removeprefix("the ")
        if isinstance(exc, TimeoutError):
            return f"{self.label} did not answer within {budget:g} s", None
        if isinstance(exc, _Retryable):
            return str(exc), None
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code == 429 or exc.status_code >= 500:
                return self._status_message(exc), _retry_after(exc)
            raise LLMError(self._status_message(exc)) from None
        if isinstance(exc, openai.APITimeoutError):
            return f"cannot connect to {where} within {self.connect_timeout:g} s", None
        if isinstance(exc, openai.APIConnectionError):
            return f"cannot reach {where}", None
        if isinstance(exc, openai.APIError):
            return f"{self.label} reported an error: {_server_message(exc)}", None
        if isinstance(exc, (ValueError, ValidationError)):
            raise LLMError(f"{self.label} sent a reply that is not in the OpenAI format") from None
        raise exc

    @staticmethod
    def _read(chunk: Any, timings: LLMTimings) -> str:
        """The text of one chunk; records finish_reason and llama.cpp's timings on the way."""
        try:
            server = (chunk.model_extra or {}).get("timings")
            text = ""
            for choice in chunk.choices:
                if choice.finish_reason is not None:
                    timings.finish_reason = choice.finish_reason
                if choice.delta is not None and choice.delta.content:
                    text += choice.delta.content
        except (AttributeError, TypeError):
            raise ValueError("not a chat completion chunk") from None
        if isinstance(server, dict):
            timings.server = server
        if text:
            timings.deltas += 1
        return text

    def _status_message(self, exc: openai.APIStatusError) -> str:
        code = exc.status_code
        if code in (401, 403):
            return f"{self.label} rejected the API key (set llm.api_key or OPENAI_API_KEY)"
        if code == 404:
            return f"{self.label} has no model {self.model!r} (check llm.model and llm.base_url, usually …/v1)"
        if code == 429:
            return f"{self.label} is rate-limiting requests (HTTP 429)"
        if code >= 500:
            return f"{self.label} failed (HTTP {code})"
        return f"{self.label} refused the request (HTTP {code}): {_server_message(exc)}"

    def _mid_reply_error(self, exc: Exception) -> LLMError:
        if isinstance(exc, TimeoutError):
            return LLMError(f"{self.label} stopped answering mid-reply ({self.token_timeout:g} s without text)")
        if isinstance(exc, openai.APIConnectionError):
            return LLMError(f"{self.label} broke off its reply")
        if isinstance(exc, openai.APIError):
            return LLMError(f"{self.label} reported an error mid-reply: {_server_message(exc)}")
        return LLMError(f"{self.label} sent a reply that is not in the OpenAI format")


def _retry_after(exc: openai.APIStatusError) -> float | None:
    try:
        return float(exc.response.headers.get("retry-after", ""))
    except ValueError:
        return None


def _server_message(exc: openai.APIError) -> str:
    """The server's own one-line explanation, without the client's "Error code: …" wrapping."""
    body = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    text = message if isinstance(message, str) and message else exc.message
    return text.splitlines()[0][:120] if text else "no details"
