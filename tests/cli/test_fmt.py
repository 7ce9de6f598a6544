"""The one-line record summary ``fmgate run`` prints."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from fmgate import Access, CallRecord, Cost, Latency, Outcome, Usage
from fmgate.cli._fmt import summary_line


def test_the_summary_names_tries_fallback_cost_and_where_the_data_went() -> None:
    record = CallRecord(
        id="r",
        started_at=datetime.now(UTC),
        backend="openai",
        model_id="gpt-4o-mini",
        usage=Usage(12, 5),
        latency=Latency(0.8, 0.2, None, wall_s=2.5),
        cost=Cost(Decimal("0.000005"), "list_price"),
        access=Access(open_weights=False, data_leaves_machine=True),
        outcome=Outcome(attempts=3, fallback_from="main"),
    )
    line = summary_line(record)
    assert line == (
        "openai:gpt-4o-mini · 12 in / 5 out · 800 ms (TTFT 200 ms), 3 tries in 2.50 s · "
        "fallback for main · $0.000005 list_price · api, closed weights, data left the machine"
    )
