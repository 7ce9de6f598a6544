"""The report's plots, drawn with matplotlib on ``Figure`` objects (no pyplot, no display).

One figure per task kind (chat, embeddings: their costs and latencies do not compare), with a
panel for cost against latency and one per scorer for quality against cost (a ``contains`` score
and a ``retrieval@1`` score are not one axis). Image tasks (classifying images, detecting) plot
cost and latency per image, since a local call holds a batch of images and an API call one.
Costs in dollars or µ$, times in ms, as in the tables; the channel legend sits under the
panels, away from the point labels.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from .._record import CallRecord
from .aggregate import ModelSummary, is_warmup, percentile, role_of, row_labels
from .render import all_failed, fmt_number, model_cell

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Plot", "pareto_front", "task_plots"]

# Okabe-Ito colours (readable with colour blindness) and one marker per channel.
CHANNEL_STYLE = {
    "local": ("o", "#009E73"),
    "self_hosted": ("s", "#0072B2"),
    "api": ("^", "#D55E00"),
}
_OTHER_STYLE = ("D", "#777777")
WIDTH = 12.8  # inches at 100 dpi: the page's full width at 1280 px and up
TASK_NAMES = {
    "chat": "Chat",
    "embeddings": "Embedding",
    "classify": "Classification",
    "classify images": "Image classification",
    "detect": "Object detection",
    "generate_content": "Image generation",
}


class Plot(NamedTuple):
    png_uri: str
    caption: str


class _Point(NamedTuple):
    summary: ModelSummary
    x: float
    y: float


def task_plots(
    summaries: Sequence[ModelSummary], records: Sequence[CallRecord]
) -> list[tuple[str, list[Plot | str]]]:
    """Per task kind: its title and its figures (or the caption saying why none was drawn)."""
    sections = []
    for operation in dict.fromkeys(_task(s) for s in summaries):
        rows = [s for s in summaries if _task(s) == operation]
        candidates = [s for s in rows if s.role == "candidate"]
        title = f"{TASK_NAMES.get(operation, operation)} models"
        per = "image" if operation in IMAGE_TASKS else "call"
        if per == "image":  # a local call holds a batch, an API call one image: per image
            candidates = [_per_image(s) for s in candidates]
        sections.append((title, [*_panels(candidates, per), _latency_spread(rows, records)]))
    return sections


IMAGE_TASKS = ("classify images", "detect", "generate_content")


def _per_image(s: ModelSummary) -> ModelSummary:
    """The row with its per-image cost and latency where the plots read per-call ones."""
    return dataclasses.replace(
        s, cost_per_1k_calls=s.cost_per_1k_images, latency_p50_s=s.latency_per_image_p50_s
    )


def _task(s: ModelSummary) -> str:
    """The plot a row belongs to: classifying images is not classifying texts (their costs and
    latencies do not compare)."""
    return "classify images" if s.operation == "classify" and s.images is not None else s.operation


def _panels(candidates: Sequence[ModelSummary], per: str = "call") -> list[Plot | str]:
    """Cost vs latency, then quality vs cost for each scorer, side by side in one figure; costs
    and latencies ``per`` call, or per image for image tasks."""
    if not candidates:
        return []
    scorers = list(dict.fromkeys(s.quality_scorer for s in candidates if s.quality_scorer))
    draws: list[Callable[[Axes], str]] = [partial(_cost_latency, candidates=candidates, per=per)]
    draws += [partial(_quality_cost, candidates=candidates, scorer=sc, per=per) for sc in scorers]
    fig = _new_figure(WIDTH, 4.6)
    axes = fig.subplots(1, len(draws), squeeze=False)[0]
    captions = [draw(ax) for draw, ax in zip(draws, axes, strict=True)]
    if not any(ax.collections for ax in axes):
        return [" ".join(captions)]
    _channel_legend(fig, axes)
    return [Plot(png_uri(fig), " ".join(captions))]


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_uri(fig: Figure) -> str:
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


class CostUnit(NamedTuple):
    scale: float
    name: str


def cost_unit(amounts: Sequence[float]) -> CostUnit:
    """Dollars, or µ$ when every amount is under a cent: tick labels stay plain numbers."""
    if amounts and max(amounts) < 0.01:
        return CostUnit(1e6, "µ$, millionths of a dollar")
    return CostUnit(1.0, "USD")


def _cost_latency(ax: Axes, candidates: Sequence[ModelSummary], per: str = "call") -> str:
    priced = [s for s in candidates if s.cost_per_1k_calls is not None and s.latency_p50_s]
    unit = cost_unit([float(_amount(s.cost_per_1k_calls)) for s in priced])
    points = [
        _Point(s, float(_amount(s.cost_per_1k_calls)) * unit.scale, (s.latency_p50_s or 0) * 1e3)
        for s in priced
    ]
    each = "" if per == "call" else f" per {per}"
    caption = f"Cost per 1,000 {per}s against median latency{each}; lower left is better."
    caption += _not_plotted(candidates, need_latency=True)
    if not points:
        ax.set_visible(False)
        return caption
    ax.set(xlabel=f"cost per 1,000 {per}s ({unit.name})", ylabel=f"p50 latency{each} (ms)")
    ax.set_title("Cost vs latency")
    caption += _scatter(ax, points, lower_y_is_better=True)
    bases = sorted({s.cost_basis for s in priced})
    if len(bases) > 1:
        caption += f" Costs on different bases are plotted together ({', '.join(bases)})."
    return caption


def _quality_cost(
    ax: Axes, candidates: Sequence[ModelSummary], scorer: str, per: str = "call"
) -> str:
    graded = [s for s in candidates if s.quality_scorer == scorer and s.quality is not None]
    priced = [s for s in graded if s.cost_per_1k_calls is not None]
    unit = cost_unit([float(_amount(s.cost_per_1k_calls)) for s in priced])
    points = [
        _Point(s, float(_amount(s.cost_per_1k_calls)) * unit.scale, s.quality or 0.0)
        for s in priced
    ]
    what = f"Mean {scorer} score" if per == "call" else f"{scorer} over every image"
    caption = f"{what} against cost per 1,000 {per}s; upper left is better."
    caption += _not_plotted(graded, need_latency=False)
    if not points:
        ax.set_visible(False)
        return caption
    quality = f"mean {scorer}" if per == "call" else scorer
    ax.set(xlabel=f"cost per 1,000 {per}s ({unit.name})", ylabel=f"quality ({quality})")
    ax.set_title(f"Quality ({scorer}) vs cost")
    ax.set_ylim(-0.05, 1.05)  # before the labels: one near the top goes under its point
    caption += _scatter(ax, points, lower_y_is_better=False)
    return caption


def _amount(value: Decimal | None) -> Decimal:
    return value if value is not None else Decimal(0)


def _not_plotted(summaries: Sequence[ModelSummary], *, need_latency: bool) -> str:
    failed = [model_cell(s) for s in summaries if all_failed(s)]
    no_cost = [
        model_cell(s) for s in summaries if s.cost_per_1k_calls is None and not all_failed(s)
    ]
    text = f" Not plotted: all calls failed: {', '.join(failed)}." if failed else ""
    text += f" Not plotted: unknown cost: {', '.join(no_cost)}." if no_cost else ""
    no_latency = [
        model_cell(s)
        for s in summaries
        if need_latency and not s.latency_p50_s and s.cost_per_1k_calls is not None
    ]
    if no_latency:
        text += f" Not plotted: no successful call: {', '.join(no_latency)}."
    return text


def _scatter(ax: Axes, points: Sequence[_Point], *, lower_y_is_better: bool) -> str:
    """The points by channel, the Pareto front whenever there are two or more, plain tick labels;
    returns what the caption should add about the front."""
    _scale(ax, "x", [p.x for p in points])
    if lower_y_is_better:
        _scale(ax, "y", [p.y for p in points])
    _channel_entries(ax, [p.summary.distribution for p in points])
    for p in points:
        marker, colour = CHANNEL_STYLE.get(p.summary.distribution, _OTHER_STYLE)
        ax.scatter([p.x], [p.y], marker=marker, color=colour, s=60, zorder=3)
    _label_points(ax, points)
    ax.grid(True, alpha=0.3)
    return _front(ax, points, sign=1 if lower_y_is_better else -1)


def _front(ax: Axes, points: Sequence[_Point], *, sign: int) -> str:
    if len(points) < 2:
        return ""
    front = [(x, sign * y) for x, y in pareto_front([(p.x, sign * p.y) for p in points])]
    if len(front) == 1:
        ax.scatter(*front[0], s=260, facecolors="none", edgecolors="#555", label="Pareto front")
        return " Circled: the Pareto front, one model better on both axes than every other."
    xs, ys = [x for x, _ in front], [y for _, y in front]
    ax.step(xs, ys, where="post", color="#777", linestyle="--", label="Pareto front")
    return " Dashed: the Pareto front (no other model is better on both axes)."


def _scale(ax: Axes, axis: str, values: Sequence[float]) -> None:
    """Log past a hundredfold range of positive values; else linear from 0, with room for one
    point to sit mid-plot instead of at the edge of a range zoomed around it."""
    positive = [v for v in values if v > 0]
    set_scale, set_lim = (
        (ax.set_xscale, ax.set_xlim) if axis == "x" else (ax.set_yscale, ax.set_ylim)
    )
    if positive and len(positive) == len(values) and max(positive) / min(positive) > 100:
        set_scale("log")
        set_lim(min(positive) / 3, max(positive) * 3)
    else:
        top = max(values, default=0.0)
        set_lim(0, (2 * top if len(set(values)) == 1 else 1.2 * top) or 1.0)
    _plain_ticks(ax.xaxis if axis == "x" else ax.yaxis)


def _plain_ticks(axis: object) -> None:
    """Tick labels as plain numbers of three significant digits: no ``1e-5`` offset."""
    from matplotlib.axis import Axis
    from matplotlib.ticker import FuncFormatter, NullFormatter

    assert isinstance(axis, Axis)
    axis.set_major_formatter(FuncFormatter(lambda v, _: fmt_number(v) if v else "0"))
    axis.set_minor_formatter(NullFormatter())


def _label_points(ax: Axes, points: Sequence[_Point]) -> None:
    """Labels go right of their point, or left of it in the right third, and under it near the
    top, to stay in the plot (set the limits first)."""
    for p in points:
        left = _position(ax, p.x) > 0.66
        below = (
            ax.transLimits.transform((p.x, p.y))[1] > 0.9 if ax.get_yscale() == "linear" else False
        )
        ax.annotate(
            _plain(p.summary.label),
            (p.x, p.y),
            xytext=(-8 if left else 8, -5 if below else 5),
            textcoords="offset points",
            ha="right" if left else "left",
            va="top" if below else "baseline",
            fontsize=9,
        )


def _position(ax: Axes, x: float) -> float:
    """Where ``x`` falls across the plot, 0 at the left edge and 1 at the right."""
    low, high = ax.get_xlim()
    if ax.get_xscale() == "log":
        x, low, high = math.log10(x), math.log10(low), math.log10(high)
    return (x - low) / ((high - low) or 1.0)


def _plain(text: str) -> str:
    return text.replace("$", r"\$")  # a label is text, not mathtext


def _channel_legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend for every panel, under them: it never covers a point or its label."""
    entries: dict[str, Artist] = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        entries.update(zip(labels, handles, strict=True))
    fig.legend(
        list(entries.values()), list(entries), loc="outside lower center", ncols=len(entries)
    )


