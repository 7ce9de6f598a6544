"""Renderers: the rich table, Markdown, the HTML page and its plots, CSV and JSONL files."""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import sys
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

import fmgate
from fmgate._record import CallRecord
from fmgate._report import markdown, rich_table, summarize, write_report
from fmgate._report.html import pareto_front
from fmgate._report.render import DASH, fmt_params, fmt_usd
from tests.report import build_records, build_scores

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    assert fmt_usd(Decimal("0.00015")) == "$0.000150"
    assert fmt_usd(Decimal("0.3")) == "$0.300"
    assert fmt_usd(Decimal("12.5")) == "$12.50"
    assert fmt_usd(Decimal(0)) == "$0.00"
    assert fmt_usd(None) == DASH == "\u2013"
    assert fmt_params(494_032_768) == "494M"
    assert fmt_params(500_000_000) == "500M"
    assert fmt_params(22_713_216) == "22.7M"
    assert fmt_params(7_615_616_512) == "7.62B"
    assert fmt_params(None) == DASH


def md_rows(text: str) -> list[list[str]]:
    table = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in table[2:]]


def test_markdown_has_one_row_per_model(records: list[CallRecord]) -> None:
    summaries = summarize(records, build_scores(records))
    text = markdown(summaries, title="My run")
    assert text.startswith("# My run\n")
    rows = md_rows(text)
    assert [r[0] for r in rows] == [s.label for s in summaries]
    header = [c.strip() for c in text.splitlines()[2].strip("|").split(" | ")]
    assert all(len(r) == len(header) for r in rows)
    api, local, vllm, _ = (dict(zip(header, r, strict=True)) for r in rows)
    assert api["cost / call"] == "$0.000300 list_price (5/6 priced)"
    assert api["cost / 1k calls"] == "$0.300 list_price (5/6 priced)"
    assert api["latency s p50 / p90 / p99"] == "3 / 4.6 / 4.96"
    assert api["TTFT s p50 / p90 / p99"] == DASH
    assert api["success"] == "83.3%"
    assert api["quality"] == "0.750 (exact, n=4)"
    assert local["cost / 1k calls"] == "$0.0125 mixed: energy_measured, hardware_time (4/5 priced)"
    assert (local["open weights"], local["licence"], local["params"]) == (
        "yes",
        "apache-2.0",
        "494M",
    )
    assert (local["data leaves machine"], local["offline capable"]) == ("no", "yes")
    assert (vllm["cost / call"], vllm["cost / 1k calls"], vllm["quality"]) == (DASH, DASH, DASH)
    assert vllm["channel"] == "self_hosted"
    assert "- openai:gpt-4o-mini (candidate): RateLimitError \u00d7 1" in text


def test_markdown_escapes_pipes(records: list[CallRecord]) -> None:
    from dataclasses import replace

    text = markdown(summarize([replace(records[0], alias="a|b")]), title="t")
    assert "| a\\|b |" in text


def test_rich_table_renders_every_label(records: list[CallRecord]) -> None:
    from rich.console import Console

    summaries = summarize(records)
    console = Console(record=True, width=200)
    console.print(rich_table(summaries))
    text = console.export_text()
    for s in summaries:
        assert s.label in text
    assert "anthropic:claude-haiku (judge)" in text
    assert "list_price" in text and DASH in text


def test_pareto_front_keeps_points_nothing_beats() -> None:
    points = [(1.0, 5.0), (2.0, 3.0), (3.0, 4.0), (4.0, 1.0), (2.0, 6.0)]
    assert pareto_front(points) == [(1.0, 5.0), (2.0, 3.0), (4.0, 1.0)]


def test_write_report_writes_every_file(tmp_path: Path, records: list[CallRecord]) -> None:
    paths = write_report(tmp_path / "out", records, build_scores(records), title="Run <1>")
    assert set(paths) == {"html", "md", "csv", "records_csv", "jsonl"}
    names = {p.name for p in paths.values()}
    assert names == {"report.html", "report.md", "summary.csv", "records.csv", "records.jsonl"}
    assert all(p.parent == tmp_path / "out" and p.stat().st_size > 0 for p in paths.values())
    with paths["csv"].open(newline="") as f:
        summary = list(csv.DictReader(f))
    assert [row["label"] for row in summary] == [s.label for s in summarize(records)]
    assert summary[2]["cost_per_call"] == ""  # unknown: empty, not 0
    assert summary[0]["cost_per_1k_calls"] == "0.3000"


def test_notes_head_the_html_and_markdown_pages(tmp_path: Path, records: list[CallRecord]) -> None:
    notes = ["tiny: random <weights>", "stub: canned replies"]
    paths = write_report(tmp_path, records, formats=("html", "md"), notes=notes)
    md = paths["md"].read_text()
    assert md.index("- stub: canned replies") < md.index("| model |")
    assert "<li>tiny: random &lt;weights&gt;</li>" in paths["html"].read_text()


def test_write_report_only_the_formats_asked(tmp_path: Path, records: list[CallRecord]) -> None:
    paths = write_report(tmp_path, records, formats=("md",))
    assert list(paths) == ["md"] and [p.name for p in tmp_path.iterdir()] == ["report.md"]
    with pytest.raises(fmgate.ConfigurationError, match="pdf"):
        write_report(tmp_path, records, formats=("pdf",))


