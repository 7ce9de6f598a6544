"""The report's break-even section: its numbers are the arithmetic's (worked out by hand in
tests/test_economics.py), it says what it assumed, and it shows only where there is a pair."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from fmgate._economics import Hardware, owned, rented
from fmgate._record import CallRecord, Score
from fmgate._report import write_report
from fmgate._report.economics import (
    EconomicsOptions,
    breakevens,
    fmt_volume,
    markdown_section,
    terminal_table,
)
from tests.test_economics import T0, api, sweep


@pytest.fixture
def records() -> list[CallRecord]:
    return sweep() + api()


def graded(records: list[CallRecord]) -> list[Score]:
    return [Score(r.id, "contains", 1.0 if r.alias == "api" else 0.6, T0) for r in records]


def table_row(md: str, first: str) -> list[str]:
    """The cells of the first Markdown table row that starts with ``first``."""
    line = next(line for line in md.splitlines() if line.startswith(f"| {first} |"))
    return [cell.strip() for cell in line.strip("|").split(" | ")]


def test_fmt_volume() -> None:
    assert [fmt_volume(v) for v in (950, 10_000, 59_568, 1_065_800, 999_700, 2.5e9)] == [
        "950",
        "10k",
        "59.6k",
        "1.07M",
        "1M",
        "2.5B",
    ]


def test_the_section_shows_the_arithmetic(tmp_path: Path, records: list[CallRecord]) -> None:
    """$1.46/h: fixed $1065.80 a month; 2 calls/s at concurrency 4 (p90 2 s under the API's
    2.85 s); self-hosted per 1k calls: $1065.80 / 10,000 x 1000 = $106.58 at 10k, $10.66 at
    100k, $1.07 at 1M; the API's $1.00; break-even 1,065,800 calls = 1.07M. Per 1M output
    tokens at 1M calls: $53.29 (20 tokens a call); the API $100 (10 tokens at $0.001)."""
    options = EconomicsOptions(hardware=rented("1.46"))
    paths = write_report(tmp_path, records, graded(records), formats=("md",), economics=options)
    md = paths["md"].read_text().split("## Break-even: self-hosting vs API")[1]
    cells = table_row(md, "small")
    assert cells == [
        "small",
        "$1.46/h",
        "2 calls/s, 40 tok/s at concurrency 4; p90 2000 ms (target 2850 ms)",
        "$1065.80",
        "api",
        "$1.00",
        "$106.58",
        "$10.66",
        "$1.07",
        "1.07M calls/month",
        "lower quality: 0.60 vs 1.00 (contains)",
    ]
    tokens = md.split("### Per million output tokens")[1]
    assert table_row(tokens, "small") == [
        "small",
        "api",
        "$100.00",
        "$5329.00",
        "$532.90",
        "$53.29",
    ]
    assert "Utilisation 50%" in md and "730 hours" in md
    assert "Hardware $1.46/h: configured; billed every hour it runs, busy or idle." in md
    assert "docs/economics.md" in md


def test_assumed_hardware_is_said_with_its_source(records: list[CallRecord]) -> None:
    """No machine named: the table's CPU row, $0.0816/h x 730 = $59.568 a month, marked."""
    [be] = breakevens(records, (), EconomicsOptions())
    assert be.hardware.assumed and be.fixed_usd_per_month == Decimal("59.5680")
    md = "\n".join(markdown_section([be]))
    assert table_row(md, "small")[1] == "aws-m7g-large ($0.0816/h) (assumed)"
    assert "59.6k calls/month" in md
    assert "factualminds.com" in md and "2026-06-17" in md
    assert "Assumed (the records ran on cpu): name yours with --hardware." in md


def test_an_api_not_run_is_marked_estimated(records: list[CallRecord]) -> None:
    found = breakevens(sweep(), (), EconomicsOptions(against=("openai:gpt-4o-mini",)))
    md = "\n".join(markdown_section(found))
    cells = table_row(md, "small")
    assert cells[4] == "openai:gpt-4o-mini"
    assert cells[5].endswith("(estimated)")
    assert cells[-1].startswith("not compared: API not run")


def test_never_says_why(records: list[CallRecord]) -> None:
    """$100/h: $73,000 a month over 2,628,000 calls: 27.8x the API's $0.001 a call."""
    found = breakevens(records, (), EconomicsOptions(hardware=rented(100)))
    md = "\n".join(markdown_section(found))
    assert table_row(md, "small")[9] == "never: 27.8x the API's price per call"
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(terminal_table(found))
    text = console.export_text()
    assert "never: 27.8x the API's price per call" in text
    assert "small" in text and "api" in text


def test_the_html_has_the_section_and_its_plot(tmp_path: Path, records: list[CallRecord]) -> None:
    pytest.importorskip("matplotlib")
    serverless = Hardware("serverless", Decimal("3.6"), billing="active_seconds")
    for options in (EconomicsOptions(hardware=rented("1.46")), EconomicsOptions(serverless)):
        html = write_report(tmp_path, records, formats=("html",), economics=options)["html"]
        page = html.read_text()
        section = page.split("<h2>Break-even: self-hosting vs API</h2>")[1].split("<h2>")[0]
        assert section.count("data:image/png;base64,") == 1
        assert "log-log" in section
    assert "at any volume" in section  # serverless: no fixed cost, each call cheaper
    assert 'title="configured; billed per second of a request (serverless)"' in section


def test_no_section_without_an_api_side(tmp_path: Path) -> None:
    paths = write_report(tmp_path, sweep(), formats=("md", "html"))
    assert "Break-even" not in paths["md"].read_text()
    assert "Break-even" not in paths["html"].read_text()
    # and none when turned off
    paths = write_report(tmp_path, sweep() + api(), formats=("md",), economics=None)
    assert "Break-even" not in paths["md"].read_text()


def test_owned_hardware_states_its_power(records: list[CallRecord]) -> None:
    """$8760 over 1 year = $1/h; 300 W busy, 100 W idle at $0.20/kWh: fixed $730 + $14.60."""
    machine = owned(8760, lifetime_years=1, busy_watts=300, idle_watts=100, usd_per_kwh="0.20")
    md = "\n".join(markdown_section(breakevens(records, (), EconomicsOptions(machine))))
    assert table_row(md, "small")[1:4:2] == ["owned $8760 ($1/h)", "$744.60"]
    assert "$8760 over a 1-year life (configured)" in md
    assert "small on owned $8760 ($1/h): 300 W busy (given), 100 W idle, at $0.20/kWh." in md
