"""Aggregates against values computed by hand from the records in ``tests/report``."""

from __future__ import annotations

import random
import statistics
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from fmgate._record import Access, CallRecord, Cost, Latency, Score
from fmgate._report import ModelSummary, percentile, summarize
from fmgate._tags import ROLE, WARMUP
from tests.report import T0, build_records, build_scores


def by_label(summaries: list[ModelSummary]) -> dict[str, ModelSummary]:
    return {s.label: s for s in summaries}


@pytest.fixture
def summaries() -> dict[str, ModelSummary]:
    records = build_records()
    return by_label(summarize(records, build_scores(records)))


def test_percentile_known_values() -> None:
    data = [5.0, 1.0, 4.0, 2.0, 3.0]  # order does not matter
    assert percentile(data, 0.5) == 3.0
    assert percentile(data, 0.9) == pytest.approx(4.6)  # rank 0.9 * 4 = 3.6: 4 + 0.6 * (5 - 4)
    assert percentile(data, 0.99) == pytest.approx(4.96)  # rank 3.96: 4 + 0.96 * 1
    assert percentile(data, 0.25) == 2.0
    assert percentile(data, 0.0) == 1.0
    assert percentile(data, 1.0) == 5.0
    assert percentile([1.0, 2.0], 0.5) == 1.5
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


def test_percentile_rejects_a_percent() -> None:
    with pytest.raises(ValueError, match="0.9 for p90"):
        percentile([1.0, 2.0], 90)


def test_percentile_matches_statistics_inclusive_quantiles() -> None:
    rng = random.Random(1234)
    for n in (2, 3, 10, 101):
        data = [rng.lognormvariate(0, 1) for _ in range(n)]
        cuts = statistics.quantiles(data, n=100, method="inclusive")  # p1 .. p99
        for k, expected in enumerate(cuts, start=1):
            assert percentile(data, k / 100) == pytest.approx(expected, rel=1e-12)


def test_rows_candidates_in_first_appearance_order_then_judges() -> None:
    rows = summarize(build_records())
    assert [(s.label, s.role) for s in rows] == [
        ("openai:gpt-4o-mini", "candidate"),
        ("qwen-local", "candidate"),
        ("vllm:llama", "candidate"),
        ("anthropic:claude-haiku", "judge"),  # recorded first, listed last
    ]


def test_api_model(summaries: dict[str, ModelSummary]) -> None:
    s = summaries["openai:gpt-4o-mini"]
    assert (s.backend, s.model_id, s.provider, s.distribution) == (
        "openai",
        "gpt-4o-mini",
        "openai",
        "api",
    )
    assert (s.operation, s.role) == ("chat", "candidate")
    assert (s.calls, s.ok, s.warmup) == (6, 5, 1)  # the 9 s warm-up is not a call here
    assert s.success_rate == pytest.approx(5 / 6)
    # ok latencies 1, 2, 3, 4, 5 (the failure's 0.5 s and the warm-up's 9 s are left out)
    assert s.latency_p50_s == 3.0
    assert s.latency_p90_s == pytest.approx(4.6)
    assert s.latency_p99_s == pytest.approx(4.96)
    assert (s.ttft_p50_s, s.ttft_p90_s, s.ttft_p99_s) == (None, None, None)  # not streamed
    assert s.decode_tokens_per_s is None
    assert s.output_tokens_per_s == pytest.approx((10 + 20 + 30 + 40 + 50) / (1 + 2 + 3 + 4 + 5))
    assert s.load_s == 2.0  # the cold start, paid by the warm-up call
    # (0.0001 + 0.0002 + 0.0003 + 0.0004 + 0.0005) / 5; the failed call has no amount
    assert s.cost_per_call == Decimal("0.0003")
    assert s.cost_per_1k_calls == Decimal("0.3")
    assert (s.cost_known_calls, s.cost_basis) == (5, "list_price")
    assert s.errors == {"RateLimitError": 1}