def _latency_spread(rows: Sequence[ModelSummary], records: Sequence[CallRecord]) -> Plot | str:
    values: dict[tuple[str, str], list[float]] = {}
    row = row_labels(records)
    for r in records:
        if r.ok and not is_warmup(r) and r.latency.total_s is not None:
            values.setdefault((row(r), role_of(r)), []).append(r.latency.total_s * 1e3)
    shown = [(s, values[(s.label, s.role)]) for s in rows if (s.label, s.role) in values]
    caption = "Latency of each successful call (dots); box from p25 to p75, bar at p50."
    if not shown:
        return caption
    fig = _new_figure(WIDTH, 1.3 + 0.5 * len(shown))
    ax = fig.add_subplot()
    _channel_entries(ax, [s.distribution for s, _ in shown])
    for i, (s, ms) in enumerate(shown):
        _strip(ax, len(shown) - 1 - i, ms, CHANNEL_STYLE.get(s.distribution, _OTHER_STYLE))
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([_plain(model_cell(s)) for s, _ in reversed(shown)])
    _scale(ax, "x", [v for _, ms in shown for v in ms])
    ax.set(xlabel="latency per call (ms)", ylim=(-0.6, len(shown) - 0.4))
    ax.set_title("Latency distribution")
    ax.grid(True, axis="x", alpha=0.3)
    _channel_legend(fig, [ax])
    return Plot(png_uri(fig), caption)


def _strip(ax: Axes, y: int, ms: list[float], style: tuple[str, str]) -> None:
    marker, colour = style
    low, mid, high = (percentile(ms, q) or 0.0 for q in (0.25, 0.5, 0.75))
    ax.barh(y, high - low, left=low, height=0.5, color=colour, alpha=0.25, edgecolor=colour)
    ax.plot([mid, mid], [y - 0.25, y + 0.25], color=colour, linewidth=2.5)
    jitter = [((k * 0.618034) % 1 - 0.5) * 0.35 for k in range(len(ms))]
    ax.scatter(ms, [y + j for j in jitter], marker=marker, color=colour, s=14, alpha=0.7)


def _channel_entries(ax: Axes, channels: Sequence[str]) -> None:
    """Legend entries only (empty scatters): one per channel, in the order given."""
    for channel in dict.fromkeys(channels):
        marker, colour = CHANNEL_STYLE.get(channel, _OTHER_STYLE)
        ax.scatter([], [], marker=marker, color=colour, label=channel)
