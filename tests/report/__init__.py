"""A hand-built set of records whose aggregates the report tests compute by hand.

- ``openai:gpt-4o-mini`` (api, candidate): one warm-up call (9 s, load 2 s), five ok calls of
  1..5 s with 10..50 output tokens priced $0.0001..$0.0005 (list_price), one RateLimitError.
- ``qwen-local`` (local transformers, candidate): five ok streamed calls of 0.2..1.0 s, TTFT
  0.05..0.25 s, 11 output tokens each; three priced $0.00001 on energy_measured, one $0.00002 on
  hardware_time, one unknown.
- ``vllm:llama`` (self_hosted, candidate): two ok calls, cost unknown.
- ``anthropic:claude-haiku`` (judge): two ok calls of 1.5 and 2.5 s at $0.001; listed first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fmgate._record import Access, CallRecord, Cost, Latency, Outcome, Score, Usage
from fmgate._tags import ROLE, RUN, WARMUP

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
API_ACCESS = Access(
    open_weights=False, data_leaves_machine=True, offline_capable=False, requires_api_key=True
)
LOCAL_ACCESS = Access(
    open_weights=True,
    license="apache-2.0",
    parameters=494_032_768,
    data_leaves_machine=False,
    offline_capable=True,
    requires_api_key=False,
)


class Builder:
    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def add(self, backend: str, model_id: str, **fields: object) -> CallRecord:
        n = len(self.records)
        tags = {RUN: "run1", ROLE: "candidate", **fields.pop("tags", {})}
        record = CallRecord(
            id=f"r{n:02d}",
            started_at=T0 + timedelta(seconds=n),
            backend=backend,
            model_id=model_id,
            tags=tags,
            **fields,
        )
        self.records.append(record)
        return record


def _api(b: Builder, total: float, **fields: object) -> CallRecord:
    return b.add(
        "openai",
        "gpt-4o-mini",
        provider="openai",
        distribution="api",
        access=API_ACCESS,
        latency=Latency(total_s=total, load_s=fields.pop("load_s", None)),
        **fields,
    )


def _local(b: Builder, total: float, ttft: float, cost: Cost) -> CallRecord:
    return b.add(
        "transformers",
        "Qwen/Qwen2.5-0.5B-Instruct",
        alias="qwen-local",
        provider="transformers",
        distribution="local",
        stream=True,
        access=LOCAL_ACCESS,
        usage=Usage(input_tokens=5, output_tokens=11, source="tokenizer"),
        latency=Latency.measure(total, ttft_s=ttft, output_tokens=11),
        cost=cost,
    )


def build_records() -> list[CallRecord]:
    b = Builder()
    for total in (1.5, 2.5):
        b.add(
            "anthropic",
            "claude-haiku",
            distribution="api",
            tags={ROLE: "judge"},
            access=API_ACCESS,
            latency=Latency(total_s=total),
            cost=Cost(Decimal("0.001"), "list_price"),
        )
    _api(b, 9.0, load_s=2.0, tags={WARMUP: "true"}, cost=Cost(Decimal("0.009"), "list_price"))
    energy = Cost(Decimal("0.00001"), "energy_measured")
    locals_ = [energy, energy, energy, Cost(Decimal("0.00002"), "hardware_time"), Cost()]
    for i in range(5):
        _api(
            b,
            float(i + 1),
            usage=Usage(input_tokens=7, output_tokens=10 * (i + 1), source="provider"),
            cost=Cost(Decimal("0.0001") * (i + 1), "list_price"),
        )
        _local(b, 0.2 * (i + 1), 0.05 * (i + 1), locals_[i])
    _api(
        b,
        0.5,
        outcome=Outcome(status="error", error_type="RateLimitError", http_status=429),
    )
    for total in (0.3, 0.5):
        b.add("vllm", "llama", distribution="self_hosted", latency=Latency(total_s=total))
    return b.records


def build_scores(records: list[CallRecord]) -> list[Score]:
    """exact: gpt-4o-mini's ok calls 1, 1, 0, 1, None (mean 3/4), its warm-up 0 (left out);
    qwen-local 0 then re-graded 1, and 0 (mean 1/2); contains: one gpt-4o-mini call."""
    api = [r for r in records if r.model_id == "gpt-4o-mini"]
    warm, ok = api[0], [r for r in api[1:] if r.ok]
    local = [r for r in records if r.alias == "qwen-local"]
    scores = [Score(warm.id, "exact", 0.0, T0)]
    scores += [
        Score(r.id, "exact", v, T0) for r, v in zip(ok, (1.0, 1.0, 0.0, 1.0, None), strict=True)
    ]
    scores.append(Score(ok[0].id, "contains", 0.0, T0))
    scores += [Score(local[0].id, "exact", 0.0, T0), Score(local[1].id, "exact", 0.0, T0)]
    scores.append(Score(local[0].id, "exact", 1.0, T0 + timedelta(minutes=1)))
    return scores
