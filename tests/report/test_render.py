"""Text renderers: cell formats, the rich table and Markdown."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from dataclasses import replace
from decimal import Decimal

import pytest

from fmgate._record import CallRecord, Cost, Outcome, Score
from fmgate._report import markdown, rich_table, summarize
from fmgate._report.render import DASH, TERMINAL_TABLES, fmt_ms, fmt_params, fmt_usd, notes_for
from fmgate._tags import ROLE
from tests.report import build_records, build_scores


@pytest.fixture
def records() -> list[CallRecord]:
    return build_records()


def test_import_fmgate_loads_neither_rich_nor_matplotlib() -> None:
    code = (
        "import sys, fmgate, fmgate._report; "
        "print([m for m in ('rich', 'matplotlib') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cell_formats() -> None:
    assert fmt_usd(Decimal("12.5")) == "$12.50"
    assert fmt_usd(Decimal("0.3")) == "$0.300"
    assert fmt_usd(Decimal("0.015")) == "$0.0150"
    assert fmt_usd(Decimal(0)) == "$0.00"
    assert fmt_usd(None) == DASH == "\u2013"
    assert fmt_ms(0.0177) == "17.7" and fmt_ms(3.0) == "3000" and fmt_ms(None) == DASH
    assert fmt_params(494_032_768) == "494M"
    assert fmt_params(22_713_216) == "22.7M"
    assert fmt_params(7_615_616_512) == "7.62B"
    assert fmt_params(None) == DASH


def test_costs_under_a_cent_are_in_micro_dollars_never_a_string_of_zeros() -> None:
    """The issue's cases: 2.98e-7 showed as $0.000000, 4.52e-8 as $0.0000000452."""
    assert fmt_usd(Decimal("2.98e-7")) == "0.298 µ$"
    assert fmt_usd(Decimal("4.52e-8")) == "0.0452 µ$"
    assert fmt_usd(Decimal("0.00015")) == "150 µ$"
    assert fmt_usd(Decimal("0.0000125")) == "12.5 µ$"
    assert fmt_usd(Decimal("1e-12")) == "1.00e-6 µ$"
    for exponent in range(-13, 3):
        for digits in ("1", "2.98", "9.99"):
            amount = Decimal(f"{digits}e{exponent}")
            text = fmt_usd(amount)
            assert not re.search(r"\.000", text), text
            number = float(text.strip("$ µ"))
            value = number / 1e6 if "µ$" in text else number
            assert value == pytest.approx(float(amount), rel=5e-3), text


def md_table(text: str, title: str) -> list[dict[str, str]]:
    """The rows of the Markdown table under ``## title``, as dicts by header."""
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header, *rows = ([c.strip() for c in line.strip("|").split(" | ")] for line in lines)
    return [dict(zip(header, row, strict=True)) for row in rows[1:]]


def test_markdown_tables(records: list[CallRecord]) -> None:
    summaries = summarize(records, build_scores(records))
    text = markdown(summaries, title="My run")
    assert text.startswith("# My run\n")
    summary = md_table(text, "Summary")
    assert [r["model"] for r in summary] == [
        "openai:gpt-4o-mini",
        "qwen-local",
        "vllm:llama",
        "anthropic:claude-haiku (judge)",
    ]
    api, local, vllm, _ = summary
    assert (api["cost / call"], api["cost / 1k calls"]) == (
        "300 µ$ (5/6 priced)",
        "$0.300 (5/6 priced)",
    )
    assert api["cost basis"] == "list_price"
    assert (api["latency p50 ms"], api["TTFT p50 ms"], api["success"]) == ("3000", DASH, "83.3%")
    assert (api["quality"], api["scored by"]) == ("0.750", "exact, n=4")
    assert local["cost / 1k calls"] == "$0.0125 (4/5 priced)"
    assert local["cost basis"] == "mixed: energy_measured, hardware_time"
    assert (vllm["cost / call"], vllm["quality"]) == (DASH, DASH)
    speed = md_table(text, "Speed (ms)")[0]
    assert (speed["latency p50"], speed["latency p90"], speed["latency p99"]) == (
        "3000",
        "4600",
        "4960",
    )
    access = md_table(text, "Access: how open, how reachable")
    assert access[1]["open weights"] == "yes" and access[1]["licence"] == "apache-2.0"
    assert (access[1]["data leaves machine"], access[1]["offline capable"]) == ("no", "yes")
    assert access[2]["channel"] == "self_hosted"
    assert "- openai:gpt-4o-mini: RateLimitError \u00d7 1" in text


def test_markdown_escapes_pipes(records: list[CallRecord]) -> None:
    text = markdown(summarize([replace(records[0], alias="a|b")]), title="t")
    assert "| a\\|b (judge) |" in text


