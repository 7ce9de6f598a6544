"""The one-line record summary ``fmgate run`` prints."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from fmgate import Access, CallRecord, Cost, Latency, Outcome, Usage
from fmgate._report.render import fmt_usd
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
        f"fallback for main · {fmt_usd(Decimal('0.000005'))} list_price · "
        "api, closed weights, data left the machine"
    )


def _record(**fields: object) -> CallRecord:
    base: dict[str, object] = {
        "id": "r",
        "started_at": datetime.now(UTC),
        "backend": "openai",
        "model_id": "gpt-4o-mini",
        "access": Access(open_weights=False, data_leaves_machine=True),
    }
    return CallRecord(**{**base, **fields})  # type: ignore[arg-type]


def test_a_call_refused_before_sending_says_nothing_was_sent() -> None:
    refused = Outcome(status="error", error_type="OfflineError", sent=False)
    line = summary_line(_record(outcome=refused))
    assert line.endswith("api, closed weights, nothing sent")
    assert "data left the machine" not in line


def test_an_unknown_sent_falls_back_to_the_channel() -> None:
    line = summary_line(_record(outcome=Outcome(sent=None)))
    assert line.endswith("data left the machine")


def test_a_tiny_cost_is_never_a_string_of_zeros() -> None:
    line = summary_line(_record(cost=Cost(Decimal("2.98e-7"), "energy_estimated")))
    assert "0.000000" not in line and "298" in line
    assert fmt_usd(Decimal("2.98e-7")) + " energy_estimated" in line
