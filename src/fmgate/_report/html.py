"""The report as one self-contained HTML page: inline CSS, plots as PNG data URIs, no script.

It reads from 1280 px wide up: the summary, speed and access tables are apart (each fits the
width), and every figure spans the page (:mod:`.plots`). matplotlib (the ``report`` extra) is
imported only by the plots, inside functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from .._extras import missing_extra
from .._record import CallRecord, Score
from .aggregate import ModelSummary, is_warmup
from .render import (
    DASH,
    NOTES_TEXT,
    UNITS_TEXT,
    TableSpec,
    error_text,
    model_cell,
    notes_for,
    tables_for,
)
from .strips import Strip, html_strips

__all__ = ["render_html", "require_matplotlib"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em 2em;color:#222;
max-width:1800px}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em}h3{font-size:1.05em;margin:1.2em 0 .4em}
table{border-collapse:collapse;font-size:.88em;margin:.3em 0}
th,td{border:1px solid #ccc;padding:.3em .55em;white-space:nowrap}
th{background:#f3f3f3;font-weight:600;white-space:normal;vertical-align:bottom}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td:first-child{white-space:normal;overflow-wrap:anywhere;min-width:9em;max-width:18em}
.wide{overflow-x:auto}
table.wrap td{white-space:normal;min-width:4.5em}
td[title]{text-decoration:underline dotted #999;cursor:help}
figure{margin:1em 0}figure img{width:100%;height:auto;max-width:1600px}
td.strip{padding:2px;vertical-align:top}td.strip img{display:block;max-width:128px}
figcaption,.caption,.note{font-size:.88em;color:#555;max-width:70em}
footer{margin-top:3em;font-size:.8em;color:#666}
"""


def require_matplotlib() -> None:
    """Raise :class:`MissingExtraError` with both pip lines when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise missing_extra("the HTML report", "report", "matplotlib") from exc


def render_html(
    summaries: Sequence[ModelSummary],
    records: Sequence[CallRecord],
    scores: Sequence[Score] = (),
    *,
    title: str,
    notes: Sequence[str] = (),
    strips: Sequence[Strip] = (),
    sections: str = "",
) -> str:
    """The whole page as a string; ``notes`` (plain text) are listed under the title, ``strips``
    (the images an image-generation run drew) after the tables, then ``sections`` (HTML: the
    break-even section)."""
    require_matplotlib()
    body = [f"<h1>{escape(title)}</h1>", _list(notes)]
    body += [_tables(summaries), html_strips(strips), sections, _plots(summaries, records)]
    body += [_how_to_read(), _errors(summaries), _footer(records)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )


def _list(items: Sequence[str], css: str = "") -> str:
    if not items:
        return ""
    attr = f' class="{css}"' if css else ""
    return f"<ul{attr}>" + "".join(f"<li>{escape(n)}</li>" for n in items) + "</ul>"


def _tables(summaries: Sequence[ModelSummary]) -> str:
    """The summary and what to know about its rows, then speed and access."""
    summary, *rest = (_table(spec.rows(summaries), spec) for spec in tables_for(summaries))
    return "\n".join([summary, _list(notes_for(summaries), "note"), *rest])


def _table(summaries: Sequence[ModelSummary], spec: TableSpec) -> str:
    head = "".join(f"<th>{escape(c.header)}</th>" for c in spec.columns)
    rows = "".join(f"<tr>{_cells(s, spec)}</tr>\n" for s in summaries)
    caption = f'<p class="caption">{escape(spec.caption)}</p>' if spec.caption else ""
    return (
        f'<h2>{escape(spec.title)}</h2><div class="wide"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{rows}</tbody></table></div>{caption}"
    )


def _cells(s: ModelSummary, spec: TableSpec) -> str:
    out = []
    for c in spec.columns:
        attrs = ' class="num"' if c.numeric else ""
        if c.hint is not None and c.cell(s) != DASH:
            attrs += f' title="{escape(c.hint(s))}"'
        out.append(f"<td{attrs}>{escape(c.cell(s))}</td>")
    return "".join(out)


def _plots(summaries: Sequence[ModelSummary], records: Sequence[CallRecord]) -> str:
    from .plots import task_plots

    parts = []
    for title, figures in task_plots(summaries, records):
        parts.append(f"<h3>{escape(title)}</h3>")
        parts += [_figure(f) for f in figures]
    return "<h2>Plots</h2>\n" + "\n".join(parts) if parts else ""


def _figure(plot: object) -> str:
    from .plots import Plot

    if not isinstance(plot, Plot):
        return f'<p class="caption">{escape(str(plot))}</p>'
    image = f'<img alt="{escape(plot.caption)}" src="{plot.png_uri}">'
    return f"<figure>{image}<figcaption>{escape(plot.caption)}</figcaption></figure>"


HOW_TO_READ = (
    "p50, p90 and p99 are percentiles over successful calls: half of the calls were faster than "
    "p50, 90% faster than p90, 99% faster than p99 (linear interpolation between the nearest "
    "calls, so p99 of a few calls is close to the slowest); in the summary, hover a p50 for its "
    "p90 and p99. Latency runs from sending the request to the end of the reply; calls that "
    "ran together in one batch (local models in generate_many) each carry the batch's time. "
    "TTFT (time to first token) is measured only on streamed and local "
    "calls; a non-streamed API call cannot observe it, so it shows " + DASH + ". Decode tok/s is "
    "the median generation speed after the first token; output tok/s is all output tokens over "
    "all call time, so it also covers non-streamed calls. Load is the largest cold start "
    "(model load or client setup), kept out of every latency. Costs carry their basis: "
    "list_price (the provider's token prices), hardware_time (configured $/hour times busy "
    "time), energy_measured or energy_estimated (joules times $/kWh), server_reported (the "
    "price fmgate serve measured on its own machine, for a client of it); a model priced on some "
    "calls only says how many. Warm-up calls made before measuring are left out of every "
    "number except load."
)


def _how_to_read() -> str:
    return (
        f"<h2>How to read this</h2><p>{escape(HOW_TO_READ)}</p>"
        f'<p class="note">{escape(NOTES_TEXT)} {escape(UNITS_TEXT)}</p>'
    )


def _errors(summaries: Sequence[ModelSummary]) -> str:
    failing = [s for s in summaries if s.errors]
    if not failing:
        return "<h2>Errors</h2><p>No call failed.</p>"
    items = "".join(f"<li>{escape(model_cell(s))}: {escape(error_text(s))}</li>" for s in failing)
    return f"<h2>Errors</h2><ul>{items}</ul>"


def _footer(records: Sequence[CallRecord]) -> str:
    from .. import __version__

    times = [r.started_at for r in records]
    span = f"{_when(min(times))} to {_when(max(times))}" if times else "no records"
    warm = sum(is_warmup(r) for r in records)
    return (
        f"<footer>{len(records)} records ({warm} warm-up), {escape(span)}. "
        f"Generated by fmgate {escape(__version__)}.</footer>"
    )


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