def test_local_model(summaries: dict[str, ModelSummary]) -> None:
    s = summaries["qwen-local"]
    assert (s.backend, s.distribution, s.calls, s.ok, s.success_rate) == (
        "transformers",
        "local",
        5,
        5,
        1.0,
    )
    assert s.latency_p50_s == pytest.approx(0.6)
    assert s.latency_p90_s == pytest.approx(0.8 + 0.6 * 0.2)
    assert s.latency_p99_s == pytest.approx(0.8 + 0.96 * 0.2)
    assert s.ttft_p50_s == pytest.approx(0.15)
    assert s.ttft_p90_s == pytest.approx(0.2 + 0.6 * 0.05)
    # decode = (11 - 1) / (total - ttft) = 10 / 0.15, 10 / 0.30, 10 / 0.45, ...: median 10 / 0.45
    assert s.decode_tokens_per_s == pytest.approx(10 / 0.45)
    assert s.output_tokens_per_s == pytest.approx(5 * 11 / (0.2 + 0.4 + 0.6 + 0.8 + 1.0))
    assert s.load_s is None
    # 3 x 0.00001 (energy) + 0.00002 (hardware time) over the 4 priced calls
    assert s.cost_per_call == Decimal("0.0000125")
    assert s.cost_per_1k_calls == Decimal("0.0125")
    assert s.cost_known_calls == 4
    assert s.cost_basis == "mixed: energy_measured, hardware_time"
    assert s.errors == {}


def test_access_columns(summaries: dict[str, ModelSummary]) -> None:
    local, api = summaries["qwen-local"], summaries["openai:gpt-4o-mini"]
    assert (local.open_weights, local.license, local.parameters) == (True, "apache-2.0", 494032768)
    assert (local.data_leaves_machine, local.offline_capable, local.requires_api_key) == (
        False,
        True,
        False,
    )
    assert (api.open_weights, api.license, api.parameters) == (False, None, None)
    assert (api.data_leaves_machine, api.offline_capable, api.requires_api_key) == (
        True,
        False,
        True,
    )


def test_access_comes_from_the_newest_record() -> None:
    old, new = build_records()[2:4]
    newer = replace(new, access=Access(license="mit"), started_at=old.started_at + timedelta(1))
    assert summarize([newer, old])[0].license == "mit"


def test_unknown_cost_stays_none(summaries: dict[str, ModelSummary]) -> None:
    s = summaries["vllm:llama"]
    assert (s.cost_per_call, s.cost_per_1k_calls, s.cost_known_calls) == (None, None, 0)
    assert s.cost_basis == "unknown"
    assert s.quality is None and s.quality_scorer is None and s.scored == 0
    assert s.latency_p50_s == pytest.approx(0.4)
    assert s.output_tokens_per_s is None  # no token counts: unknown, not 0


def test_judge_row(summaries: dict[str, ModelSummary]) -> None:
    s = summaries["anthropic:claude-haiku"]
    assert (s.role, s.calls, s.ok, s.latency_p50_s) == ("judge", 2, 2, 2.0)
    assert s.cost_per_1k_calls == Decimal("1.000")


def test_the_same_model_as_judge_is_a_row_of_its_own() -> None:
    record = build_records()[3]
    judged = replace(record, id="j", tags={ROLE: "judge"})
    rows = summarize([judged, record])
    assert [(s.label, s.role, s.calls) for s in rows] == [
        ("openai:gpt-4o-mini", "candidate", 1),
        ("openai:gpt-4o-mini", "judge", 1),
    ]


def test_quality_is_the_mean_of_the_main_scorer(summaries: dict[str, ModelSummary]) -> None:
    api, local = summaries["openai:gpt-4o-mini"], summaries["qwen-local"]
    # exact: 1, 1, 0, 1 and one None (ungraded); the warm-up's 0 and "contains" are not mixed in
    assert (api.quality, api.quality_scorer, api.scored) == (pytest.approx(3 / 4), "exact", 4)
    # 0 re-graded to 1, then 0
    assert (local.quality, local.quality_scorer, local.scored) == (0.5, "exact", 2)


def test_warmup_only_model_has_no_rates() -> None:
    warm = replace(build_records()[2], tags={WARMUP: "true"})
    (s,) = summarize([warm])
    assert (s.calls, s.ok, s.warmup, s.success_rate, s.latency_p50_s) == (0, 0, 1, None, None)
    assert s.cost_per_call is None and s.cost_basis == "unknown"


def test_errors_without_a_type_count_as_unknown() -> None:
    from fmgate._record import Outcome

    record = CallRecord("x", T0, "openai", "m", outcome=Outcome(status="error"))
    (s,) = summarize([record])
    assert (s.errors, s.success_rate, s.latency_p50_s) == ({"unknown": 1}, 0.0, None)


