"""write_report: which files, what they hold, and what happens without matplotlib."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

import fmgate
from fmgate._record import CallRecord
from fmgate._report import summarize, write_report
from tests.report import build_records, build_scores


@pytest.fixture
def records() -> list[CallRecord]:
    return build_records()


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


def test_without_matplotlib_the_other_files_are_written_and_the_html_is_explained(
    tmp_path: Path, records: list[CallRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fmgate report`` without the report extra used to write nothing and exit 2."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    written = write_report(tmp_path / "out", records, build_scores(records))
    assert set(written) == {"md", "csv", "records_csv", "jsonl"}
    assert all(path.exists() for path in written.values())
    assert not (tmp_path / "out" / "report.html").exists()
    why = written.skipped["html"]
    assert "the HTML report needs matplotlib" in why
    assert 'pip install "fmgate[report]"' in why and 'pip install -e ".[report]"' in why


def test_the_html_alone_without_matplotlib_is_refused_before_writing(
    tmp_path: Path, records: list[CallRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(fmgate.MissingExtraError, match=r"fmgate\[report\]") as info:
        write_report(tmp_path / "out", records, formats=("html",))
    assert info.value.extra == "report"
    assert not (tmp_path / "out").exists()


def test_nothing_is_skipped_with_matplotlib(tmp_path: Path, records: list[CallRecord]) -> None:
    assert write_report(tmp_path, records, formats=("html", "md")).skipped == {}


def test_summary_csv_has_the_sent_and_batch_columns(
    tmp_path: Path, records: list[CallRecord]
) -> None:
    with write_report(tmp_path, records, formats=("csv",))["csv"].open(newline="") as f:
        row = next(csv.DictReader(f))
    assert (row["sent_off"], row["sent_unknown"], row["batch_size"]) == (
        "0",
        "6",
        "",
    )  # records without outcome.sent


def test_the_cli_writes_what_it_can_and_says_how_to_get_the_html(
    tmp_path: Path,
    records: list[CallRecord],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fmgate.cli._comparing import FORMATS, show

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    show(records, [], title="t", out=str(tmp_path), formats=FORMATS)
    err = capsys.readouterr().err
    assert "report.html not written: the HTML report needs matplotlib" in err
    assert 'pip install "fmgate[report]"' in err  # not eaten as rich markup
    assert (tmp_path / "report.md").exists() and not (tmp_path / "report.html").exists()
