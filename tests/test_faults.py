"""Fault injection: 1,000 calls at concurrency 50 against a server that fails on purpose.

The server (tests/fault_server.py) answers each try of each call from a seeded plan: 200s, 429s
with and without Retry-After (seconds, milliseconds, an HTTP date, one too long to wait),
500/502/503/529, 408, 400, timeouts, non-JSON and truncated bodies, dropped and reset connections,
streams cut, stalled, garbled or ended by an error event after some text. From the plan and the
retry policy the test knows how every call must end, and checks that each left exactly one record
saying so, in the sinks and in the store, and that the server saw exactly the tries the records
count. The calls run over both wires, async and sync, plain and streamed.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

import fmgate
from fmgate import CallRecord, FmgateError, Model, Response
from fmgate._retry import RetryPolicy
from tests import fault_server
from tests.fault_server import REPLY, WORDS, kind, text_events

SEED = 20240611
POLICY = RetryPolicy(max_retries=3, backoff_s=0.001)
# The client's timeout. A "timeout" fault never answers, so any value would do; under 1 s, a busy
# 2-core machine (other tests alongside) timed out healthy answers too, and the plan's count broke.
TIMEOUT_S = 2.0
CAP = POLICY.max_retries + 1

# How often each fault is planned, per try (percent).
WEIGHTS = {
    "ok": 47,
    "429": 4,
    "429-retry-after-0": 4,
    "429-retry-after-0.02": 3,
    "429-retry-after-date": 3,
    "429-retry-after-ms": 3,
    "429-retry-after-120": 2,
    "500": 5,
    "502-html": 3,
    "503": 4,
    "529": 2,
    "408": 2,
    "400": 3,
    "timeout": 3,
    "drop": 4,
    "reset": 3,
    "nonjson": 3,
    "truncated": 2,
}
STREAM_FAULTS = ("cut", "short", "stall", "badsse", "errevent")  # N text events, then the fault
STREAM_WEIGHTS = {**WEIGHTS, "ok": 35, "cut": 4, "short": 2, "stall": 2, "badsse": 2, "errevent": 2}


@dataclass(frozen=True)
class Lane:
    """Calls of one wire made one way, ``concurrency`` at a time (the lanes add up to 50)."""

    wire: str
    mode: str  # agenerate_many | generate_many | astream | stream
    calls: int
    concurrency: int

    @property
    def stream(self) -> bool:
        return self.mode in ("astream", "stream")


LANES = (
    Lane("openai", "agenerate_many", 580, 24),
    Lane("anthropic", "agenerate_many", 150, 8),
    Lane("openai", "astream", 100, 6),
    Lane("anthropic", "astream", 50, 4),
    Lane("openai", "generate_many", 40, 3),
    Lane("openai", "stream", 40, 3),
    Lane("anthropic", "stream", 40, 2),
)


# -- what each fault must become ------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """What a try that met a fault ends as on the client."""

    error_type: str | None  # None: the try succeeded
    http_status: int | None = None
    retried: bool = False  # fmgate tries again (if the cap allows)
    wait_s: float = 0.0  # the Retry-After it must wait first


_RATE_LIMITED = Effect("RateLimitError", 429, retried=True)
_EFFECTS = {
    "ok": Effect(None),
    "429": _RATE_LIMITED,
    "429-retry-after-0": _RATE_LIMITED,
    "429-retry-after-0.02": Effect("RateLimitError", 429, retried=True, wait_s=0.02),
    "429-retry-after-date": _RATE_LIMITED,  # a date in the past: no wait
    "429-retry-after-ms": Effect("RateLimitError", 429, retried=True, wait_s=0.01),
    # Longer than the policy's max_retry_after_s (60): raised at once, not waited out.
    "429-retry-after-120": Effect("RateLimitError", 429),
    "500": Effect("ServerError", 500, retried=True),
    "502-html": Effect("ServerError", 502, retried=True),
    "503": Effect("ServerError", 503, retried=True),
    "529": Effect("ServerError", 529, retried=True),
    "408": Effect("TimeoutError", 408, retried=True),
    "400": Effect("BadRequestError", 400),
    "timeout": Effect("TimeoutError", retried=True),
    "drop": Effect("ConnectionError", retried=True),
    "reset": Effect("ConnectionError", retried=True),
    "nonjson": Effect("MalformedResponseError", 200),
    # A body cut short before it was whole reads as a dropped connection, on both wires.
    "truncated": Effect("ConnectionError", retried=True),
    # Streams: after the opening events a cut is no clean connection error, and is not retried.
    "cut": Effect("MalformedResponseError"),
    "short": Effect("MalformedResponseError"),
    "badsse": Effect("MalformedResponseError"),
}


def effect(fault: str, stream: bool) -> Effect:
    # Retryable mid-stream failures are retried only while no text has reached the caller.
    if kind(fault) == "stall":  # a read timeout
        return Effect("TimeoutError", retried=text_events(fault) == 0)
    if kind(fault) == "errevent":  # the service reports it is overloaded
        return Effect("ServerError", retried=text_events(fault) == 0)
    if fault == "nonjson" and stream:  # read as an event stream that never finishes
        return Effect("MalformedResponseError")
    return _EFFECTS[kind(fault)]


@dataclass(frozen=True)
class Expected:
    error_type: str | None
    http_status: int | None
    attempts: int
    chunks: int | None
    min_wall_s: float


@dataclass(frozen=True)
class Call:
    id: str
    lane: Lane
    faults: tuple[str, ...]  # the fault for each try, as many as the cap allows

    @property
    def prompt(self) -> str:
        return f"{self.id}: say something"

    def expected(self) -> Expected:
        """Walk the tries: a retried fault uses one up, until success, a final fault or the cap."""
        waited = 0.0
        for attempt, fault in enumerate(self.faults, 1):
            seen = effect(fault, self.lane.stream)
            if seen.error_type is None or not seen.retried or attempt == CAP:
                chunks = _chunks(fault) if self.lane.stream else None
                return Expected(seen.error_type, seen.http_status, attempt, chunks, waited)
            waited += seen.wait_s
        raise AssertionError(f"{self.id}: the plan is shorter than the cap")


def _chunks(fault: str) -> int:
    if fault == "ok":
        return len(WORDS)
    return text_events(fault) if kind(fault) in STREAM_FAULTS else 0


def plan_calls(seed: int) -> list[Call]:
    rng = random.Random(seed)
    calls: list[Call] = []
    for lane in LANES:
        weights = STREAM_WEIGHTS if lane.stream else WEIGHTS
        names, odds = list(weights), list(weights.values())
        for _ in range(lane.calls):
            faults = [_with_count(name, rng) for name in rng.choices(names, odds, k=CAP)]
            calls.append(Call(f"call-{len(calls):04d}", lane, tuple(faults)))
    return calls


def _with_count(name: str, rng: random.Random) -> str:
    if name in STREAM_FAULTS:
        return f"{name}:{rng.randrange(len(WORDS))}"
    return name


# -- making the calls -----------------------------------------------------------------------------


@dataclass
class Result:
    value: Response | BaseException
    chunks: list[str] | None = None  # the text a stream gave before it ended


def load(spec: str, **settings: object) -> Model:
    """The model with the suite's retry policy: through load() once it takes the policy."""
    try:
        model = fmgate.load(
            spec, max_retries=POLICY.max_retries, backoff=POLICY.backoff_s, **settings
        )
    except fmgate.InvalidRequestError:  # load() does not take the retry keys yet
        model = Model(fmgate.load(spec, **settings).backend, retry=POLICY)
    assert (model.retry.max_retries, model.retry.backoff_s) == (
        POLICY.max_retries,
        POLICY.backoff_s,
    )
    return model


