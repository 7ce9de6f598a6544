"""The SQLite store: records/s it sustains, and what storing adds to a call.

1. Throughput: ``--records`` synthetic records (every field filled) go through
   ``SqliteStore.write`` from ``--threads`` threads, then ``flush()``; records/s counts from the
   first write to the end of the flush, so everything counted is committed. Repeated
   ``--repeats`` times, each into a new file; the median run is printed, and the time ``write``
   itself takes (what a call pays).
2. Call latency: ``Model.generate`` on a trivial in-process backend (it echoes the prompt, so
   the call is all fmgate overhead: the worst case), the default store on and off in turn, call
   by call, so that both see the same load and the same background writer. The ratio of the
   medians is what storing adds to a call's own path.
3. Tight loop: calls/s of back-to-back ``generate`` calls in rounds with the store on
   (``FMGATE_STORE`` = a file) and off (``FMGATE_STORE=none``), each round flushed before its
   clock stops. Here the writer's CPU time competes with the loop for the GIL, so the ratio is
   what storing costs a CPU-bound loop of calls that take no time of their own.

    python benchmarks/store_throughput.py            # about 20 s on 2 cores
    python benchmarks/store_throughput.py --quick    # a smoke run

It prints numbers measured side by side in one run; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import fmgate
from fmgate import Access, CallRecord, Cost, Environment, Latency, Outcome, SqliteStore, Usage
from fmgate._providers import ProviderInfo
from fmgate._store import DEFAULT_STORE
from fmgate._types import ChatRequest, Completion, Delta
from fmgate.backends._base import Backend, BackendConfig


def synthetic(n: int) -> list[CallRecord]:
    start = datetime.now(UTC)
    return [
        CallRecord(
            id=uuid.uuid4().hex,
            started_at=start + timedelta(microseconds=i),
            backend="openai",
            model_id="gpt-4o-mini-2024-07-18",
            alias=f"model-{i % 5}",
            provider="openai",
            operation="chat",
            distribution="api",
            endpoint="api.openai.com:443",
            params={"max_tokens": 64, "temperature": 0.0},
            usage=Usage(120 + i % 50, 60, 0, None, None, "provider"),
            latency=Latency(0.8, None, None, None, 0.8 / 60),
            cost=Cost(Decimal("0.0000540") + Decimal(i % 7) / 10**7, "list_price", source="snap"),
            access=Access(open_weights=False, context_window=128_000, data_leaves_machine=True),
            outcome=Outcome("ok", "stop"),
            environment=Environment("0.1.0", "openai 3.57.0", platform.python_version()),
        )
        for i in range(n)
    ]


def throughput_run(
    records: Sequence[CallRecord], threads: int, folder: Path
) -> tuple[float, float]:
    """(records/s from first write to flushed, mean seconds per ``write``)."""
    store = SqliteStore(folder / f"{uuid.uuid4().hex}.sqlite3")
    chunks = [records[i::threads] for i in range(threads)]
    write_s: list[float] = []

    def work(chunk: Sequence[CallRecord]) -> None:
        t0 = time.perf_counter()
        for rec in chunk:
            store.write(rec)
        write_s.append((time.perf_counter() - t0) / len(chunk))

    workers = [threading.Thread(target=work, args=(c,)) for c in chunks]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    store.flush()
    elapsed = time.perf_counter() - t0
    stored = store.count()
    store.close()
    assert stored == len(records), (stored, len(records))
    return len(records) / elapsed, statistics.mean(write_s)


class Echo(Backend):
    """Answers at once with the prompt: the call costs only fmgate's own work."""

    wire = "echo"
    provider_info: ClassVar[ProviderInfo] = ProviderInfo(
        name="echo",
        wire="echo",
        base_url=None,
        api_key_env=None,
        distribution="local",
        requires_api_key=False,
    )

    @property
    def endpoint(self) -> str:
        return "in-process"

    def access(self) -> Access:
        return Access(open_weights=True, data_leaves_machine=False, requires_network=False)

    def complete(self, request: ChatRequest) -> Completion:
        text = request.messages[-1].content
        return Completion(text, "stop", Usage(1, 1, source="estimate"), "echo-1")

    async def acomplete(self, request: ChatRequest) -> Completion:
        return self.complete(request)

    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        yield Delta(text=request.messages[-1].content, finish_reason="stop")

    async def astream(self, request: ChatRequest):  # type: ignore[no-untyped-def]
        yield Delta(text=request.messages[-1].content, finish_reason="stop")