def test_records_jsonl_round_trips(tmp_path: Path, records: list[CallRecord]) -> None:
    scores = build_scores(records)
    paths = write_report(tmp_path, records, scores, formats=("jsonl",))
    lines = [json.loads(line) for line in paths["jsonl"].read_text().splitlines()]
    assert [CallRecord.from_dict(row) for row in lines] == records
    assert lines[3]["score_exact"] == 1.0 and lines[3]["score_contains"] == 0.0
    assert lines[2]["score_exact"] == 0.0  # the warm-up is in the raw records, with its score
    assert lines[0]["score_exact"] is None


def test_records_csv_has_tags_as_json_and_score_columns(
    tmp_path: Path, records: list[CallRecord]
) -> None:
    scores = build_scores(records)
    paths = write_report(tmp_path, records, scores, formats=("csv",))
    with paths["records_csv"].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records)
    assert json.loads(rows[2]["tags"]) == records[2].tags
    assert rows[3]["score_exact"] == "1.0" and rows[3]["cost_amount"] == "0.0001"
    assert rows[0]["latency_ttft_s"] == ""  # None is an empty cell


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href"):
                (self.images if tag == "img" else self.links).append(value or "")


def test_html_is_self_contained_with_valid_pngs(tmp_path: Path, records: list[CallRecord]) -> None:
    import matplotlib.image

    paths = write_report(tmp_path, records, build_scores(records), formats=("html",))
    page = _Page()
    page.feed(paths["html"].read_text(encoding="utf-8"))
    assert page.links == [] and "script" not in page.tags and "link" not in page.tags
    assert len(page.images) == 3  # cost vs latency, latency spread, quality vs cost
    for uri in page.images:
        assert uri.startswith("data:image/png;base64,")
        data = base64.b64decode(uri.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        assert matplotlib.image.imread(io.BytesIO(data), format="png").ndim == 3


def test_html_content(tmp_path: Path, records: list[CallRecord]) -> None:
    paths = write_report(tmp_path, records, formats=("html",), title="Run <1> & co")
    html = paths["html"].read_text(encoding="utf-8")
    assert "<title>Run &lt;1&gt; &amp; co</title>" in html
    assert "Not plotted: unknown cost: vllm:llama." in html
    assert "http://" not in html and "https://" not in html
    for s in summarize(records):
        assert f"<td>{s.label}</td>" in html.replace(' class="model"', "")
    assert "RateLimitError \u00d7 1" in html and "How to read this" in html
    assert "2025-03-01 12:00:00 UTC to 2025-03-01 12:00:15 UTC" in html
    assert f"fmgate {fmgate.__version__}" in html


def test_html_plots_wide_cost_ranges_on_log_axes(tmp_path: Path) -> None:
    from dataclasses import replace

    base = build_records()[3]  # an ok gpt-4o-mini call
    wide = [  # $0.001 to $10 per 1k calls, 10,000x; each cheaper one slower: all on the front
        replace(base, id=str(i), model_id=f"m{i}", cost=replace(base.cost, amount=Decimal(c)))
        for i, c in enumerate(("0.000001", "0.00001", "0.001", "0.01"))
    ]
    wide = [replace(r, latency=replace(r.latency, total_s=4.0 - i)) for i, r in enumerate(wide)]
    failed = replace(base, id="f", model_id="down", outcome=replace(base.outcome, status="error"))
    page = _Page()
    html = write_report(tmp_path, [*wide, failed], formats=("html",))["html"].read_text()
    page.feed(html)
    assert len(page.images) == 2
    assert "Not plotted: no successful call: openai:down." in html


def test_log_scale_only_past_a_hundredfold_range() -> None:
    from fmgate._report.html import _log_if_wide, _new_figure

    _, ax = _new_figure(4, 3)
    _log_if_wide(ax, "x", [0.5, 50.0])  # 100x: still linear
    _log_if_wide(ax, "y", [0.0, 1000.0])  # a zero cannot go on a log axis
    assert (ax.get_xscale(), ax.get_yscale()) == ("linear", "linear")
    _log_if_wide(ax, "x", [0.5, 50.1])
    assert ax.get_xscale() == "log"


def test_html_without_scores_has_no_quality_plot(tmp_path: Path, records: list[CallRecord]) -> None:
    page = _Page()
    page.feed(write_report(tmp_path, records, formats=("html",))["html"].read_text())
    assert len(page.images) == 2


def test_html_escapes_model_labels(tmp_path: Path, records: list[CallRecord]) -> None:
    from dataclasses import replace

    evil = [replace(r, alias="<script>x</script>") for r in records[3:5]]
    html = write_report(tmp_path, evil, formats=("html",))["html"].read_text()
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


def test_empty_report(tmp_path: Path) -> None:
    paths = write_report(tmp_path, [])
    assert "no records" in paths["html"].read_text()
    assert md_rows(paths["md"].read_text()) == []


def test_html_needs_matplotlib(
    tmp_path: Path, records: list[CallRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(fmgate.MissingExtraError, match=r"pip install 'fmgate\[report\]'") as info:
        write_report(tmp_path / "out", records)
    assert info.value.extra == "report"
    assert not (tmp_path / "out").exists()  # refused before writing anything
    assert write_report(tmp_path / "md", records, formats=("md",))["md"].exists()
