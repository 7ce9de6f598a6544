"""The report of a run with structured output or tools: validity and tool use beside quality,
computed from the records (``record.output.valid``, ``record.tools``), shown only when a record
used either."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from fmgate._record import CallRecord, Latency, Outcome, OutputCheck, Score, ToolUse
from fmgate._report import markdown, rich_table, summarize, write_report
from fmgate._report.render import DASH, tables_for
from fmgate._tags import ROLE, WARMUP
from tests.report import T0, build_records, build_scores

QUANTITY = OutputCheck(schema="Quantity", schema_hash="0123456789abcdef", mode="native")
NO_OUTPUT, OK, NO_TOOLS = OutputCheck(), Outcome(), ToolUse()


def record(
    n: int,
    alias: str,
    *,
    valid: bool | None = None,
    output: OutputCheck = NO_OUTPUT,
    outcome: Outcome = OK,
    tools: ToolUse = NO_TOOLS,
    warmup: bool = False,
) -> CallRecord:
    """A call; ``valid`` (True or False) makes it a checked structured reply, a failed call
    with OutputValidationError when False."""
    if valid is not None:
        output = dataclasses.replace(QUANTITY, valid=valid)
        outcome = Outcome("ok") if valid else Outcome("error", error_type="OutputValidationError")
    return CallRecord(
        id=f"{alias}-{n}",
        started_at=T0 + timedelta(seconds=n),
        alias=alias,
        backend="fake",
        model_id=alias,
        latency=Latency(total_s=1.0),
        tags={ROLE: "candidate", **({WARMUP: "true"} if warmup else {})},
        outcome=outcome,
        output=output,
        tools=tools,
    )


def structured_run() -> tuple[list[CallRecord], list[Score]]:
    """``big``: 4 replies, all valid; ``small``: 4 replies, 1 valid (2 invalid, 1 a tool call
    instead, never checked), and 1 call that failed before any reply; each has an invalid
    warm-up, left out."""
    records = [
        record(0, "big", valid=False, warmup=True),
        *(record(1 + i, "big", valid=True) for i in range(4)),
        record(10, "small", valid=False, warmup=True),
        record(11, "small", valid=True),
        record(12, "small", valid=False),
        record(13, "small", valid=False),
        record(14, "small", output=QUANTITY),  # answered with a tool call: not checked
        record(15, "small", output=QUANTITY, outcome=Outcome("error", error_type="ServerError")),
    ]
    values = {"big": 1.0, "small-11": 1.0}
    scores = [
        Score(r.id, "json_schema", values.get(r.id, values.get(r.alias or "", 0.0)), T0)
        for r in records
        if r.outcome.error_type != "ServerError" and WARMUP not in r.tags
    ]
    return records, scores


def tool_run() -> list[CallRecord]:
    return [
        record(0, "caller", tools=ToolUse(offered=3, choice=None, called=1)),
        record(1, "caller", tools=ToolUse(offered=3, choice="required", called=2)),
        record(2, "caller", tools=ToolUse(offered=3, choice=None, called=0)),
        record(3, "caller"),  # a call without tools: left out of both numbers
    ]


def test_validity_is_over_the_replies_checked_warm_up_left_out() -> None:
    big, small = summarize(*structured_run())
    assert (big.output_checked, big.output_valid, big.validity_rate) == (4, 4, 1.0)
    assert (small.output_checked, small.output_valid) == (3, 1)
    assert small.validity_rate == pytest.approx(1 / 3)
    assert small.quality == pytest.approx(1 / 4) and small.scored == 4  # invalid ones graded 0
    assert (big.calls_with_tools, big.tools_called_per_call) == (0, None)


def test_tool_use_is_over_the_calls_that_offered_tools() -> None:
    (caller,) = summarize(tool_run())
    assert caller.calls_with_tools == 3 and caller.tools_called_per_call == pytest.approx(1.0)
    assert (caller.output_checked, caller.validity_rate) == (0, None)


def test_the_summary_shows_validity_beside_quality_only_when_a_record_checked_one(
    tmp_path: Path,
) -> None:
    page = markdown(summarize(*structured_run()), title="units")
    header = next(line for line in page.splitlines() if line.startswith("| model | calls"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[cells.index("quality") - 1] == "valid" and "with tools" not in cells
    assert "| 100.0% | 1.000 |" in page and "| 33.3% | 0.250 |" in page
    assert "valid: the share of replies that validated" in page
    chat = build_records()
    plain = markdown(summarize(chat, build_scores(chat)), title="chat")
    assert "valid" not in plain.split("## Speed")[0] and "with tools" not in plain
    written = write_report(tmp_path, *structured_run(), title="units", formats=("html", "csv"))
    html = written["html"].read_text(encoding="utf-8")
    assert (
        "<th>valid</th>" in html and 'title="1 of 3 replies validated against their schema"' in html
    )
    header_row = written["csv"].read_text(encoding="utf-8").splitlines()[0]
    assert "validity_rate" in header_row and "tools_called_per_call" in header_row


def test_tool_use_columns_appear_for_tools_alone() -> None:
    (main, *_) = tables_for(summarize(tool_run()))
    headers = [c.header for c in main.columns]
    assert headers[headers.index("quality") - 2 : headers.index("quality")] == [
        "with tools",
        "tools / call",
    ]
    assert "valid" not in headers
    (caller,) = summarize(tool_run())
    assert [c.cell(caller) for c in main.columns if c.header in ("with tools", "tools / call")] == [
        "3",
        "1",
    ]


def test_the_terminal_shows_validity_and_tool_use() -> None:
    from rich.console import Console

    records, scores = structured_run()
    console = Console(width=160, record=True)
    console.print(rich_table(summarize([*records, *tool_run()], scores)))
    text = console.export_text()
    assert "valid" in text and "33.3%" in text and "with tools" in text
    assert "tools / call" in text
    (main, *_) = tables_for(summarize([*records, *tool_run()], scores))
    small = next(s for s in summarize(records, scores) if s.label == "small")
    per_call = next(c for c in main.columns if c.header == "tools / call")
    assert per_call.cell(small) == DASH  # it was offered no tools: unknown, not 0
