"""The report as text: cell formats, a rich table, Markdown, CSV and JSONL, and ``write_report``.

Markdown and HTML take their columns from :data:`COLUMNS`, the terminal a narrower selection
(:data:`TERMINAL_COLUMNS`) of the same cells, so every table says the same thing. A value fmgate
could not compute renders as an en dash, never as 0.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Callable, Collection, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .._errors import ConfigurationError
from .._record import CallRecord, Score
from .aggregate import ModelSummary, summarize

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table

__all__ = ["COLUMNS", "DASH", "FORMATS", "markdown", "rich_table", "write_report"]

DASH = "\u2013"
FORMATS = ("html", "md", "csv", "jsonl")


def fmt_number(value: float | None) -> str:
    """Three significant digits, without exponent notation for the sizes a report meets."""
    if value is None:
        return DASH
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def fmt_usd(amount: Decimal | None) -> str:
    """``$0.000150``: three significant digits, at least cents."""
    if amount is None:
        return DASH
    places = 2 if amount == 0 else max(2, 2 - amount.adjusted())
    return f"${amount:.{places}f}"


def fmt_cost(amount: Decimal | None, s: ModelSummary) -> str:
    if amount is None:
        return DASH
    partly = f" ({s.cost_known_calls}/{s.calls} priced)" if s.cost_known_calls < s.calls else ""
    return f"{fmt_usd(amount)} {s.cost_basis}{partly}"


def fmt_tries(s: ModelSummary) -> str:
    """Mean tries per call (1.00 without retries), and the calls served as a fallback."""
    if s.tries_per_call is None:
        return DASH
    served = f" ({s.fallbacks} as fallback)" if s.fallbacks else ""
    return f"{s.tries_per_call:.2f}{served}"


def fmt_rate(value: float | None) -> str:
    return DASH if value is None else f"{value:.1%}"


def fmt_bool(value: bool | None) -> str:
    return DASH if value is None else ("yes" if value else "no")


def fmt_params(n: int | None) -> str:
    """``22.7M``, ``0.5B`` style parameter counts."""
    if n is None:
        return DASH
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return str(n)


def fmt_triple(a: float | None, b: float | None, c: float | None) -> str:
    if a is None and b is None and c is None:
        return DASH
    return " / ".join(fmt_number(v) for v in (a, b, c))


def fmt_quality(s: ModelSummary) -> str:
    if s.quality is None:
        return DASH
    return f"{s.quality:.3f} ({s.quality_scorer}, n={s.scored})"


class Column(NamedTuple):
    header: str
    group: str  # "model", "speed", "cost", "quality", "access": the HTML header row above
    cell: Callable[[ModelSummary], str]
    numeric: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("model", "model", lambda s: s.label),
    Column("role", "model", lambda s: s.role),
    Column("calls", "model", lambda s: str(s.calls), True),
    Column("success", "model", lambda s: fmt_rate(s.success_rate), True),
    Column("tries / call", "model", lambda s: fmt_tries(s), True),
    Column(
        "latency s p50 / p90 / p99",
        "speed",
        lambda s: fmt_triple(s.latency_p50_s, s.latency_p90_s, s.latency_p99_s),
        True,
    ),
    Column(
        "TTFT s p50 / p90 / p99",
        "speed",
        lambda s: fmt_triple(s.ttft_p50_s, s.ttft_p90_s, s.ttft_p99_s),
        True,
    ),
    Column("decode tok/s", "speed", lambda s: fmt_number(s.decode_tokens_per_s), True),
    Column("output tok/s", "speed", lambda s: fmt_number(s.output_tokens_per_s), True),
    Column("load s", "speed", lambda s: fmt_number(s.load_s), True),
    Column("cost / call", "cost", lambda s: fmt_cost(s.cost_per_call, s), True),
    Column("cost / 1k calls", "cost", lambda s: fmt_cost(s.cost_per_1k_calls, s), True),
    Column("quality", "quality", fmt_quality, True),
    Column("channel", "access", lambda s: s.distribution),
    Column("open weights", "access", lambda s: fmt_bool(s.open_weights)),
    Column("licence", "access", lambda s: s.license or DASH),
    Column("params", "access", lambda s: fmt_params(s.parameters), True),
    Column("data leaves machine", "access", lambda s: fmt_bool(s.data_leaves_machine)),
    Column("offline capable", "access", lambda s: fmt_bool(s.offline_capable)),
    Column("API key", "access", lambda s: fmt_bool(s.requires_api_key)),
)


# The terminal gets three narrow tables, each within 80 columns for labels of ~20 characters:
# what each model did, what it cost, how open and reachable it is. Short headers; the caption
# spells them out.
def _model_cell(s: ModelSummary) -> str:
    return s.label if s.role == "candidate" else f"{s.label} ({s.role})"


def _priced(s: ModelSummary) -> str:
    return f"{s.cost_known_calls}/{s.calls}"


TERMINAL_COLUMNS: tuple[Column, ...] = (
    Column("model", "model", _model_cell),
    *(c for c in COLUMNS if c.header == "calls"),
    Column(
        "ok", "model", lambda s: DASH if s.success_rate is None else f"{s.success_rate:.0%}", True
    ),
    Column("p50 ms", "speed", lambda s: fmt_ms(s.latency_p50_s), True),
    Column("p90 ms", "speed", lambda s: fmt_ms(s.latency_p90_s), True),
    Column("p99 ms", "speed", lambda s: fmt_ms(s.latency_p99_s), True),
    Column("TTFT ms", "speed", lambda s: fmt_ms(s.ttft_p50_s), True),
    Column("tok/s", "speed", lambda s: fmt_number(s.output_tokens_per_s), True),
    Column("quality", "quality", lambda s: DASH if s.quality is None else f"{s.quality:.2f}", True),
)


def fmt_ms(seconds: float | None) -> str:
    return fmt_number(None if seconds is None else seconds * 1000)


COST_COLUMNS: tuple[Column, ...] = (
    Column("model", "model", _model_cell),
    Column("per call", "cost", lambda s: fmt_usd(s.cost_per_call), True),
    Column("per 1k calls", "cost", lambda s: fmt_usd(s.cost_per_1k_calls), True),
    Column("priced", "cost", _priced, True),
    Column("basis", "cost", lambda s: s.cost_basis),
)
ACCESS_COLUMNS: tuple[Column, ...] = (
    Column("model", "model", _model_cell),
    Column("channel", "access", lambda s: s.distribution),
    Column("open", "access", lambda s: fmt_bool(s.open_weights)),
    Column("licence", "access", lambda s: s.license or DASH),
    Column("params", "access", lambda s: fmt_params(s.parameters), True),
    Column("leaves", "access", lambda s: fmt_bool(s.data_leaves_machine)),
    Column("offline", "access", lambda s: fmt_bool(s.offline_capable)),
    Column("key", "access", lambda s: fmt_bool(s.requires_api_key)),
)
TERMINAL_CAPTION = (
    "Warm-up calls left out. ok: success rate; p50/p90/p99: latency of ok calls; TTFT: median "
    "time to first token; tok/s: output tokens per second, end to end."
)
ACCESS_CAPTION = (
    "open: open weights; leaves: the prompt leaves this machine; offline: works with no "
    "network; key: needs an API key."
)


def rich_table(summaries: Sequence[ModelSummary], *, title: str | None = None) -> Group:
    """The summary for the terminal: measurements, cost, then access, as three tables."""
    from rich.console import Group

    return Group(
        _table(summaries, TERMINAL_COLUMNS, title=title, caption=_caption(summaries)),
        _table(summaries, COST_COLUMNS, title="Cost (USD)", caption=None),
        _table(summaries, ACCESS_COLUMNS, title="Access", caption=ACCESS_CAPTION),
    )


def _table(
    summaries: Sequence[ModelSummary],
    columns: Sequence[Column],
    *,
    title: str | None,
    caption: str | None,
) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        title_justify="left",
        caption_justify="left",
    )
    for column in columns:
        table.add_column(
            column.header,
            justify="right" if column.numeric else "left",
            header_style="bold cyan" if column.group == "access" else "bold",
            no_wrap=column.header != "model",
            overflow="fold",
            min_width=min(18, max(len(c) for c in (*map(_model_cell, summaries), "model")))
            if column.header == "model"
            else None,
        )
    for i, s in enumerate(summaries):
        # a rule between the candidates and the judges (and any other role) graded with them
        if i > 0 and s.role != "candidate" and summaries[i - 1].role == "candidate":
            table.add_section()
        table.add_row(*(column.cell(s) for column in columns))
    return table


def _caption(summaries: Sequence[ModelSummary]) -> str:
    text = TERMINAL_CAPTION
    scorers = sorted({s.quality_scorer for s in summaries if s.quality_scorer})
    return text + (f" Quality: mean {', '.join(scorers)} score." if scorers else "")


def markdown(summaries: Sequence[ModelSummary], *, title: str, notes: Sequence[str] = ()) -> str:
    """A Markdown page: the notes, one table row per model, then the errors per model."""
    headers = [c.header for c in COLUMNS]
    lines = [f"# {title}", ""]
    if notes:
        lines += [f"- {_md_escape(n)}" for n in notes] + [""]
    lines.append(_md_row(headers))
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in COLUMNS) + "|")
    lines += [_md_row(c.cell(s) for c in COLUMNS) for s in summaries]
    lines += ["", NOTES_TEXT]
    failing = [s for s in summaries if s.errors]
    if failing:
        lines += ["", "## Errors", ""]
        lines += [f"- {_md_escape(s.label)} ({s.role}): {error_text(s)}" for s in failing]
    return "\n".join(lines) + "\n"


NOTES_TEXT = (
    "Channel, open weights, licence, params, data leaves machine, offline capable and API key are "
    "access columns, from each model's newest record. Latency and TTFT percentiles are over "
    "successful calls; warm-up calls are left out of every number except load s (the cold start). "
    "Costs carry their basis; – means fmgate could not compute the value."
)


def error_text(s: ModelSummary) -> str:
    return ", ".join(f"{kind} \u00d7 {n}" for kind, n in s.errors.items())


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(_md_escape(c) for c in cells) + " |"


def score_columns(records: Sequence[CallRecord], scores: Sequence[Score]) -> list[dict[str, Any]]:
    """Each record's flat dict plus one ``score_<scorer>`` key per scorer (the latest score)."""
    latest = {(s.record_id, s.scorer): s.value for s in scores}
    scorers = sorted({s.scorer for s in scores})
    rows = []
    for record in records:
        row = record.to_dict()
        row.update({f"score_{n}": latest.get((record.id, n)) for n in scorers})
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


