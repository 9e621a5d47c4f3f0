"""Child process that runs llama.cpp's OpenAI-compatible server (from the xllamacpp wheel) on loopback.

Started by `agent.llm_local`, never by hand. It lives in its own process so its OpenMP threads
cannot spin inside the avatar's process, a crash cannot take the session down with it, and it
can always be killed. It reads the API key that requests must carry from the first line of stdin,
prints one JSON line on stdout — `{"url": ...}` once the model is loaded, or `{"error": ...}` —
then waits on stdin: when the parent closes it, or dies and the kernel closes it, the server
exits at once, so no orphan outlives the application.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

import xllamacpp


def _params(args: argparse.Namespace, api_key: str) -> xllamacpp.CommonParams:
    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = args.alias
    params.hostnames = ["127.0.0.1"]
    params.api_keys = [api_key]
    params.port = 0  # the kernel picks a free port; the server reports it
    params.n_ctx = args.context
    params.n_parallel = args.parallel
    params.kv_unified = True  # slots share the whole context instead of a fixed slice each
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.batch_threads
    params.n_threads_http = 2
    params.verbosity = 0
    # Qwen2.5's recommended sampling; requests still set temperature and max_tokens.
    params.sampling.top_p = 0.8
    params.sampling.top_k = 20
    params.sampling.penalty_repeat = 1.05
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--threads", type=int, required=True, help="threads generating tokens")
    parser.add_argument("--batch-threads", type=int, required=True, help="threads reading the prompt")
    parser.add_argument("--context", type=int, required=True)
    parser.add_argument("--parallel", type=int, required=True)
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # like SIGTERM: stop now, no Python teardown
    api_key = sys.stdin.readline().strip()  # by pipe: unlike arguments, other users cannot read it
    try:
        server = xllamacpp.Server(_params(args, api_key))
    except RuntimeError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        sys.exit(1)
    print(json.dumps({"url": server.listening_address}), flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # anything later goes to the log, not the closed pipe
    sys.stdin.buffer.read()  # returns when the parent closes stdin or dies
    os._exit(0)  # the server's threads hold no state worth a slow, orderly teardown


if __name__ == "__main__":
    main()