def echo_model() -> fmgate.Model:
    config = BackendConfig(name="echo", model="echo", provider=Echo.provider_info)
    return fmgate.Model(Echo(config))


def paired_latency(calls: int, folder: Path) -> dict[str, list[float]]:
    """Per-call seconds of ``generate``, the default store on and off in turn, call by call.

    Both halves run under the same machine load and the same background writer, so the
    difference is what storing puts on a call's own path.
    """
    os.environ["FMGATE_STORE"] = str(folder / "paired.sqlite3")
    model = echo_model()
    for _ in range(200):  # warm-up: the store opens, its writer starts
        model.generate("hi", max_tokens=4)
    samples: dict[str, list[float]] = {"store on": [], "store off": []}
    for i in range(calls):
        on = i % 2 == 0
        if not on:
            fmgate.remove_sink(DEFAULT_STORE)
        t0 = time.perf_counter()
        model.generate("hi", max_tokens=4)
        samples["store on" if on else "store off"].append(time.perf_counter() - t0)
        if not on:
            fmgate.add_sink(DEFAULT_STORE)
    fmgate.flush()
    return samples


def loop_rates(rounds: int, calls: int, folder: Path) -> dict[str, list[float]]:
    """Calls/s of a tight ``generate`` loop per round, store on and off in alternate rounds.

    The writer's CPU time competes with the loop for the one GIL: a worst case, since real
    calls wait on a model or a network for far longer than they compute.
    """
    model = echo_model()
    settings = {"store on": str(folder / "loop.sqlite3"), "store off": "none"}
    rates: dict[str, list[float]] = {label: [] for label in settings}
    for r in range(rounds + 1):  # round 0 warms up and is not kept
        order = list(settings) if r % 2 else list(reversed(settings))
        for label in order:
            os.environ["FMGATE_STORE"] = settings[label]
            fmgate.flush()
            t0 = time.perf_counter()
            for _ in range(calls):
                model.generate("hi", max_tokens=4)
            fmgate.flush()  # the writer's work counts against the round that caused it
            if r:
                rates[label].append(calls / (time.perf_counter() - t0))
    return rates


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=20_000, help="latency: calls each way")
    parser.add_argument("--rounds", type=int, default=5, help="tight loop: rounds each way")
    parser.add_argument("--calls", type=int, default=10_000, help="tight loop: calls a round")
    parser.add_argument("--dir", help="folder for the store files (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.repeats, args.pairs, args.rounds, args.calls = 10_000, 1, 1000, 1, 2000

    print(machine())
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        print(f"store files in {folder}\n")
        records = synthetic(args.records)
        runs = [throughput_run(records, args.threads, folder) for _ in range(args.repeats)]
        rate, write_s = sorted(runs)[len(runs) // 2]
        print(
            f"throughput: {args.records:,} records from {args.threads} thread(s), "
            f"median of {args.repeats}: {rate:,.0f} records/s "
            f"(runs: {', '.join(f'{r:,.0f}' for r, _ in runs)}); "
            f"write() takes {write_s * 1e6:.2f} us"
        )
        samples = paired_latency(2 * args.pairs, folder)
        on, off = (statistics.median(samples[k]) for k in ("store on", "store off"))
        print(
            f"call latency, generate() on an in-process echo backend, store on and off call by "
            f"call ({len(samples['store on']):,} calls each): median {on * 1e6:.2f} us on, "
            f"{off * 1e6:.2f} us off; ratio on/off {on / off:.3f}"
        )
        rates = loop_rates(args.rounds, args.calls, folder)
        r_on, r_off = (statistics.median(rates[k]) for k in ("store on", "store off"))
        extra_us = (1 / r_on - 1 / r_off) * 1e6
        print(
            f"tight loop, {args.rounds} rounds of {args.calls:,} calls each way, writer time "
            f"included: {r_on:,.0f} calls/s on, {r_off:,.0f} calls/s off; ratio off/on "
            f"{r_off / r_on:.3f}, i.e. {extra_us:.1f} us of CPU per stored record"
        )


if __name__ == "__main__":
    main()
