"""``write_report``: the report's files (HTML, Markdown, CSV, JSONL) in one folder."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from .._economics import BreakEven
from .._errors import ConfigurationError, MissingExtraError
from .._record import CallRecord, Score
from .._tags import RUN
from .aggregate import ModelSummary, summarize
from .economics import DEFAULT_ECONOMICS, EconomicsOptions, breakevens
from .render import markdown
from .strips import load_strips

__all__ = ["FORMATS", "Written", "write_report"]

FORMATS = ("html", "md", "csv", "jsonl")


class Written(dict[str, Path]):
    """The paths written, by format; ``skipped`` maps a format left out to why, in a sentence
    the caller prints (the HTML page without matplotlib)."""

    def __init__(self, paths: dict[str, Path], skipped: dict[str, str] | None = None) -> None:
        super().__init__(paths)
        self.skipped: dict[str, str] = dict(skipped or {})


def write_report(
    out_dir: str | os.PathLike[str],
    records: Sequence[CallRecord],
    scores: Sequence[Score] = (),
    *,
    title: str = "fmgate report",
    formats: Collection[str] = FORMATS,
    notes: Sequence[str] = (),
    economics: EconomicsOptions | None = DEFAULT_ECONOMICS,
    pairs: Sequence[BreakEven] | None = None,
) -> Written:
    """Write the report files into ``out_dir`` and return their paths by format.

    ``notes`` (plain text, e.g. what the models are) head the HTML and Markdown pages. Images
    that ``fmgate compare`` drew into ``out_dir`` (``images/index.json``) show as thumbnail strips.
    The break-even section (each self-hosted row against each API row) is computed with
    ``economics`` (default: assumed hardware, 50% utilisation, the API's p90 as the target) and
    shown where the records hold such a pair; ``None`` leaves it out. ``pairs``: the section's
    pairs when the caller already computed them with ``economics`` (the CLI prints them first).

    ``html``: report.html; ``md``: report.md; ``csv``: summary.csv (one row per model, key
    ``csv``) and records.csv (one row per record, key ``records_csv``); ``jsonl``: records.jsonl.
    Without matplotlib (the ``report`` extra) the other files are still written and
    ``Written.skipped["html"]`` says what to install; asked for the HTML page alone, it raises
    :class:`MissingExtraError` before writing anything.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ConfigurationError(f"unknown report format(s) {unknown}; known: {', '.join(FORMATS)}")
    skipped = _skipped(formats)
    formats = [f for f in formats if f not in skipped]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = summarize(records, scores)
    runs = {r.tags[RUN] for r in records if RUN in r.tags}
    strips = load_strips(out, runs)  # the images compare drew into this folder for these runs
    found = pairs if pairs is not None else []
    if pairs is None and economics is not None:
        found = breakevens(records, scores, economics)
    written: dict[str, Path] = {}
    if "html" in formats:
        from .economics import html_section
        from .html import render_html

        written["html"] = out / "report.html"
        page = render_html(
            summaries,
            records,
            scores,
            title=title,
            notes=notes,
            strips=strips,
            sections=html_section(found),
        )
        written["html"].write_text(page, "utf-8")
    if "md" in formats:
        from .economics import markdown_section

        written["md"] = out / "report.md"
        page = markdown(
            summaries, title=title, notes=notes, strips=strips, sections=markdown_section(found)
        )
        written["md"].write_text(page, "utf-8")
    return Written(written | _write_data(out, summaries, records, scores, formats), skipped)


def _skipped(formats: Collection[str]) -> dict[str, str]:
    """The HTML page when matplotlib is missing; raised instead when it was all that was asked."""
    from .html import require_matplotlib

    if "html" not in formats:
        return {}
    try:
        require_matplotlib()
    except MissingExtraError as exc:
        if set(formats) == {"html"}:
            raise
        return {"html": str(exc)}
    return {}


def _write_data(
    out: Path,
    summaries: Sequence[ModelSummary],
    records: Sequence[CallRecord],
    scores: Sequence[Score],
    formats: Collection[str],
) -> dict[str, Path]:
    written: dict[str, Path] = {}
    if "csv" in formats:
        written["csv"] = out / "summary.csv"
        write_csv(written["csv"], summary_rows(summaries), SUMMARY_FIELDS)
        written["records_csv"] = out / "records.csv"
        write_csv(written["records_csv"], score_columns(records, scores))
    if "jsonl" in formats:
        written["jsonl"] = out / "records.jsonl"
        write_jsonl(written["jsonl"], score_columns(records, scores))
    return written


def score_columns(records: Sequence[CallRecord], scores: Sequence[Score]) -> list[dict[str, Any]]:
    """Each record's flat dict plus one ``score_<scorer>`` key per scorer (the latest score), and
    ``score_<scorer>_detail`` for a scorer that keeps details (a classification score's rows)."""
    latest = {(s.record_id, s.scorer): s for s in scores}
    scorers = sorted({s.scorer for s in scores})
    detailed = sorted({s.scorer for s in scores if s.detail is not None})
    rows = []
    for record in records:
        row = record.to_dict()
        found = {n: latest.get((record.id, n)) for n in scorers}
        row.update({f"score_{n}": s.value if s else None for n, s in found.items()})
        row.update({f"score_{n}_detail": s.detail if (s := found[n]) else None for n in detailed})
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")


def write_csv(
    path: Path, rows: Sequence[dict[str, Any]], fieldnames: Sequence[str] | None = None
) -> None:
    """Dicts and lists go in as JSON text, ``None`` as an empty cell."""
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows({k: _csv_cell(v) for k, v in row.items()} for row in rows)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    return str(value)


SUMMARY_FIELDS = tuple(f.name for f in dataclasses.fields(ModelSummary))


def summary_rows(summaries: Sequence[ModelSummary]) -> list[dict[str, Any]]:
    return [{name: getattr(s, name) for name in SUMMARY_FIELDS} for s in summaries]
