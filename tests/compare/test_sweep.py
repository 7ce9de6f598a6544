"""run_sweep over fake models: levels, tags, batching, stopping, failures, progress, and the
level arithmetic against values computed by hand."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

import fmgate
from fmgate import CallRecord
from fmgate._compare import PromptItem
from fmgate._compare.sweep import (
    Level,
    Sweep,
    level_calls,
    levels_of,
    planned_calls,
    planned_levels,
    run_sweep,
)
from fmgate._errors import ContextLengthError, InvalidRequestError
from fmgate._record import Latency, Outcome, Usage
from fmgate._tags import CONCURRENCY, PROMPT, RUN, SWEEP, WARMUP
from fmgate._types import ChatRequest, Completion
from fmgate.backends._base import BackendConfig
from tests.fakes import FakeBackend, FakeBatchingBackend, fake_config

ITEMS = [PromptItem("a", "alpha"), PromptItem("b", "beta gamma"), PromptItem("c", "delta")]
DELAY_S = 0.05


class SlowApi(FakeBackend):
    """An API that answers every call after ``DELAY_S``, however many are in flight; a prompt
    containing "too long" fails with a ContextLengthError (not retried)."""

    def _reply(self, request: ChatRequest) -> Completion:
        if "too long" in str(request.messages[-1].content):
            raise ContextLengthError("the prompt does not fit", provider="fake")
        return super()._reply(request)


def api_model(alias: str = "api", delay_s: float = DELAY_S) -> fmgate.Model:
    provider = dataclasses.replace(FakeBackend.provider_info, distribution="api")
    backend = SlowApi(BackendConfig(name="fake", model=alias, provider=provider))
    backend.delay_s = delay_s
    return fmgate.Model(backend, alias=alias)


def measured(sweep: Sweep) -> list[CallRecord]:
    return [r for r in sweep.records if WARMUP not in r.tags]


def test_an_api_model_runs_each_level_with_that_many_calls_in_flight() -> None:
    model = api_model()
    sweep = run_sweep(model, ITEMS, max_concurrency=4, run_id="s1")
    assert [level.concurrency for level in sweep.levels] == [1, 2, 4]
    assert [(level.calls, level.ok) for level in sweep.levels] == [(8, 8), (8, 8), (8, 8)]
    assert sweep.stopped is None and sweep.errors == 0
    assert isinstance(model.backend, SlowApi) and model.backend.max_in_flight == 4
    # 8 calls of 50 ms, c at a time: spans of about 400, 200 and 100 ms
    rates = [level.calls_per_s or 0.0 for level in sweep.levels]
    assert rates[0] < 8 / (8 * DELAY_S) * 1.01
    assert rates[2] > 2 * rates[0]
    for level in sweep.levels:
        assert level.latency_p50_s is not None and level.latency_p50_s >= DELAY_S * 0.9
        assert level.ttft_p50_s is None  # not streamed: TTFT unknown, never 0


def test_every_call_is_tagged_with_the_run_prompt_sweep_and_level() -> None:
    sweep = run_sweep(api_model(delay_s=0), ITEMS, max_concurrency=2, run_id="s2")
    warm = [r for r in sweep.records if WARMUP in r.tags]
    assert [r.tags for r in warm] == [{RUN: "s2", PROMPT: "a", SWEEP: "s2", WARMUP: "true"}]
    calls = measured(sweep)
    assert len(calls) == 16 == len(sweep.records) - 1
    for record in calls:
        assert record.tags[RUN] == "s2" and record.tags[SWEEP] == "s2"
    per_level = Counter((r.tags[CONCURRENCY], r.tags[PROMPT]) for r in calls)
    # 8 calls per level, the three prompts cycled from the first: a b c a b c a b
    assert per_level == {
        ("1", "a"): 3, ("1", "b"): 3, ("1", "c"): 2,
        ("2", "a"): 3, ("2", "b"): 3, ("2", "c"): 2,
    }  # fmt: skip


def test_a_local_batching_model_runs_a_batch_of_c_prompts_per_level() -> None:
    model = fmgate.Model(FakeBatchingBackend(fake_config("loc")), alias="loc")
    sweep = run_sweep(model, ITEMS, max_concurrency=4)
    assert isinstance(model.backend, FakeBatchingBackend)
    # the warm-up is a batch of one, down the levels' path; then 8 calls per level, in
    # batches of 1, 2 and 4
    assert model.backend.batches == [1] + [1] * 8 + [2] * 4 + [4] * 2
    sizes = {(r.tags[CONCURRENCY], r.params.get("batch_size")) for r in measured(sweep)}
    assert sizes == {("1", 1), ("2", 2), ("4", 4)}


def test_a_local_model_that_does_not_batch_has_one_level() -> None:
    model = fmgate.Model(FakeBackend(fake_config("one")), alias="one")
    assert planned_levels(model, 32) == [1]
    sweep = run_sweep(model, ITEMS, max_concurrency=32)
    assert [level.concurrency for level in sweep.levels] == [1]
    assert planned_calls(model, max_concurrency=32) == 1 + 8 == len(sweep.records)


def test_levels_double_up_to_the_limit_which_is_always_tried() -> None:
    model = api_model()
    assert planned_levels(model, 32) == [1, 2, 4, 8, 16, 32]
    assert planned_levels(model, 12) == [1, 2, 4, 8, 12]
    assert planned_levels(model, 1) == [1]
    assert planned_levels(model, 8, levels=[3, 1, 16, 3]) == [1, 3]
    with pytest.raises(InvalidRequestError, match="max_concurrency must be an int >= 1"):
        planned_levels(model, 0)
    with pytest.raises(InvalidRequestError, match="No level is at or under"):
        planned_levels(model, 2, levels=[4, 8])


def test_calls_per_level_default_and_floor() -> None:
    assert [level_calls(c) for c in (1, 2, 4, 8, 32)] == [8, 8, 8, 16, 64]  # max(2c, 8)
    assert level_calls(4, 3) == 4  # never fewer than the level: c must be in flight
    assert level_calls(4, 10) == 10


def test_failed_calls_are_counted_not_raised() -> None:
    items = [PromptItem("ok", "fine"), PromptItem("bad", "too long for the window")]
    sweep = run_sweep(api_model(delay_s=0), items, max_concurrency=2)
    assert [(level.calls, level.ok) for level in sweep.levels] == [(8, 4), (8, 4)]
    assert sweep.errors == 8
    failed = [r for r in measured(sweep) if not r.ok]
    assert {r.tags[PROMPT] for r in failed} == {"bad"}
    assert {r.outcome.error_type for r in failed} == {"ContextLengthError"}


def test_a_level_with_no_success_ends_the_sweep() -> None:
    items = [PromptItem("bad", "too long")]
    sweep = run_sweep(api_model(delay_s=0), items, max_concurrency=8)
    assert [(level.concurrency, level.ok) for level in sweep.levels] == [(1, 0)]
    assert sweep.stopped == "no call succeeded at concurrency 1"
    assert sweep.capacity() is None


def test_a_p90_past_the_stop_target_ends_the_sweep() -> None:
    sweep = run_sweep(api_model(delay_s=0.01), ITEMS, max_concurrency=8, stop_p90_s=0.001)
    assert [level.concurrency for level in sweep.levels] == [1]
    assert sweep.stopped is not None and "passed 0.001 s at concurrency 1" in sweep.stopped


def test_a_call_refused_before_sending_is_raised() -> None:
    model = api_model(delay_s=0)
    with pytest.raises(InvalidRequestError):  # every call would be refused: nothing to measure
        run_sweep(model, ITEMS, max_concurrency=2, params={"max_tokens": 0})
    assert isinstance(model.backend, FakeBackend) and model.backend.requests == []


def test_progress_counts_every_call_with_its_level() -> None:
    seen: list[tuple[int, int]] = []
    model = api_model(delay_s=0)
    sweep = run_sweep(model, ITEMS, max_concurrency=4, on_progress=lambda c, n: seen.append((c, n)))
    total = planned_calls(model, max_concurrency=4)
    assert total == 1 + 8 + 8 + 8 == len(sweep.records)
    assert sorted(n for _, n in seen) == list(range(1, total + 1))
    by_level = Counter(c for c, _ in seen)
    assert by_level == {1: 1 + 8, 2: 8, 4: 8}  # the warm-up is counted at the first level


def test_the_records_go_to_the_default_store() -> None:
    sweep = run_sweep(api_model(delay_s=0), ITEMS, max_concurrency=2, run_id="stored")
    fmgate.flush()
    stored = fmgate.records(tags={SWEEP: "stored"})
    assert sorted(r.id for r in stored) == sorted(r.id for r in sweep.records)
    assert levels_of(stored) == sweep.levels


def test_a_set_the_sweep_cannot_send_is_refused_before_any_call() -> None:
    model = api_model(delay_s=0)
    schema = {"type": "object"}
    with pytest.raises(InvalidRequestError, match="without schemas, tools"):
        run_sweep(model, [PromptItem("s", "x", schema=schema)])
    with pytest.raises(InvalidRequestError, match="classification"):
        run_sweep(model, [PromptItem("l", "bonjour", label="fr")])
    with pytest.raises(InvalidRequestError, match="at least one prompt"):
        run_sweep(model, [])
    assert isinstance(model.backend, FakeBackend) and model.backend.requests == []


# Hand-built records: the level arithmetic against values written out by hand.
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def call(
    n: int, start_s: float, wall_s: float, total_s: float, out: int | None, *, ok: bool = True
) -> CallRecord:
    return CallRecord(
        id=f"r{n}",
        started_at=T0 + timedelta(seconds=start_s),
        backend="fake",
        model_id="m",
        tags={SWEEP: "s", CONCURRENCY: "2"},
        usage=Usage(output_tokens=out),
        latency=Latency(total_s=total_s, ttft_s=total_s / 4, wall_s=wall_s),
        outcome=Outcome() if ok else Outcome(status="error", error_type="ServerError"),
    )


def test_a_level_from_records_by_hand() -> None:
    records = [
        call(0, 0.0, 1.0, 1.0, 10),  # ends at 1.0
        call(1, 0.5, 2.5, 2.0, 30),  # a retried call: busy 0.5 to 2.5 (its last try's 2.0 s)
        call(2, 1.0, 1.5, 1.5, 20),  # ends at 2.5
        call(3, 1.2, 3.8, 3.8, None, ok=False),  # failed: busy to 5.0, it held the machine
        call(4, 2.0, 1.0, 1.0, 40),  # ends at 3.0
    ]
    warm = dataclasses.replace(records[0], id="w", tags={**records[0].tags, WARMUP: "true"})
    (level,) = levels_of([*records, warm])
    assert (level.concurrency, level.calls, level.ok) == (2, 5, 4)
    assert level.busy_s == pytest.approx(5.0)  # the union of the calls' intervals: 0.0 to 5.0
    assert level.calls_per_s == pytest.approx(4 / 5.0)  # 0.8
    assert level.output_tokens_per_s == pytest.approx((10 + 30 + 20 + 40) / 5.0)  # 20
    # ok latencies 1.0, 2.0, 1.5, 1.0 sorted 1.0 1.0 1.5 2.0: p50 rank 1.5 -> 1.25;
    # p90 rank 2.7 -> 1.5 + 0.7 * (2.0 - 1.5) = 1.85
    assert level.latency_p50_s == pytest.approx(1.25)
    assert level.latency_p90_s == pytest.approx(1.85)
    assert level.ttft_p50_s == pytest.approx(1.25 / 4)  # ttft is a quarter of each


def test_an_unknown_token_count_leaves_tokens_per_s_unknown() -> None:
    (level,) = levels_of([call(0, 0.0, 1.0, 1.0, 10), call(1, 0.0, 2.0, 2.0, None)])
    assert level.calls_per_s == pytest.approx(1.0) and level.output_tokens_per_s is None


def level(c: int, rate: float, p90: float | None, ok: int = 8) -> Level:
    return Level(c, 8, ok, 1.0, rate, rate * 10, p90, p90, None, None, None)


def test_capacity_is_the_highest_rate_within_the_p90_target() -> None:
    levels = [level(1, 5.0, 0.5), level(2, 9.0, 0.9), level(4, 12.0, 1.6), level(8, 11.0, 3.0)]
    sweep = Sweep("s", "m", levels)
    assert sweep.capacity() is levels[2]  # no target: the highest calls/s
    assert sweep.capacity(1.0) is levels[1]
    assert sweep.capacity(0.9) is levels[1]  # at the target counts
    assert sweep.capacity(0.4) is None
    failed = Sweep("s", "m", [level(1, 0.0, None, ok=0)])
    assert failed.capacity() is None


def test_the_sweep_stops_when_calls_per_s_fell_two_levels_in_a_row() -> None:
    from fmgate._compare.sweep import _why_stop

    rising = [level(1, 5.0, 0.1), level(2, 9.0, 0.1), level(4, 8.0, 0.1)]
    assert _why_stop(rising, None) is None  # one fall is noise
    falling = [*rising, level(8, 7.0, 0.1)]
    assert _why_stop(falling, None) == "calls/s fell two levels in a row, to concurrency 8"
    recovered = [*rising, level(8, 10.0, 0.1), level(16, 9.0, 0.1)]
    assert _why_stop(recovered, None) is None
    assert _why_stop(rising, 0.05) == "p90 0.1 s passed 0.05 s at concurrency 4"