def render_terminal(
    records: list[CallRecord], width: int, scores: list[Score] | None = None
) -> str:
    """What a console of ``width`` columns writing to a file (a pipe, a CI log) shows."""
    from rich.console import Console

    out = io.StringIO()
    console = Console(width=width, file=out, color_system=None)
    console.print(rich_table(summarize(records, scores or []), title="run"))
    return out.getvalue()


def test_one_unit_of_time_in_the_terminal_markdown_and_html(
    records: list[CallRecord], tmp_path: object
) -> None:
    """gpt-4o-mini's p50 of 3 s reads 3000 (ms) everywhere; no table speaks in seconds."""
    from fmgate._report.html import render_html

    summaries = summarize(records)
    texts = [
        render_terminal(records, 200),
        markdown(summaries, title="t"),
        render_html(summaries, records, title="t"),
    ]
    for text in texts:
        assert "p50 ms" in text and "3000" in text
        assert not re.search(r"\b(latency|load|TTFT) s\b", text)


def long_named_records() -> list[CallRecord]:
    """Long names, a quality of 1/12: what rich squeezed to ``tiny-...``, ``qualit`` and ``0.0``."""
    base = build_records()[3]
    return [
        replace(base, id=str(i), alias=name, outcome=Outcome(sent=True))
        for i, name in enumerate(
            ("tiny-chat-random-with-a-long-name", "anthropic:claude-3-5-haiku")
        )
    ]


def test_rich_table_at_80_columns_keeps_every_value_whole() -> None:
    """A pipe or a CI log gets 80 columns: no cell may be cut, ellipsized or split mid-word."""
    records = long_named_records()
    scores = [Score(records[0].id, "contains", 1 / 12, records[0].started_at)]
    summaries = summarize(records, scores)
    text = render_terminal(records, 80, scores)
    words = {word.rstrip(":") for word in text.split()}  # a narrow table: "header: value" lines
    assert "\u2026" not in text
    for spec in TERMINAL_TABLES:
        for column in spec.columns:
            assert set(column.header.split()) <= words, column.header
            for s in summaries:
                assert set(column.cell(s).split()) <= words, (column.header, column.cell(s))
    assert "0.0833" in words and "tiny-chat-random-with-a-long-name" in words


def test_a_console_too_narrow_for_a_table_gets_one_line_per_value() -> None:
    text = render_terminal(long_named_records(), 40)
    assert "\u2026" not in text
    assert "tiny-chat-random-with-a-long-name" in text.split()
    assert "  p50 ms: 1000" in text and "  per 1k calls: $0.100" in text


def test_rows_that_are_not_candidates_are_explained(records: list[CallRecord]) -> None:
    """The ``(index)`` row: the call that embeds every expected answer for retrieval@1."""
    index = replace(
        records[3], id="i", alias="minilm", operation="embeddings", tags={ROLE: "index"}
    )
    notes = " ".join(notes_for(summarize([*records, index])))
    assert "minilm (index): the call that embedded every expected answer" in notes
    assert "anthropic:claude-haiku (judge): the judge model" in notes
    assert "minilm (index): the call" in " ".join(render_terminal([*records, index], 200).split())


def test_batched_latency_is_said_to_be_the_batchs(records: list[CallRecord]) -> None:
    batched = [
        replace(r, params={"batch_size": 8}) if r.alias == "qwen-local" else r for r in records
    ]
    text = " ".join(render_terminal(batched, 120).split())
    assert "qwen-local ran its calls in batches of up to 8" in text
    assert "latency is its whole batch's time" in markdown(summarize(batched), title="t")
    assert "batches" not in " ".join(notes_for(summarize(records)))


def test_a_model_whose_calls_all_failed_says_so(records: list[CallRecord]) -> None:
    failed = Outcome(status="error", error_type="APIConnectionError")
    down = replace(records[3], id="d", model_id="down", outcome=failed, cost=Cost())
    summaries = summarize([*records, down])
    text = markdown(summaries, title="t")
    row = md_table(text, "Summary")[3]
    assert (row["model"], row["cost / call"], row["success"]) == (
        "openai:down",
        "all calls failed",
        "0.0%",
    )
    assert "openai:down: all calls failed" in text


def test_calls_that_sent_nothing_do_not_count_as_data_leaving(records: list[CallRecord]) -> None:
    """Offline mode refused every call before sending: the channel leaves, the data did not."""
    refused = Outcome(status="error", error_type="OfflineError", sent=False)
    api = [replace(r, outcome=refused) for r in records if r.model_id == "gpt-4o-mini"]
    text = markdown(summarize(api), title="t")
    row = md_table(text, "Access: how open, how reachable")[0]
    assert (row["data leaves machine"], row["calls that sent data off"]) == ("yes", "0/6")
    assert re.search(r"openai:gpt-4o-mini +api +no +– +– +0/6", render_terminal(api, 200))