async def astream_call(model: Model, call: Call) -> Result:
    seen: list[str] = []
    with fmgate.tagged(call=call.id):
        stream = model.astream(call.prompt)
    try:
        async with stream:
            async for chunk in stream:
                seen.append(chunk.text)
    except Exception as exc:  # an FmgateError, or an unmapped one the test will report
        return Result(exc, seen)
    return Result(stream.response, seen)


def stream_call(model: Model, call: Call) -> Result:
    seen: list[str] = []
    with fmgate.tagged(call=call.id):
        stream = model.stream(call.prompt)
    try:
        with stream:
            for chunk in stream:
                seen.append(chunk.text)
    except Exception as exc:
        return Result(exc, seen)
    return Result(stream.response, seen)


async def run_lane(
    lane: Lane, model: Model, calls: list[Call], pool: ThreadPoolExecutor
) -> list[Result]:
    loop = asyncio.get_running_loop()
    prompts = [c.prompt for c in calls]
    tags = [{"call": c.id} for c in calls]
    if lane.mode == "agenerate_many":  # an unmapped exception would end the lane, and the test
        out = await model.agenerate_many(
            prompts, concurrency=lane.concurrency, return_exceptions=True, tags=tags
        )
        return [Result(r) for r in out]
    if lane.mode == "generate_many":
        many = functools.partial(
            model.generate_many,
            prompts,
            concurrency=lane.concurrency,
            return_exceptions=True,
            tags=tags,
        )
        return [Result(r) for r in await loop.run_in_executor(pool, many)]
    gate = asyncio.Semaphore(lane.concurrency)

    async def one(call: Call) -> Result:
        async with gate:
            if lane.mode == "astream":
                return await astream_call(model, call)
            return await loop.run_in_executor(pool, stream_call, model, call)

    return await asyncio.gather(*(one(c) for c in calls))


