"""Serving benchmark: `gptkit serve` vs llama-cpp-python's server, both on the bundled SmolLM2-135M GGUF.

Each server runs in its own process with the same thread count. For each concurrency level C, C streaming
clients (asyncio + httpx) send the same fixed set of requests to /v1/completions: ~100-token prompts,
greedy, max_tokens new tokens with EOS suppressed (logit_bias -100, so every request generates exactly
max_tokens). One table: requests/s, output tok/s, time to first token (TTFT) and inter-token latency
(ITL, the gaps between streamed chunks) p50/p99, then the gptkit/peer ratios.
Run: `.venv/bin/python bench/serve.py [--concurrency 1,4,16] [--requests 64] [--max-tokens 64] [--quick]`
(the peer needs `pip install 'llama-cpp-python[server]'`; without it only gptkit is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
import numpy as np

from gptkit.registry import DEFAULT_MODEL, REGISTRY, bundled_path

PROMPT_TOKENS = 100
STARTUP_TIMEOUT_S = 180
TEXT = (
    "The history of natural language processing generally started in the 1950s, although work can be found "
    "from earlier periods. In 1950, Alan Turing published an article titled 'Computing Machinery and "
    "Intelligence' which proposed what is now called the Turing test as a criterion of intelligence. "
    "The Georgetown experiment in 1954 involved fully automatic translation of more than sixty Russian "
    "sentences into English. The authors claimed that within three or five years, machine translation "
    "would be a solved problem. However, real progress was much slower, and after the ALPAC report in "
    "1966, which found that ten years of research had failed to fulfill the expectations, funding for "
    "machine translation was dramatically reduced. Little further research in machine translation was "
    "conducted until the late 1980s when the first statistical machine translation systems were developed. "
    "Some notably successful natural language processing systems developed in the 1960s were SHRDLU, a "
    "natural language system working in restricted blocks worlds with restricted vocabularies, and ELIZA, "
    "a simulation of a Rogerian psychotherapist, written by Joseph Weizenbaum between 1964 and 1966. "
)
METRICS = ["req/s", "out tok/s", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "ITL p99 ms"]
HIGHER_IS_BETTER = {"req/s", "out tok/s"}


@dataclass
class Server:
    """A server process and how to talk to it."""

    name: str
    url: str
    process: subprocess.Popen
    extra_body: dict = field(default_factory=dict)  # request fields only this server understands


@dataclass
class Timing:
    """One streamed request: when it was sent, when each non-empty chunk arrived, how many tokens it had."""

    sent: float
    chunks: list[float]
    tokens: int


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_prompts(n: int) -> list[str]:
    """n different PROMPT_TOKENS-token windows of TEXT (decoded back to text: both servers tokenize)."""
    from gptkit import GPT4Tokenizer

    tokenizer = GPT4Tokenizer.from_pretrained(DEFAULT_MODEL)
    ids = tokenizer.encode(TEXT * 4)
    starts = [(i * 37) % (len(ids) - PROMPT_TOKENS) for i in range(n)]
    return [tokenizer.decode(ids[s : s + PROMPT_TOKENS]) for s in starts]


def eos_id() -> int:
    """The model's end-of-sequence token id (what logit_bias suppresses)."""
    from gptkit import GPT4Tokenizer

    return GPT4Tokenizer.from_pretrained(DEFAULT_MODEL).eos_token_id


