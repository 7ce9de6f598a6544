"""Throughput of ``fmgate serve`` under concurrency, side by side with ``transformers serve``.

Both servers get the same tiny random-weight llama (``make_tiny_model``, built offline into a
temporary folder) on the CPU, and the same requests from the async ``openai`` client: at each
concurrency level, ``--requests`` chat completions with ``max_tokens`` and greedy decoding, kept
``c`` in flight at a time. It prints requests/s and output tokens/s (from each reply's usage) per
level, and their ratio; then the same requests streamed, at the same concurrency, for the median
time to the first token each client saw (TTFT p50). Each server runs in its own process, started
with its own command line;
warm-up requests are not timed.

    python benchmarks/serve_throughput.py                       # levels 1, 8, 32
    python benchmarks/serve_throughput.py --quick               # a smoke run
    python benchmarks/serve_throughput.py --tf-python /path/to/python   # transformers serve
                                                                # from another environment

``transformers serve`` needs the ``transformers[serving]`` extra (fastapi, uvicorn, accelerate,
...); without it the script measures fmgate alone and says so. It asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
from _servers import free_port, server

PROMPTS = [
    "Write a short story about a brave mouse.",
    "What is the capital of France?",
    "Name the fruit in the garden.",
    "How many days are there in a week?",
]


@dataclass(frozen=True)
class Result:
    requests: int
    output_tokens: int
    seconds: float
    ttft_p50_s: float | None = None  # streamed requests at the same concurrency

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def tps(self) -> float:
        return self.output_tokens / self.seconds


async def _drive(url: str, model: str, concurrency: int, requests: int, max_tokens: int) -> Result:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with (
        openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0, timeout=600) as sdk,
        httpx.AsyncClient(timeout=600, limits=limits) as raw,
    ):

        async def one(i: int) -> int:
            reply = await sdk.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                max_tokens=max_tokens,
                temperature=0,
            )
            assert reply.usage is not None
            return reply.usage.completion_tokens

        async def first_token(i: int) -> float:
            """A streamed request's time to its first content, read with a bare HTTP client
            (the SDK's per-chunk parsing would make the client, not the server, the bottleneck
            on a machine this small); the rest of the stream is drained unparsed."""
            body = {
                "model": model,
                "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": True,
            }
            start = time.perf_counter()
            ttft = None
            async with raw.stream("POST", url + "/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if ttft is None and line.startswith("data: {") and _has_content(line):
                        ttft = time.perf_counter() - start
            return ttft if ttft is not None else time.perf_counter() - start

        await asyncio.gather(*(one(i) for i in range(min(concurrency, 4))))  # warm-up
        queue = iter(range(requests))
        tokens: list[int] = []

        async def worker() -> None:
            for i in queue:
                tokens.append(await one(i))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        # TTFT: the same load, streamed (each client measures its own first token)
        streamed = iter(range(requests))
        ttfts: list[float] = []

        async def streaming_worker() -> None:
            for i in streamed:
                ttfts.append(await first_token(i))

        await asyncio.gather(*(streaming_worker() for _ in range(concurrency)))
        return Result(requests, sum(tokens), seconds, statistics.median(ttfts))


def _has_content(line: str) -> bool:
    choices = json.loads(line[len("data: ") :]).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


def _measure(
    url: str, model: str, levels: list[int], requests: int, max_tokens: int
) -> dict[int, Result]:
    results = {}
    for c in levels:
        results[c] = asyncio.run(_drive(url, model, c, max(requests, c), max_tokens))
        r = results[c]
        ttft = f", TTFT p50 {r.ttft_p50_s * 1000:.0f} ms" if r.ttft_p50_s is not None else ""
        print(
            f"  c={c:<3} {r.rps:8.2f} req/s {r.tps:10.1f} tok/s ({r.seconds:.1f} s){ttft}",
            flush=True,
        )
    return results


def _has_transformers_serve(python: str) -> bool:
    check = "import fastapi, uvicorn, accelerate, transformers.cli.serve"
    done = subprocess.run([python, "-c", check], capture_output=True)
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=96, help="requests per level")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=32, help="fmgate serve --max-batch")
    parser.add_argument("--tf-python", default=sys.executable, help="python for transformers serve")
    parser.add_argument(
        "--tf-continuous-batching",
        action="store_true",
        help="transformers serve --continuous-batching",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS for both servers (1: on a small machine shared with the client, "
        "torch's one thread per core spins against the client and the event loop)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.max_tokens = 16, 16

    from fmgate.testing import make_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_tiny_model("llama", Path(tmp) / "tiny-llama")
        env = {
            **os.environ,
            "FMGATE_STORE": str(Path(tmp) / "records.sqlite3"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_VERBOSITY": "error",
            "OMP_NUM_THREADS": str(args.torch_threads),
        }
        print(
            f"tiny llama ({folder.name}), CPU, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; {args.requests} requests per level, "
            f"max_tokens={args.max_tokens}, greedy, OMP_NUM_THREADS={args.torch_threads}"
        )
        spec = f"transformers:{folder}"
        port = free_port()
        fmgate_cmd = [sys.executable, "-m", "fmgate", "serve", spec, "--port", str(port)]
        fmgate_cmd += ["--max-batch", str(args.max_batch)]
        print(f"fmgate serve (--max-batch {args.max_batch}):")
        with server(fmgate_cmd, port, env, Path(tmp) / "fmgate.log") as url:
            ours = _measure(url + "/v1", spec, args.levels, args.requests, args.max_tokens)

        theirs: dict[int, Result] = {}
        if _has_transformers_serve(args.tf_python):
            port = free_port()
            tf_cmd = [args.tf_python, "-m", "transformers.cli.transformers", "serve", str(folder)]
            tf_cmd += ["--port", str(port), "--host", "127.0.0.1", "--device", "cpu"]
            if args.tf_continuous_batching:
                tf_cmd.append("--continuous-batching")
            mode = " --continuous-batching" if args.tf_continuous_batching else ""
            print(f"transformers serve{mode}:")
            with server(tf_cmd, port, env, Path(tmp) / "transformers.log") as url:
                theirs = _measure(
                    url + "/v1", str(folder), args.levels, args.requests, args.max_tokens
                )
        else:
            print(
                f"transformers serve: not measured ({args.tf_python} lacks the serving extra: "
                "pip install 'transformers[serving]')"
            )
        _table(ours, theirs)


def _table(ours: dict[int, Result], theirs: dict[int, Result]) -> None:
    print()
    head = f"{'c':>4} | {'fmgate req/s':>12} {'tok/s':>8} {'TTFT ms':>8}"
    if theirs:
        head += f" | {'tf serve req/s':>14} {'tok/s':>8} {'TTFT ms':>8} | {'fmgate/tf':>9}"
    print(head)
    print("-" * len(head))
    for c, r in ours.items():
        line = f"{c:>4} | {r.rps:>12.2f} {r.tps:>8.1f} {_ms(r.ttft_p50_s):>8}"
        if c in theirs:
            t = theirs[c]
            line += f" | {t.rps:>14.2f} {t.tps:>8.1f} {_ms(t.ttft_p50_s):>8}"
            line += f" | {r.tps / t.tps:>8.2f}x"
        print(line)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


if __name__ == "__main__":
    main()