async def run_all(models: dict[str, Model], calls: list[Call]) -> dict[str, Result]:
    by_lane = {lane: [c for c in calls if c.lane is lane] for lane in LANES}
    with ThreadPoolExecutor(max_workers=8) as pool:
        lanes = await asyncio.gather(
            *(run_lane(lane, models[lane.wire], by_lane[lane], pool) for lane in LANES)
        )
    return {
        c.id: r
        for lane, results in zip(LANES, lanes, strict=True)
        for c, r in zip(by_lane[lane], results, strict=True)
    }


# -- the suite ------------------------------------------------------------------------------------


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch, server: fault_server.Running) -> dict[str, Model]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fault-injection")
    return {
        "openai": load("vllm:fault", base_url=f"{server.url}/v1", timeout=TIMEOUT_S),
        "anthropic": load(
            "anthropic:claude-3-5-haiku-latest", base_url=server.url, timeout=TIMEOUT_S
        ),
    }


CALLS = plan_calls(SEED)


@pytest.fixture
def server() -> Iterator[fault_server.Running]:
    with fault_server.serve({c.id: list(c.faults) for c in CALLS}) as running:
        yield running


async def test_a_thousand_faulty_calls_leave_one_true_record_each(
    models: dict[str, Model],
    server: fault_server.Running,
    memory: fmgate.MemorySink,
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
) -> None:
    assert sum(lane.concurrency for lane in LANES) == 50 and len(CALLS) == 1000
    t0 = time.perf_counter()
    try:
        results = await run_all(models, CALLS)
    finally:
        for model in models.values():
            await model.aclose()
    elapsed = time.perf_counter() - t0

    escaped = {
        cid: r.value
        for cid, r in results.items()
        if not isinstance(r.value, Response | FmgateError)
    }
    assert not escaped, f"unmapped exceptions escaped: {list(escaped.items())[:5]}"
    records = memory.records
    by_call = _one_record_per_call(records)
    wrong = [m for c in CALLS if (m := _mismatch(c, by_call[c.id], results[c.id]))]
    assert not wrong, f"{len(wrong)} calls ended otherwise than planned:\n" + "\n".join(wrong[:10])
    log = server.log()
    _check_server_log(log, by_call)
    stored = fmgate.records()
    assert sorted(r.id for r in stored) == sorted(r.id for r in records), "the store differs"

    summary = _summary(records, log, len(stored), elapsed)
    print("\n" + summary)
    request.node.add_report_section("call", "fault injection", summary)
    record_property("fault_injection", summary)
    assert elapsed < 60, f"the suite must run in under a minute, took {elapsed:.1f}s"


def _one_record_per_call(records: list[CallRecord]) -> dict[str, CallRecord]:
    ids = Counter(r.id for r in records)
    assert not [i for i, n in ids.items() if n > 1], "a record was emitted twice"
    per_call = Counter(r.tags.get("call") for r in records)
    duplicated = sorted(c for c, n in per_call.items() if n > 1)
    assert not duplicated, f"calls with more than one record: {duplicated[:10]}"
    missing = sorted({c.id for c in CALLS} - set(per_call))
    assert not missing, f"calls without a record: {missing[:10]}"
    assert len(records) == len(CALLS), "records that belong to no call"
    return {r.tags["call"]: r for r in records}


