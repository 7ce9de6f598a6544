"""Throughput of ``fmgate serve`` under concurrency, side by side with ``transformers serve``.

Both servers get the same tiny random-weight llama (``make_tiny_model``, built offline into a
temporary folder) on the CPU, and the same requests from the async ``openai`` client: at each
concurrency level, ``--requests`` chat completions with ``max_tokens`` and greedy decoding, kept
``c`` in flight at a time. It prints requests/s and output tokens/s (from each reply's usage) per
level, and their ratio; then the same requests streamed, at the same concurrency, for the median
time to the first token each client saw (TTFT p50). Each server runs in its own process, started
with its own command line; both run at once (idle while the other is measured) and take turns,
``--rounds`` times per level, the order flipped each round, so that both see the same machine
(a shared 2-core machine's speed drifts by tens of percent from minute to minute). Warm-up
requests are not timed.

    python benchmarks/serve_throughput.py                       # levels 1, 8, 32
    python benchmarks/serve_throughput.py --quick               # a smoke run
    python benchmarks/serve_throughput.py --compile             # both servers compile the model
    python benchmarks/serve_throughput.py --tf-python /path/to/python   # transformers serve
                                                                # from another environment

``transformers serve`` needs the ``transformers[serving]`` extra (fastapi, uvicorn, accelerate,
...); without it the script measures fmgate alone and says so. It asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


@dataclass(frozen=True)
class Target:
    """A running server: its name in the output, its base URL and the model name it serves."""

    name: str
    url: str
    model: str


async def _plain(target: Target, concurrency: int, requests: int, max_tokens: int) -> Result:
    """``requests`` chat completions, ``concurrency`` in flight; output tokens from each usage."""
    async with openai.AsyncOpenAI(
        base_url=target.url, api_key="-", max_retries=0, timeout=600
    ) as sdk:

        async def one(i: int) -> int:
            reply = await sdk.chat.completions.create(
                model=target.model,
                messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                max_tokens=max_tokens,
                temperature=0,
            )
            assert reply.usage is not None
            return reply.usage.completion_tokens

        queue = iter(range(requests))
        tokens: list[int] = []

        async def worker() -> None:
            for i in queue:
                tokens.append(await one(i))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Result(requests, sum(tokens), time.perf_counter() - start)


async def _first_tokens(
    target: Target, concurrency: int, requests: int, max_tokens: int
) -> list[float]:
    """The same load streamed: each request's time to its first content, read with a bare HTTP
    client (the SDK's per-chunk parsing would make the client, not the server, the bottleneck
    on a machine this small); the rest of each stream is drained unparsed."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as raw:

        async def first_token(i: int) -> float:
            body = {
                "model": target.model,
                "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": True,
            }
            start = time.perf_counter()
            ttft = None
            url = target.url + "/chat/completions"
            async with raw.stream("POST", url, json=body) as response:
                async for line in response.aiter_lines():
                    if ttft is None and line.startswith("data: {") and _has_content(line):
                        ttft = time.perf_counter() - start
            return ttft if ttft is not None else time.perf_counter() - start

        queue = iter(range(requests))
        ttfts: list[float] = []

        async def worker() -> None:
            for i in queue:
                ttfts.append(await first_token(i))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ttfts


def _has_content(line: str) -> bool:
    choices = json.loads(line[len("data: ") :]).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


def _measure(
    targets: list[Target], levels: list[int], requests: int, max_tokens: int, rounds: int
) -> dict[str, dict[int, Result]]:
    """Each level on every server in turn, ``rounds`` times, the order flipped each round: this
    machine's speed drifts by tens of percent from minute to minute, so servers measured one
    after the other would see different machines. Per server and level: all rounds' requests
    over all their seconds, and the median TTFT over all streamed requests."""
    results: dict[str, dict[int, Result]] = {t.name: {} for t in targets}
    for c in levels:
        n = max(requests, c)
        for t in targets:  # warm-up, not timed
            asyncio.run(_plain(t, c, min(c, 4), max_tokens))
        done: dict[str, list[Result]] = {t.name: [] for t in targets}
        ttfts: dict[str, list[float]] = {t.name: [] for t in targets}
        for r in range(rounds):
            order = targets if r % 2 == 0 else targets[::-1]
            for t in order:
                done[t.name].append(asyncio.run(_plain(t, c, n, max_tokens)))
            for t in order[::-1]:
                ttfts[t.name] += asyncio.run(_first_tokens(t, c, n, max_tokens))
            line = "  ".join(f"{t.name} {done[t.name][-1].tps:7.1f} tok/s" for t in targets)
            print(f"  c={c:<3} round {r + 1}: {line}", flush=True)
        for t in targets:
            runs = done[t.name]
            results[t.name][c] = Result(
                sum(x.requests for x in runs),
                sum(x.output_tokens for x in runs),
                sum(x.seconds for x in runs),
                statistics.median(ttfts[t.name]),
            )
    return results


def _has_transformers_serve(python: str) -> bool:
    check = "import fastapi, uvicorn, accelerate, transformers.cli.serve"
    done = subprocess.run([python, "-c", check], capture_output=True)
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--requests", type=int, default=96, help="requests per level, server and round"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per level (the servers take turns)"
    )
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
    parser.add_argument(
        "--compile",
        action="store_true",
        help="both servers compile the model: fmgate's compile = true (its continuous batch's "
        "decoding step, compiled at load), transformers serve --compile",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.max_tokens, args.rounds = 16, 16, 1

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
            + (", compiled" if args.compile else "")
        )
        spec = f"transformers:{folder}"
        if args.compile:  # an alias: a setting goes in fmgate.toml
            config = Path(tmp) / "fmgate.toml"
            config.write_text(
                f'[models.tiny]\nbackend = "transformers"\nmodel = "{folder}"\ncompile = true\n'
            )
            env["FMGATE_CONFIG"], spec = str(config), "tiny"
        port = free_port()
        fmgate_cmd = [sys.executable, "-m", "fmgate", "serve", spec, "--port", str(port)]
        fmgate_cmd += ["--max-batch", str(args.max_batch)]
        compiled = ", compile = true" if args.compile else ""
        with contextlib.ExitStack() as running:
            url = running.enter_context(server(fmgate_cmd, port, env, Path(tmp) / "fmgate.log"))
            targets = [Target("fmgate", url + "/v1", spec)]
            print(f"fmgate serve (--max-batch {args.max_batch}{compiled})")
            if _has_transformers_serve(args.tf_python):
                port = free_port()
                tf_cmd = [args.tf_python, "-m", "transformers.cli.transformers", "serve"]
                tf_cmd += [str(folder), "--port", str(port), "--host", "127.0.0.1"]
                tf_cmd += ["--device", "cpu"]
                if args.tf_continuous_batching:
                    tf_cmd.append("--continuous-batching")
                if args.compile:
                    tf_cmd.append("--compile")
                print(f"transformers serve ({' '.join(tf_cmd[5:])}): tf")
                log = Path(tmp) / "transformers.log"
                url = running.enter_context(server(tf_cmd, port, env, log))
                targets.append(Target("tf", url + "/v1", str(folder)))
            else:
                print(
                    f"transformers serve: not measured ({args.tf_python} lacks the serving "
                    "extra: pip install 'transformers[serving]')"
                )
            results = _measure(targets, args.levels, args.requests, args.max_tokens, args.rounds)
        _table(results["fmgate"], results.get("tf", {}))


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