def write_report(
    out_dir: str | os.PathLike[str],
    records: Sequence[CallRecord],
    scores: Sequence[Score] = (),
    *,
    title: str = "fmgate report",
    formats: Collection[str] = FORMATS,
    notes: Sequence[str] = (),
) -> dict[str, Path]:
    """Write the report files into ``out_dir`` and return their paths by format.

    ``notes`` (plain text, e.g. what the models are) head the HTML and Markdown pages.

    ``html``: report.html; ``md``: report.md; ``csv``: summary.csv (one row per model, key
    ``csv``) and records.csv (one row per record, key ``records_csv``); ``jsonl``: records.jsonl.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ConfigurationError(f"unknown report format(s) {unknown}; known: {', '.join(FORMATS)}")
    from .html import render_html, require_matplotlib

    if "html" in formats:
        require_matplotlib()  # before any file is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = summarize(records, scores)
    written: dict[str, Path] = {}
    if "html" in formats:
        written["html"] = out / "report.html"
        written["html"].write_text(
            render_html(summaries, records, scores, title=title, notes=notes), "utf-8"
        )
    if "md" in formats:
        written["md"] = out / "report.md"
        written["md"].write_text(markdown(summaries, title=title, notes=notes), "utf-8")
    return written | _write_data(out, summaries, records, scores, formats)


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
