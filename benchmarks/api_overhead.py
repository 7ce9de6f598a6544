"""What fmgate adds per API call over the official SDK it wraps, and the SDK over raw httpx2.

Against a zero-delay loopback server (``_loopback.py``, in its own process) speaking the OpenAI and
Anthropic wire formats, the same request goes through three clients, each built once:

- ``raw``: ``httpx2.Client``/``AsyncClient`` posting the JSON and parsing the JSON (or SSE) body,
  one connection pool reused, with the SDKs' pool limits;
- ``sdk``: ``openai.OpenAI`` / ``anthropic.Anthropic`` (and their async twins), ``max_retries=0``;
- ``fmgate``: ``fmgate.load(...)``, then ``generate`` / ``agenerate`` / ``stream``; recording
  included.

Modes: ``sync`` (sequential calls), ``async`` (``--concurrency`` tasks at once) and ``stream``
(sequential, every event read; OpenAI streams ask for the usage chunk, as fmgate does). Clients
take turns in rounds of ``--calls`` calls, the order permuted each round; warm-up calls are not
timed. A zero-delay server makes client overhead the whole of the call, so the ratios are an upper
bound on what a real API call would show. The server counts connections: a client that opens
about one per call (no keep-alive reuse) is named in a note under the table.

    python benchmarks/api_overhead.py            # the full run (70-90 s on 2 cores)
    python benchmarks/api_overhead.py --quick    # a smoke run

It prints ratios measured side by side in one run; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anthropic
import httpx2
import openai

import fmgate  # noqa: E402
from fmgate import _cost  # noqa: E402
from fmgate.testing._stub_server import STATS_PATH, serve  # noqa: E402

SPECS = {"openai": "openai:gpt-4o-mini", "anthropic": "anthropic:claude-3-5-haiku-latest"}
PROMPT = "Say hi in five words."
MESSAGES: Any = [{"role": "user", "content": PROMPT}]
MAX_TOKENS = 16
# The pool the SDKs build by default, so that raw httpx2 is not penalised by a smaller one.
SDK_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)

SyncCall = Callable[[], object]
AsyncCall = Callable[[], Awaitable[object]]


@dataclass
class Row:
    """One scenario's timings: per-call seconds for each client, by round."""

    label: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    rounds: dict[str, list[float]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    opened: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def add(self, client: str, per_call: Sequence[float], summary: float) -> None:
        self.samples.setdefault(client, []).extend(per_call)
        self.rounds.setdefault(client, []).append(summary)

    def count(self, client: str, calls: int, opened: int) -> None:
        self.calls[client] = self.calls.get(client, 0) + calls
        self.opened[client] = self.opened.get(client, 0) + opened

    def median(self, client: str) -> float | None:
        values = self.samples.get(client)
        return statistics.median(values) if values else None

    def ratio(self, top: str, bottom: str) -> float | None:
        a, b = self.median(top), self.median(bottom)
        return a / b if a is not None and b else None

    def round_ratios(self, top: str, bottom: str) -> list[float]:
        pairs = zip(self.rounds.get(top, []), self.rounds.get(bottom, []), strict=False)
        return [a / b for a, b in pairs if b]


# -- the three clients, per wire ------------------------------------------------------------------


@dataclass
class Wire:
    """The request each client sends for one wire format, and how to read the reply."""

    name: str
    path: str
    headers: dict[str, str]
    sdk_base: str

    def body(self, stream: bool) -> dict[str, Any]:
        """The JSON body raw httpx2 posts, and the keyword arguments of the SDK's ``create``."""
        body: dict[str, Any] = {
            "model": SPECS[self.name].split(":", 1)[1],
            "messages": MESSAGES,
            "max_tokens": MAX_TOKENS,
        }
        if stream:
            body["stream"] = True
            if self.name == "openai":
                body["stream_options"] = {"include_usage": True}
        return body


def wires(url: str) -> dict[str, Wire]:
    return {
        "openai": Wire(
            "openai", "/v1/chat/completions", {"authorization": "Bearer x"}, f"{url}/v1"
        ),
        "anthropic": Wire(
            "anthropic", "/v1/messages", {"x-api-key": "x", "anthropic-version": "2023-06-01"}, url
        ),
    }


def _text(wire: Wire, data: Any) -> str:
    if wire.name == "openai":
        return str(data["choices"][0]["message"]["content"])
    return str(data["content"][0]["text"])


def _sse_payloads(lines: Sequence[str]) -> list[Any]:
    return [
        json.loads(line[6:])
        for line in lines
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def raw_sync(client: httpx2.Client, wire: Wire, stream: bool) -> SyncCall:
    body = wire.body(stream)
    if not stream:

        def call() -> object:
            r = client.post(wire.path, json=body, headers=wire.headers)
            r.raise_for_status()
            return _text(wire, r.json())

        return call

    def call_stream() -> object:
        with client.stream("POST", wire.path, json=body, headers=wire.headers) as r:
            r.raise_for_status()
            return _sse_payloads(list(r.iter_lines()))

    return call_stream


def raw_async(client: httpx2.AsyncClient, wire: Wire) -> AsyncCall:
    body = wire.body(False)

    async def call() -> object:
        r = await client.post(wire.path, json=body, headers=wire.headers)
        r.raise_for_status()
        return _text(wire, r.json())

    return call


def sdk_sync(client: openai.OpenAI | anthropic.Anthropic, wire: Wire, stream: bool) -> SyncCall:
    """The SDK's typed ``create`` with the same arguments as the raw body (streams: all events)."""
    create: Callable[..., Any] = (
        client.chat.completions.create
        if isinstance(client, openai.OpenAI)
        else client.messages.create
    )
    kwargs = wire.body(stream)
    if not stream:
        return lambda: create(**kwargs)

    def call_stream() -> object:
        with create(**kwargs) as events:
            return list(events)

    return call_stream


def sdk_async(client: openai.AsyncOpenAI | anthropic.AsyncAnthropic, wire: Wire) -> AsyncCall:
    create: Callable[..., Awaitable[object]] = (
        client.chat.completions.create
        if isinstance(client, openai.AsyncOpenAI)
        else client.messages.create
    )
    kwargs = wire.body(False)
    return lambda: create(**kwargs)


def fmgate_sync(model: fmgate.Model, stream: bool) -> SyncCall:
    if not stream:
        return lambda: model.generate(MESSAGES, max_tokens=MAX_TOKENS)
    return lambda: model.stream(MESSAGES, max_tokens=MAX_TOKENS).collect()


def fmgate_async(model: fmgate.Model) -> AsyncCall:
    return lambda: model.agenerate(MESSAGES, max_tokens=MAX_TOKENS)


def load_fmgate(wire: Wire) -> tuple[fmgate.Model | None, str]:
    """The fmgate model for ``wire``, or None and why (its backend may not be written yet)."""
    try:
        return fmgate.load(SPECS[wire.name], base_url=wire.sdk_base), ""
    except ImportError as exc:
        return None, f"fmgate {wire.name} backend not available ({exc}): fmgate column skipped"
    except fmgate.FmgateError as exc:
        return None, f"fmgate.load failed ({type(exc).__name__}: {exc}): fmgate column skipped"


# -- timing ---------------------------------------------------------------------------------------


class Connections:
    """Connections the server has accepted so far (its stats endpoint, on a connection of our own,
    kept alive, so that asking adds nothing after the first time)."""

    def __init__(self, url: str) -> None:
        self._client = httpx2.Client(base_url=url)
        self()

    def __call__(self) -> int:
        return int(self._client.get(STATS_PATH).json()["connections"])

    def close(self) -> None:
        self._client.close()


def time_sync(call: SyncCall, n: int) -> list[float]:
    clock = time.perf_counter
    out = []
    for _ in range(n):
        t0 = clock()
        call()
        out.append(clock() - t0)
    return out


async def time_async(call: AsyncCall, n: int, concurrency: int) -> tuple[float, list[float]]:
    """(wall seconds / n, each call's latency) for n calls, ``concurrency`` in flight."""
    clock = time.perf_counter
    latencies: list[float] = []
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t0 = clock()
            await call()
            latencies.append(clock() - t0)

    t0 = clock()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    return (clock() - t0) / n, latencies


def orders(names: Sequence[str]) -> itertools.cycle[tuple[str, ...]]:
    """Every order of the clients in turn, so none always runs first or after another."""
    return itertools.cycle(list(itertools.permutations(names)))


def usable(calls: dict[str, SyncCall], warmup: int, row: Row) -> dict[str, SyncCall]:
    """Warm every client up; drop one that fails (noting why) instead of aborting the run."""
    kept = {}
    for name, call in calls.items():
        try:
            for _ in range(warmup):
                call()
        except Exception as exc:
            row.note = f"{name} failed in warm-up ({type(exc).__name__}: {exc}): skipped"
            continue
        kept[name] = call
    return kept


def run_sync(
    label: str, calls: dict[str, SyncCall], args: argparse.Namespace, connections: Connections
) -> Row:
    row = Row(label)
    calls = usable(calls, args.warmup, row)
    order = orders(list(calls))
    for _ in range(args.rounds):
        for name in next(order):
            gc.collect()
            before = connections()
            samples = time_sync(calls[name], args.calls)
            row.count(name, args.calls, connections() - before)
            row.add(name, samples, statistics.median(samples))
    return row


async def run_async(
    label: str, calls: dict[str, AsyncCall], args: argparse.Namespace, connections: Connections
) -> tuple[Row, Row]:
    wall = Row(f"{label} wall/call")
    latency = Row(f"{label} p50 latency")
    kept = {}
    for name, call in calls.items():
        try:
            await time_async(call, max(args.warmup, args.concurrency * 2), args.concurrency)
        except Exception as exc:
            wall.note = f"{name} failed in warm-up ({type(exc).__name__}: {exc}): skipped"
            continue
        kept[name] = call
    order = orders(list(kept))
    for _ in range(args.rounds):
        for name in next(order):
            gc.collect()
            before = connections()
            per_call, latencies = await time_async(kept[name], args.calls, args.concurrency)
            wall.count(name, args.calls, connections() - before)
            wall.add(name, [per_call], per_call)
            latency.add(name, latencies, statistics.median(latencies))
    return wall, latency


# -- scenarios ------------------------------------------------------------------------------------


def sync_rows(wire: Wire, url: str, args: argparse.Namespace) -> list[Row]:
    model, why = load_fmgate(wire)
    connections = Connections(url)
    raw = httpx2.Client(base_url=url, limits=SDK_LIMITS, timeout=600)
    sdk: openai.OpenAI | anthropic.Anthropic
    if wire.name == "openai":
        sdk = openai.OpenAI(base_url=wire.sdk_base, api_key="x", max_retries=0)
    else:
        sdk = anthropic.Anthropic(base_url=wire.sdk_base, api_key="x", max_retries=0)
    rows = []
    for mode in ("sync", "stream"):
        if mode not in args.modes:
            continue
        stream = mode == "stream"
        calls = {"raw": raw_sync(raw, wire, stream), "sdk": sdk_sync(sdk, wire, stream)}
        if model is not None:
            calls["fmgate"] = fmgate_sync(model, stream)
        row = run_sync(f"{wire.name} {mode}", calls, args, connections)
        row.note = row.note or why
        rows.append(row)
    for client in (raw, sdk, model, connections):
        if client is not None:
            client.close()
    return rows


async def async_rows(wire: Wire, url: str, args: argparse.Namespace) -> list[Row]:
    model, why = load_fmgate(wire)
    connections = Connections(url)
    raw = httpx2.AsyncClient(base_url=url, limits=SDK_LIMITS, timeout=600)
    sdk: openai.AsyncOpenAI | anthropic.AsyncAnthropic
    if wire.name == "openai":
        sdk = openai.AsyncOpenAI(base_url=wire.sdk_base, api_key="x", max_retries=0)
    else:
        sdk = anthropic.AsyncAnthropic(base_url=wire.sdk_base, api_key="x", max_retries=0)
    calls = {"raw": raw_async(raw, wire), "sdk": sdk_async(sdk, wire)}
    if model is not None:
        calls["fmgate"] = fmgate_async(model)
    label = f"{wire.name} async c={args.concurrency}"
    wall, latency = await run_async(label, calls, args, connections)
    wall.note = wall.note or why
    await raw.aclose()
    await sdk.close()
    if model is not None:
        await model.aclose()
    connections.close()
    return [wall, latency]


# -- report ---------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return f"{value * 1e3:8.3f}" if value is not None else f"{'-':>8}"


def _x(value: float | None) -> str:
    return f"{value:6.2f}x" if value is not None else f"{'-':>7}"


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def report(rows: list[Row]) -> None:
    head = (
        f"{'scenario':<34}{'raw ms':>8}{'sdk ms':>9}{'fmgate ms':>10}"
        f"{'sdk/raw':>9}{'fmgate/raw':>11}{'fmgate/sdk':>11}  fmgate/sdk by round"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        print(
            f"{row.label:<34}{_ms(row.median('raw'))} {_ms(row.median('sdk'))}  "
            f"{_ms(row.median('fmgate'))} {_x(row.ratio('sdk', 'raw'))}    "
            f"{_x(row.ratio('fmgate', 'raw'))}    {_x(row.ratio('fmgate', 'sdk'))}  "
            f"{_spread(row.round_ratios('fmgate', 'sdk'))}"
        )
    notes = list(dict.fromkeys(row.note for row in rows if row.note))
    notes += [
        f"{row.label}: {client} opened {row.opened[client]} connections for "
        f"{row.calls[client]} timed calls (no keep-alive reuse)"
        for row in rows
        for client in row.opened
        if row.opened[client] > row.calls[client] // 100
    ]
    for note in notes:
        print(f"note: {note}")
    print()
    print("ms: median per call (for 'wall/call': wall time / calls, median over rounds);")
    print("ratios: of those medians; 'by round': the ratio of each round's medians, as median")
    print("[min-max] over rounds (paired within a round, so less moved by load from elsewhere).")


def versions(url: str) -> str:
    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "?"

    cpu = platform.processor() or platform.machine()
    return (
        f"machine: {platform.platform()}, {cpu}, {os.cpu_count()} cpus\n"
        f"python {platform.python_version()} ({platform.python_implementation()}); "
        f"fmgate {v('fmgate')}, openai {v('openai')}, anthropic {v('anthropic')}, "
        f"httpx2 {v('httpx2')}\nserver: {url} (zero delay, separate process)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per client per round")
    parser.add_argument("--rounds", type=int, default=10, help="rounds (client order permuted)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls per client first")
    parser.add_argument("--concurrency", type=int, default=50, help="tasks in flight (async)")
    parser.add_argument("--wires", nargs="+", choices=list(SPECS), default=list(SPECS))
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["sync", "async", "stream"],
        default=["sync", "async", "stream"],
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 rounds of 50 calls")
    parser.add_argument(
        "--price-memo",
        action="store_true",
        help="keep fmgate's price memo (a usage seen again within a minute reuses its price); "
        "off by default, since every call here has the same usage and would always hit it",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.rounds, args.warmup = 50, 2, 10
    if min(args.calls, args.rounds, args.concurrency) < 1 or args.warmup < 0:
        parser.error("--calls, --rounds and --concurrency must be positive, --warmup not negative")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # Fake keys: the server ignores them, and no real key can leave for it.
    os.environ["OPENAI_API_KEY"] = "sk-loopback-not-a-key"
    os.environ["ANTHROPIC_API_KEY"] = "sk-ant-loopback-not-a-key"
    # Recording includes the embedded store; keep the benchmark's records out of the user's own.
    store_dir = tempfile.TemporaryDirectory()
    os.environ["FMGATE_STORE"] = os.path.join(store_dir.name, "records.sqlite3")
    if not args.price_memo:
        # Price every call with genai-prices, as a workload of all-different usages would.
        _cost._priced = _cost._priced.__wrapped__  # type: ignore[assignment]
    started = time.perf_counter()
    with serve() as url:
        print(versions(url))
        print(f"pricing: {'memo on' if args.price_memo else 'every call priced by genai-prices'}")
        print(f"recording: in memory and to the SQLite store at {os.environ['FMGATE_STORE']}")
        print(
            f"{args.rounds} rounds x {args.calls} calls per client, {args.warmup} warm-up calls; "
            f"async: {args.concurrency} in flight\n"
        )
        rows: list[Row] = []
        for name in args.wires:
            wire = wires(url)[name]
            rows += sync_rows(wire, url, args)
            if "async" in args.modes:
                rows += asyncio.run(async_rows(wire, url, args))
    report(rows)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