def start_gptkit(
    threads: int, max_batch: int, seq_len: int, quantize: str | None, replicas: int = 0
) -> Server:
    """`gptkit serve` in a subprocess; with ``replicas``, `gptkit serve --ray` sharing ``threads`` among them."""
    port = free_port()
    cmd = [sys.executable, "-m", "gptkit", "serve", DEFAULT_MODEL, "--port", str(port), "--log-level", "warning",
           "--max-batch-size", str(max_batch), "--max-seq-len", str(seq_len)]  # fmt: skip
    cmd += ["--quantize", quantize] if quantize else []
    name, omp_threads = "gptkit", threads
    if replicas:
        cmd += ["--ray", "--replicas", str(replicas), "--replica-cpus", f"{threads / replicas:g}"]
        name, omp_threads = f"gptkit ray x{replicas}", max(1, threads // replicas)
    process = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": str(omp_threads)})
    return Server(name, f"http://127.0.0.1:{port}", process, {"stream_options": {"include_usage": True}})


def start_llama_cpp(threads: int, seq_len: int) -> Server | None:
    """llama-cpp-python's OpenAI server in a subprocess, or None (with a message) when it is not installed."""
    probe = subprocess.run(
        [sys.executable, "-c", "import llama_cpp.server.app"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        print("llama.cpp: skipped (llama-cpp-python[server] is not installed)")
        return None
    port = free_port()
    path = bundled_path(REGISTRY[DEFAULT_MODEL])
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
           "--port", str(port), "--n_threads", str(threads), "--n_ctx", str(seq_len),
           "--model_alias", DEFAULT_MODEL,
           "--interrupt_requests", "False"]  # queue concurrent requests (its default cuts the running one off)  # fmt: skip
    return Server("llama.cpp", f"http://127.0.0.1:{port}", subprocess.Popen(cmd, stderr=subprocess.DEVNULL))


def wait_ready(server: Server) -> None:
    """Poll GET /v1/models until the server answers."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with code {server.process.returncode} before it was ready"
            )
        try:
            if httpx.get(f"{server.url}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{server.name} was not ready within {STARTUP_TIMEOUT_S} s")


def stop(server: Server) -> None:
    """Interrupt the server process (Ray shuts its replicas down on Ctrl-C), kill it if it does not go."""
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


async def stream_one(client: httpx.AsyncClient, server: Server, body: dict) -> Timing:
    """One streamed completion: chunk arrival times and the completion's token count."""
    timing = Timing(time.perf_counter(), [], 0)
    payload = {**body, **server.extra_body, "stream": True}
    async with client.stream("POST", f"{server.url}/v1/completions", json=payload) as response:
        response.raise_for_status()
        usage_tokens = None
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            if chunk.get("usage"):
                usage_tokens = chunk["usage"]["completion_tokens"]
            if any(choice.get("text") for choice in chunk.get("choices", [])):
                timing.chunks.append(time.perf_counter())
    timing.tokens = usage_tokens if usage_tokens is not None else len(timing.chunks)
    return timing


async def run_clients(server: Server, bodies: list[dict], concurrency: int) -> tuple[list[Timing], float]:
    """All bodies through `concurrency` clients pulling from one queue; (timings, wall seconds)."""
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    timings: list[Timing] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=limits) as client:

        async def client_loop() -> None:
            while not queue.empty():
                timings.append(await stream_one(client, server, queue.get_nowait()))

        start = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        return timings, time.perf_counter() - start


def summarize(timings: list[Timing], wall: float) -> dict[str, float]:
    """Throughput and latency percentiles of one run."""
    ttft = [(t.chunks[0] - t.sent) * 1e3 for t in timings if t.chunks]
    itl = [gap * 1e3 for t in timings for gap in np.diff(t.chunks)]
    pct = lambda values, q: float(np.percentile(values, q)) if len(values) else float("nan")  # noqa: E731
    return {
        "req/s": len(timings) / wall,
        "out tok/s": sum(t.tokens for t in timings) / wall,
        "TTFT p50 ms": pct(ttft, 50),
        "TTFT p99 ms": pct(ttft, 99),
        "ITL p50 ms": pct(itl, 50),
        "ITL p99 ms": pct(itl, 99),
    }


def measure_server(server: Server, bodies: list[dict], levels: list[int]) -> dict[int, dict[str, float]]:
    """Wait for the server, warm it up, then one run per concurrency level; the server is stopped after."""
    try:
        wait_ready(server)
        asyncio.run(run_clients(server, bodies[:2], 2))  # warm-up: first-call allocations, lazy init
        results = {}
        for level in levels:
            results[level] = summarize(*asyncio.run(run_clients(server, bodies, level)))
            print(f"  {server.name} c={level}: {results[level]['out tok/s']:.1f} out tok/s", flush=True)
        return results
    finally:
        stop(server)


def print_table(results: dict[str, dict[int, dict[str, float]]], levels: list[int]) -> None:
    """Rows = (concurrency, server), then gptkit/peer ratios (throughput: > 1 better; latency: < 1 better)."""
    print(f"{'clients':>7}  {'server':<18}" + "".join(f"{m:>13}" for m in METRICS))
    for level in levels:
        for name, by_level in results.items():
            print(f"{level:>7}  {name:<18}" + "".join(f"{by_level[level][m]:>13.1f}" for m in METRICS))
        for name, by_level in results.items():
            if name != "gptkit" and "gptkit" in results:
                ratios = [results["gptkit"][level][m] / by_level[level][m] for m in METRICS]
                print(f"{level:>7}  {'gptkit/' + name:<18}" + "".join(f"{r:>12.2f}x" for r in ratios))
    print("ratios: req/s and tok/s > 1 means gptkit is faster; TTFT and ITL < 1 means gptkit is faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--max-tokens", type=int, default=64, help="generated tokens per request")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of each server")
    parser.add_argument("--quantize", default="int4", help="gptkit serve --quantize (empty: none)")
    parser.add_argument(
        "--ray-replicas",
        type=int,
        default=0,
        help="also measure `gptkit serve --ray` with this many replicas",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 1,4 clients, 8 requests, 16 tokens"
    )
    args = parser.parse_args()
    if args.quick:
        args.concurrency, args.requests, args.max_tokens = "1,4", 8, 16
    levels = [int(c) for c in args.concurrency.split(",")]
    seq_len = (
        -(-(PROMPT_TOKENS + 16 + args.max_tokens) // 256) * 256
    )  # prompt (+ margin) + output, whole 256s
    prompts = make_prompts(args.requests)
    body = {"model": DEFAULT_MODEL, "max_tokens": args.max_tokens, "temperature": 0,
            "logit_bias": {str(eos_id()): -100}}  # fmt: skip
    bodies = [{**body, "prompt": p} for p in prompts]
    print(
        f"{DEFAULT_MODEL}: {args.requests} requests of ~{PROMPT_TOKENS} prompt tokens, {args.max_tokens} "
        f"greedy tokens each, {args.threads} server threads, clients {levels}, gptkit --quantize {args.quantize}"
    )
    results = {
        "gptkit": measure_server(
            start_gptkit(args.threads, max(levels), seq_len, args.quantize or None), bodies, levels
        )
    }
    if args.ray_replicas:
        ray_server = start_gptkit(
            args.threads, max(levels), seq_len, args.quantize or None, args.ray_replicas
        )
        results[ray_server.name] = measure_server(ray_server, bodies, levels)
    peer = start_llama_cpp(args.threads, seq_len)
    if peer is not None:
        results[peer.name] = measure_server(peer, bodies, levels)
    print_table(results, levels)


if __name__ == "__main__":
    main()