def test_cost_zero_is_a_known_amount_not_unknown() -> None:
    free = CallRecord("x", T0, "openai", "m", cost=Cost(Decimal(0), "list_price"))
    (s,) = summarize([free], [Score("other", "exact", 1.0, T0)])
    assert (s.cost_per_call, s.cost_known_calls, s.quality) == (Decimal(0), 1, None)


def test_embeddings_operation_and_no_latency() -> None:
    record = CallRecord("e", T0, "openai", "emb", operation="embeddings", latency=Latency())
    (s,) = summarize([record])
    assert (s.operation, s.ok, s.latency_p50_s, s.output_tokens_per_s) == (
        "embeddings",
        1,
        None,
        None,
    )


def test_a_model_that_did_two_tasks_gets_a_row_per_task() -> None:
    def rec(i: int, operation: str, alias: str = "smol") -> CallRecord:
        return CallRecord(f"{alias}{i}", T0, "transformers", "m", alias=alias, operation=operation)

    records = [rec(0, "chat"), rec(1, "classify"), rec(2, "chat"), rec(3, "classify", "ft")]
    rows = {s.label: (s.operation, s.calls) for s in summarize(records)}
    assert rows == {"smol · chat": ("chat", 2), "smol · classify": ("classify", 1),
                    "ft": ("classify", 1)}  # fmt: skip


def test_calls_made_by_fmgate_serve_get_a_row_of_their_own() -> None:
    from datetime import UTC, datetime

    from fmgate._report.aggregate import label_of

    def rec(**tags: str) -> CallRecord:
        return CallRecord(
            id="x", started_at=datetime.now(UTC), backend="transformers", model_id="m",
            alias="tiny", tags=dict(tags),
        )  # fmt: skip

    assert label_of(rec()) == "tiny"
    assert label_of(rec(**{"fmgate.served": "true"})) == "tiny (served)"


def test_tries_per_call_and_fallbacks_show_how_available_a_model_was() -> None:
    from datetime import UTC, datetime

    from fmgate import Outcome

    def rec(i: int, attempts: int, fallback_from: str | None = None) -> CallRecord:
        outcome = Outcome(attempts=attempts, fallback_from=fallback_from)
        return CallRecord(
            id=str(i), started_at=datetime.now(UTC), backend="b", model_id="m", outcome=outcome
        )

    (s,) = summarize([rec(0, 1), rec(1, 3), rec(2, 2, "main")])
    assert s.tries_per_call == 2.0  # (1 + 3 + 2) / 3
    assert s.fallbacks == 1


def test_calls_sent_off_the_machine_come_from_each_records_outcome_sent() -> None:
    """A call refused before sending (offline mode, a bad parameter) sent nothing, though its
    channel is one whose data leaves the machine; a local call never sends anything off."""
    from fmgate import Outcome

    api = build_records()[3]  # gpt-4o-mini: data_leaves_machine
    refused = Outcome(status="error", error_type="OfflineError", sent=False)
    rows = [
        replace(api, id="a", outcome=Outcome(sent=True)),
        replace(api, id="b", outcome=refused),
        replace(api, id="c", outcome=Outcome(sent=None)),  # an older record: unknown
    ]
    local = [r for r in build_records() if r.alias == "qwen-local"]
    local = [replace(r, outcome=Outcome(sent=True)) for r in local]
    api_row, local_row = summarize([*rows, *local])
    assert (api_row.data_leaves_machine, api_row.sent_off, api_row.sent_unknown) == (True, 1, 1)
    assert (local_row.data_leaves_machine, local_row.sent_off, local_row.sent_unknown) == (
        False,
        0,
        0,
    )


def test_batched_calls_say_how_many_shared_one_pass() -> None:
    """generate_many records ``params["batch_size"]``: their latency is the batch's."""
    local = [r for r in build_records() if r.alias == "qwen-local"]
    sizes = (8, 8, 4, 1, 8)
    batched = [replace(r, params={"batch_size": n}) for r, n in zip(local, sizes, strict=True)]
    (s,) = summarize(batched)
    assert s.batch_size == 8
    (alone,) = summarize([replace(r, params={"batch_size": 1}) for r in local])
    assert alone.batch_size is None
    (api, *_) = summarize(build_records())
    assert api.batch_size is None
