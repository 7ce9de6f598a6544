"""Continuous batching in process: concurrent ``Model.generate`` calls with and without it.

The tiny random-weight llama (``make_tiny_model``, built offline into a temporary folder) is loaded
twice in one process, with ``continuous_batching`` on (the default) and off, and each is driven by
``c`` threads calling ``generate`` (greedy, ``max_tokens=64``) until ``--requests`` calls are done.
Without continuous batching concurrent ``generate`` calls run one at a time; with it they share one
running batch. No HTTP, no client: the figures are the engine's, which ``fmgate serve`` adds its
server to (``serve_throughput.py``). Rounds alternate between the two loads; it prints the median
requests/s and output tokens/s per level and their ratio.

    python benchmarks/continuous_batching.py                   # levels 8 and 32, 3 rounds
    python benchmarks/continuous_batching.py --rounds 1 --requests 32   # a smoke run

It asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROMPTS = [
    "Write a short story about a brave mouse.",
    "What is the capital of France?",
    "Name the fruit in the garden.",
    "How many days are there in a week?",
]


def rate(model: object, concurrency: int, requests: int, max_tokens: int) -> tuple[float, float]:
    """(requests/s, output tokens/s) of ``requests`` calls, ``concurrency`` at a time."""

    def one(i: int) -> int:
        reply = model.generate(PROMPTS[i % len(PROMPTS)], max_tokens=max_tokens)  # type: ignore[attr-defined]
        tokens: int = reply.usage.output_tokens or 0
        return tokens

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, range(requests)))
    seconds = time.perf_counter() - start
    return requests / seconds, tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--requests", type=int, default=192, help="calls per level and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("FMGATE_STORE", "none")

    import torch

    import fmgate
    from fmgate.testing import make_tiny_model

    torch.set_num_threads(1)  # as serve_throughput.py runs both servers
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_tiny_model("llama", Path(tmp) / "tiny-llama")
        continuous = fmgate.load(f"transformers:{folder}", device="cpu")
        static = fmgate.load(f"transformers:{folder}", device="cpu", continuous_batching=False)
        print(
            f"tiny llama, CPU, {os.cpu_count()} cores, 1 torch thread; {args.requests} calls per "
            f"level and round, max_tokens={args.max_tokens}, greedy, {args.rounds} rounds"
        )
        for model in (continuous, static):  # warm-up, not timed
            rate(model, 4, 8, args.max_tokens)
        print(
            f"{'c':>4} | {'continuous req/s':>16} {'tok/s':>8} | {'static req/s':>12} "
            f"{'tok/s':>8} | {'ratio':>6}"
        )
        for c in args.levels:
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(rate(continuous, c, args.requests, args.max_tokens))
                theirs.append(rate(static, c, args.requests, args.max_tokens))
            o_rps, o_tps = (statistics.median(x) for x in zip(*ours, strict=True))
            t_rps, t_tps = (statistics.median(x) for x in zip(*theirs, strict=True))
            print(
                f"{c:>4} | {o_rps:>16.1f} {o_tps:>8.0f} | {t_rps:>12.1f} {t_tps:>8.0f} | "
                f"{o_tps / t_tps:>5.2f}x"
            )


if __name__ == "__main__":
    main()
