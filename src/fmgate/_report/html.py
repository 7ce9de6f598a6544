"""The report as one self-contained HTML page: inline CSS, plots as PNG data URIs, no script.

matplotlib (the ``report`` extra) is imported here, inside functions, and drives ``Figure``
objects on the Agg canvas directly: no pyplot, no global state, no display needed.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING

from .._errors import MissingExtraError
from .._record import CallRecord, Score
from .aggregate import ModelSummary, is_warmup, label_of, percentile, role_of
from .render import COLUMNS, DASH, NOTES_TEXT, error_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["pareto_front", "render_html", "require_matplotlib"]

# Okabe-Ito colours (readable with colour blindness) and one marker per channel.
CHANNEL_STYLE = {
    "local": ("o", "#009E73"),
    "self_hosted": ("s", "#0072B2"),
    "api": ("^", "#D55E00"),
}
_OTHER_STYLE = ("D", "#777777")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em}th,td{border:1px solid #ccc;padding:.3em .5em}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
th.access,td.access{background:#eef6fb}figure{margin:1em 0}figcaption{font-size:.85em;color:#555}
img{max-width:100%;height:auto}.note{font-size:.85em;color:#555}
footer{margin-top:3em;font-size:.8em;color:#666}
"""


def require_matplotlib() -> None:
    """Raise :class:`MissingExtraError` with the pip line when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(
            "The HTML report draws its plots with matplotlib, which is not installed: "
            "pip install 'fmgate[report]'",
            extra="report",
        ) from exc


def render_html(
    summaries: Sequence[ModelSummary],
    records: Sequence[CallRecord],
    scores: Sequence[Score] = (),
    *,
    title: str,
    notes: Sequence[str] = (),
) -> str:
    """The whole page as a string; ``notes`` (plain text) are listed under the title."""
    require_matplotlib()
    body = [f"<h1>{escape(title)}</h1>"]
    if notes:
        body.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    body += [_plots(summaries, records), "<h2>Summary</h2>"]
    body += [_table(summaries), _how_to_read(), _errors(summaries), _footer(records)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _plots(summaries: Sequence[ModelSummary], records: Sequence[CallRecord]) -> str:
    parts = [_figure(*_cost_latency(summaries)), _figure(*_latency_spread(summaries, records))]
    if any(s.quality is not None for s in summaries if s.role == "candidate"):
        parts.append(_figure(*_quality_cost(summaries)))
    return "\n".join(parts)


def _figure(fig: Figure | None, caption: str) -> str:
    image = f'<img alt="{escape(caption)}" src="{_png_uri(fig)}">' if fig is not None else ""
    return f"<figure>{image}<figcaption>{escape(caption)}</figcaption></figure>"


def _new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (lower is better), by increasing x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return front


def _plain(text: str) -> str:
    return text.replace("$", r"\$")  # a label is text, not mathtext


def _log_if_wide(ax: Axes, axis: str, values: Sequence[float]) -> None:
    positive = [v for v in values if v > 0]
    if positive and len(positive) == len(values) and max(positive) / min(positive) > 100:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _scatter_by_channel(
    ax: Axes, rows: Sequence[tuple[ModelSummary, float, float]], *, front: bool = False
) -> None:
    """One point per model, marker and colour by channel, labelled (set the scales first)."""
    for channel in dict.fromkeys(s.distribution for s, _, _ in rows):
        marker, colour = CHANNEL_STYLE.get(channel, _OTHER_STYLE)
        xs = [x for s, x, _ in rows if s.distribution == channel]
        ys = [y for s, _, y in rows if s.distribution == channel]
        ax.scatter(xs, ys, marker=marker, color=colour, s=60, label=channel, zorder=3)
    points = pareto_front([(x, y) for _, x, y in rows]) if front else []
    if len(points) > 1:
        front_x, front_y = [x for x, _ in points], [y for _, y in points]
        ax.step(front_x, front_y, where="post", color="#999", linestyle="--", label="Pareto front")
    _label_points(ax, rows)
    ax.legend(title="channel", fontsize=8, loc="best")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.12, y=0.12)


def _label_points(ax: Axes, rows: Sequence[tuple[ModelSummary, float, float]]) -> None:
    """Labels go right of their point, or left of it in the right third, to stay in the plot."""
    log = ax.get_xscale() == "log"
    where = [math.log10(x) if log else x for _, x, _ in rows]
    low, span = min(where), (max(where) - min(where)) or 1.0
    for (s, x, y), w in zip(rows, where, strict=True):
        left = (w - low) / span > 0.66
        ax.annotate(
            _plain(s.label),
            (x, y),
            xytext=(-6 if left else 6, 4),
            textcoords="offset points",
            ha="right" if left else "left",
            fontsize=8,
        )


def _cost_latency(summaries: Sequence[ModelSummary]) -> tuple[Figure | None, str]:
    candidates = [s for s in summaries if s.role == "candidate"]
    rows = [
        (s, float(s.cost_per_1k_calls), s.latency_p50_s)
        for s in candidates
        if s.cost_per_1k_calls is not None and s.latency_p50_s is not None
    ]
    caption = "Cost per 1,000 calls against median latency; lower left is better."
    caption += _not_plotted(candidates, need_latency=True)
    if not rows:
        return None, caption
    fig, ax = _new_figure(8, 5)
    _log_if_wide(ax, "x", [x for _, x, _ in rows])
    _log_if_wide(ax, "y", [y for _, _, y in rows])
    _scatter_by_channel(ax, rows, front=True)
    ax.set(xlabel="cost per 1,000 calls (USD)", ylabel="p50 latency (s)")
    ax.set_title("Cost vs latency (candidates); dashed: the Pareto front")
    bases = sorted({s.cost_basis for s, _, _ in rows})
    if len(bases) > 1:
        caption += f" Costs on different bases are plotted together ({', '.join(bases)})."
    return fig, caption


def _not_plotted(summaries: Sequence[ModelSummary], *, need_latency: bool) -> str:
    no_cost = [s.label for s in summaries if s.cost_per_1k_calls is None]
    no_latency = [
        s.label
        for s in summaries
        if need_latency and s.latency_p50_s is None and s.cost_per_1k_calls is not None
    ]
    text = f" Not plotted: unknown cost: {', '.join(no_cost)}." if no_cost else ""
    if no_latency:
        text += f" Not plotted: no successful call: {', '.join(no_latency)}."
    return text


def _latency_spread(
    summaries: Sequence[ModelSummary], records: Sequence[CallRecord]
) -> tuple[Figure | None, str]:
    values: dict[tuple[str, str], list[float]] = {}
    for r in records:
        if r.ok and not is_warmup(r) and r.latency.total_s is not None:
            values.setdefault((label_of(r), role_of(r)), []).append(r.latency.total_s)
    rows = [(s, values[(s.label, s.role)]) for s in summaries if (s.label, s.role) in values]
    caption = "Latency of each successful call (dots); box from p25 to p75, bar at p50."
    if not rows:
        return None, caption
    fig, ax = _new_figure(8, 1.2 + 0.55 * len(rows))
    for i, (s, seconds) in enumerate(rows):
        _strip(ax, len(rows) - 1 - i, seconds, CHANNEL_STYLE.get(s.distribution, _OTHER_STYLE))
    ax.set_yticks(range(len(rows)))
    names = [s.label if s.role == "candidate" else f"{s.label} ({s.role})" for s, _ in rows]
    ax.set_yticklabels([_plain(n) for n in reversed(names)])
    _log_if_wide(ax, "x", [v for _, seconds in rows for v in seconds])
    ax.set(xlabel="total latency per call (s)", ylim=(-0.6, len(rows) - 0.4))
    ax.set_title("Latency distribution")
    ax.grid(True, axis="x", alpha=0.3)
    return fig, caption


def _strip(ax: Axes, y: int, seconds: list[float], style: tuple[str, str]) -> None:
    marker, colour = style
    low, mid, high = (percentile(seconds, q) or 0.0 for q in (0.25, 0.5, 0.75))
    ax.barh(y, high - low, left=low, height=0.5, color=colour, alpha=0.25, edgecolor=colour)
    ax.plot([mid, mid], [y - 0.25, y + 0.25], color=colour, linewidth=2.5)
    jitter = [((k * 0.618034) % 1 - 0.5) * 0.35 for k in range(len(seconds))]
    ax.scatter(seconds, [y + j for j in jitter], marker=marker, color=colour, s=14, alpha=0.7)


def _quality_cost(summaries: Sequence[ModelSummary]) -> tuple[Figure | None, str]:
    graded = [s for s in summaries if s.role == "candidate" and s.quality is not None]
    rows = [
        (s, float(s.cost_per_1k_calls), s.quality)
        for s in graded
        if s.cost_per_1k_calls is not None and s.quality is not None
    ]
    caption = "Mean quality score against cost per 1,000 calls; upper left is better."
    caption += _not_plotted(graded, need_latency=False)
    if not rows:
        return None, caption
    fig, ax = _new_figure(8, 5)
    _log_if_wide(ax, "x", [x for _, x, _ in rows])  # quality stays linear, in [0, 1]
    _scatter_by_channel(ax, rows)
    ax.set(xlabel="cost per 1,000 calls (USD)", ylabel="quality (mean score)", ylim=(-0.05, 1.05))
    ax.set_title("Quality vs cost (candidates)")
    return fig, caption


GROUP_TITLES = {"model": "", "speed": "speed", "access": "access: how open, how reachable"}


def _table(summaries: Sequence[ModelSummary]) -> str:
    groups: list[tuple[str, int]] = []
    for column in COLUMNS:
        if groups and groups[-1][0] == column.group:
            groups[-1] = (column.group, groups[-1][1] + 1)
        else:
            groups.append((column.group, 1))
    top = "".join(
        f'<th colspan="{n}" class="{g}">{escape(GROUP_TITLES.get(g, g))}</th>' for g, n in groups
    )
    head = "".join(f'<th class="{c.group}">{escape(c.header)}</th>' for c in COLUMNS)
    rows = "".join(f"<tr>{_cells(s)}</tr>\n" for s in summaries)
    return f"<table><thead><tr>{top}</tr><tr>{head}</tr></thead><tbody>\n{rows}</tbody></table>"


def _cells(s: ModelSummary) -> str:
    out = []
    for c in COLUMNS:
        classes = " ".join(n for n in ("num" if c.numeric else "", c.group) if n)
        out.append(f'<td class="{classes}">{escape(c.cell(s))}</td>')
    return "".join(out)


HOW_TO_READ = (
    "p50, p90 and p99 are percentiles over successful calls: half of the calls were faster than "
    "p50, 90% faster than p90, 99% faster than p99 (linear interpolation between the nearest "
    "calls, so p99 of a few calls is close to the slowest). Latency runs from sending the request "
    "to the end of the reply. TTFT (time to first token) is measured only on streamed and local "
    "calls; a non-streamed API call cannot observe it, so it shows " + DASH + ". Decode tok/s is "
    "the median generation speed after the first token; output tok/s is all output tokens over "
    "all call time, so it also covers non-streamed calls. Load s is the largest cold start "
    "(model load or client setup), kept out of every latency. Costs carry their basis: "
    "list_price (the provider's token prices), hardware_time (configured $/hour times busy "
    "time), energy_measured or energy_estimated (joules times $/kWh); a model priced on some "
    "calls only says how many. Warm-up calls made before measuring are left out of every "
    "number except load s."
)


def _how_to_read() -> str:
    return (
        f"<h2>How to read this</h2><p>{escape(HOW_TO_READ)}</p>"
        f'<p class="note">{escape(NOTES_TEXT)}</p>'
    )


def _errors(summaries: Sequence[ModelSummary]) -> str:
    failing = [s for s in summaries if s.errors]
    if not failing:
        return "<h2>Errors</h2><p>No call failed.</p>"
    items = "".join(
        f"<li>{escape(s.label)} ({escape(s.role)}): {escape(error_text(s))}</li>" for s in failing
    )
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