def _mismatch(call: Call, record: CallRecord, result: Result) -> str | None:
    want = call.expected()
    got = record.outcome
    status = "ok" if want.error_type is None else "error"
    if (got.status, got.error_type, got.http_status, got.attempts, got.chunks) != (
        status,
        want.error_type,
        want.http_status,
        want.attempts,
        want.chunks,
    ):
        return (
            f"{call.id} {call.lane.mode} {call.lane.wire} {call.faults}: expected {want}, got {got}"
        )
    value = result.value
    if value.record is not record:  # type: ignore[union-attr]
        return f"{call.id}: the caller's record is not the one the sinks saw"
    if want.error_type is None and (not isinstance(value, Response) or value.text != REPLY):
        return f"{call.id}: expected the reply, got {value!r}"
    if want.error_type is not None and type(value).__name__ != want.error_type:
        return f"{call.id}: raised {type(value).__name__}, recorded {want.error_type}"
    if result.chunks is not None and result.chunks != WORDS[: want.chunks]:
        return f"{call.id}: the stream gave {result.chunks}, expected {want.chunks} words"
    wall, last_try = record.latency.wall_s, record.latency.total_s
    if wall is None or last_try is None or wall < max(last_try, want.min_wall_s - 0.001):
        return f"{call.id}: wall_s {wall} < the last try ({last_try}) or Retry-After waits"
    return None


def _check_server_log(log: list[tuple[str, int, str]], by_call: dict[str, CallRecord]) -> None:
    """The server saw exactly the tries each record counts, and sent the planned faults."""
    sent: dict[str, list[str]] = {}
    for call_id, attempt, fault in log:
        tries = sent.setdefault(call_id, [])
        assert attempt == len(tries) + 1, f"{call_id}: try {attempt} out of order"
        tries.append(fault)
    plans = {c.id: c.faults for c in CALLS}
    assert sent.keys() == plans.keys(), "requests for calls outside the plan, or calls not sent"
    for call_id, faults in sent.items():
        attempts = by_call[call_id].outcome.attempts
        assert len(faults) == attempts <= CAP, f"{call_id}: {len(faults)} tries, {attempts} counted"
        assert tuple(faults) == plans[call_id][:attempts]
    assert len(log) == sum(r.outcome.attempts for r in by_call.values())


def _summary(
    records: list[CallRecord], log: list[tuple[str, int, str]], stored: int, elapsed: float
) -> str:
    lanes = ", ".join(f"{lane.calls} {lane.wire} {lane.mode}" for lane in LANES)
    faults = Counter(kind(fault) for _, _, fault in log)
    outcomes = Counter(r.outcome.error_type or "ok" for r in records)
    attempts = Counter(r.outcome.attempts for r in records)
    ids = Counter(r.id for r in records)
    tags = {r.tags["call"] for r in records}
    return "\n".join(
        [
            f"fault injection (seed {SEED}): {len(records)} calls at concurrency 50 "
            f"({lanes}); {len(log)} requests in {elapsed:.1f}s",
            "faults sent: " + ", ".join(f"{k} {n}" for k, n in faults.most_common()),
            "outcomes: " + ", ".join(f"{k} {n}" for k, n in outcomes.most_common()),
            "attempts: "
            + ", ".join(f"{k}: {attempts[k]}" for k in sorted(attempts))
            + f" (max {max(attempts)}, cap {CAP})",
            f"records: {len(records)}, in the store {stored}, lost {len(CALLS) - len(tags)}, "
            f"duplicated {sum(n - 1 for n in ids.values())}",
        ]
    )


# -- found by this suite --------------------------------------------------------------------------


async def test_a_call_its_caller_cancels_still_leaves_one_record(
    memory: fmgate.MemorySink,
) -> None:
    plan = {"call-9000": ["timeout"], "call-9001": ["stall:2"]}  # no answer; 2 words, then none
    with fault_server.serve(plan) as running:
        model = load("vllm:fault", base_url=f"{running.url}/v1", timeout=5.0)

        async def read_stream() -> None:
            async for _ in model.astream("call-9001: say something"):
                pass

        try:
            with pytest.raises(TimeoutError):  # the caller's deadline, not fmgate's
                await asyncio.wait_for(model.agenerate("call-9000: say something"), 0.3)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(read_stream(), 0.3)
        finally:
            await model.aclose()
        assert [t for _, t, _ in running.log()] == [1, 1]  # both reached the server
    assert len(memory.records) == 2, "a cancelled call sent its request but left no record"
    assert {r.outcome.error_type for r in memory.records} == {"CancelledError"}
