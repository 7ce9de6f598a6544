"""The report's break-even section: when self-hosting costs less than an API.

:func:`breakevens` runs the arithmetic of :mod:`fmgate._economics` with the report's
:class:`EconomicsOptions`; the renderers show its pairs in the same cells everywhere: Markdown
(:func:`markdown_section`), HTML with a cost-per-month plot per self-hosted row
(:func:`html_section`), and a compact terminal table (:func:`terminal_table`). The section is
left out where the records hold no self-hosted and API pair.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .._economics import (
    DEFAULT_IDLE_FRACTION,
    DEFAULT_UTILISATION,
    HOURS_PER_MONTH,
    VOLUMES,
    BreakEven,
    Call,
    Hardware,
    ScoreValue,
)
from .._record import CallRecord, Score
from .render import DASH, fmt_number, fmt_usd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from rich.table import Table

    from .plots import Plot

__all__ = [
    "DEFAULT_ECONOMICS",
    "DOC_URL",
    "SHOWN_VOLUMES",
    "TITLE",
    "EconomicsOptions",
    "assumptions",
    "breakevens",
    "fmt_volume",
    "html_section",
    "markdown_section",
    "terminal_table",
    "write_section",
]

TITLE = "Break-even: self-hosting vs API"
DOC_URL = "https://github.com/fmgate/fmgate/blob/main/docs/economics.md"
DOC_NAME = "docs/economics.md in fmgate's documentation"
SHOWN_VOLUMES = (10_000, 100_000, 1_000_000)  # calls a month: the table's $/1k columns
MAX_PLOTS = 6  # one figure per self-hosted row: the report stays fast


@dataclass(frozen=True, slots=True)
class EconomicsOptions:
    """The break-even section's inputs: ``hardware`` for every self-hosted row (``None``: the
    bundled table's row for the hardware the records ran on, marked assumed), the share of
    capacity real traffic uses, the p90 latency a capacity must keep (``None``: the API's own
    p90 on the same prompts), and API specs priced from the self-hosted rows' tokens."""

    hardware: Hardware | None = None
    utilisation: float = DEFAULT_UTILISATION
    target_p90_s: float | None = None
    against: tuple[str, ...] = ()


DEFAULT_ECONOMICS = EconomicsOptions()


def breakevens(
    records: Iterable[CallRecord] | Iterable[Call],
    scores: Iterable[Score] | Iterable[ScoreValue],
    options: EconomicsOptions,
) -> list[BreakEven]:
    """Every self-hosted row against every API row (run, or named in ``options.against``), from
    call records or the store's columns (:func:`fmgate.economics.calls_from_store`)."""
    from .._economics import breakeven

    return breakeven(
        records,
        scores,
        hardware=options.hardware,
        utilisation=options.utilisation,
        target_p90_s=options.target_p90_s,
        against=options.against,
    )


# -- cells --------------------------------------------------------------------------------------


def fmt_volume(volume: Decimal | float) -> str:
    """Calls a month, three significant digits: ``950``, ``10k``, ``1.07M``, ``2.5B``."""
    v = float(volume)
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale * 0.9995:  # 999,600 reads 1M, not 1000k
            return fmt_number(float(f"{v / scale:.3g}")) + suffix
    return f"{v:.0f}"


def hardware_name(machine: Hardware) -> str:
    """``aws-g5-xlarge ($1.006/h)``; a rate named by the user once: ``$1.46/h``."""
    return (
        machine.name
        if machine.name == f"${machine.usd_per_hour.normalize():f}/h"
        else machine.label
    )


def hardware_cell(be: BreakEven) -> str:
    assumed = " (assumed)" if be.hardware.assumed else ""
    return hardware_name(be.hardware) + assumed


def hardware_source(machine: Hardware) -> str:
    """What the machine is, where its price comes from, and how it is billed."""
    billed = {
        "while_running": "billed every hour it runs, busy or idle",
        "active_seconds": "billed per second of a request (serverless)",
    }[machine.billing]
    what = f"{machine.description}; " if machine.description else ""
    return f"{what}{machine.source}; {billed}"


def capacity_cell(be: BreakEven) -> str:
    """``2 calls/s, 40 output tok/s at concurrency 4; p90 2000 ms (target 2850 ms)``."""
    cap, level = be.capacity, be.capacity.level
    rate = f"{fmt_number(level.calls_per_s)} calls/s"
    if level.output_tokens_per_s is not None:
        rate += f", {fmt_number(level.output_tokens_per_s)} tok/s"
    where = "observed" if level.concurrency is None else f"at concurrency {level.concurrency}"
    p90 = f"p90 {_ms(level.latency_p90_s)}"
    if cap.target_p90_s is None:
        latency = p90
    elif cap.met:
        latency = f"{p90} (target {_ms(cap.target_p90_s)})"
    else:
        latency = f"{p90}, above the {_ms(cap.target_p90_s)} target"
    return f"{rate} {where}; {latency}"


def _ms(seconds: float | None) -> str:
    return DASH if seconds is None else f"{fmt_number(seconds * 1000)} ms"


def api_per_1k_cell(be: BreakEven) -> str:
    cost = fmt_usd(be.api.cost_per_call * 1000)
    if be.api.estimated_from is not None:
        return f"{cost} (estimated)"
    return cost


def volume_cell(be: BreakEven) -> str:
    """The calls a month from which self-hosting costs less, or why it never does."""
    if be.volume is None:
        return be.reason
    if be.volume == 0:
        return "at any volume"
    return f"{fmt_volume(be.volume)} calls/month"


def volume_short(be: BreakEven) -> str:
    """:func:`volume_cell` in a few words, for the terminal."""
    if be.volume is not None:
        return volume_cell(be)
    if be.usd_per_call >= be.api.cost_per_call:
        return "never: each call costs more self-hosted"
    per_call = be.fixed_usd_per_month / be.calls_per_machine_month + be.usd_per_call
    return f"never: {per_call / be.api.cost_per_call:.3g}x the API's price per call"


def per_1k_at(volume: int) -> Callable[[BreakEven], str]:
    return lambda be: fmt_usd(be.per_1k_calls(volume)[0])


def per_1m_tokens_at(volume: int) -> Callable[[BreakEven], str]:
    return lambda be: fmt_usd(be.per_1m_output_tokens(volume)[0])


def api_per_1m_tokens(be: BreakEven) -> str:
    return fmt_usd(be.per_1m_output_tokens(SHOWN_VOLUMES[0])[1])


class Cell(NamedTuple):
    header: str
    cell: Callable[[BreakEven], str]
    numeric: bool = False
    hint: Callable[[BreakEven], str] | None = None  # the HTML cell's title (shown on hover)


SELF_HOSTED = Cell("self-hosted", lambda be: be.local)
API = Cell("API", lambda be: be.api.label)
CALLS_TABLE = (
    SELF_HOSTED,
    Cell("hardware", hardware_cell, hint=lambda be: hardware_source(be.hardware)),
    Cell("capacity", capacity_cell),
    Cell("fixed / month", lambda be: fmt_usd(be.fixed_usd_per_month), True),
    API,
    Cell("API / 1k calls", api_per_1k_cell, True),
    *(
        Cell(f"self-hosted / 1k calls at {fmt_volume(v)}/month", per_1k_at(v), True)
        for v in SHOWN_VOLUMES
    ),
    Cell("break-even", volume_short, hint=lambda be: be.reason),
    Cell("quality", lambda be: be.quality_note),
)
TOKENS_TABLE = (
    SELF_HOSTED,
    API,
    Cell("API / 1M output tokens", api_per_1m_tokens, True),
    *(
        Cell(f"self-hosted at {fmt_volume(v)} calls/month", per_1m_tokens_at(v), True)
        for v in SHOWN_VOLUMES
    ),
)
TERMINAL = (
    SELF_HOSTED,
    Cell("hardware", hardware_cell),
    API,
    Cell("API / 1k", api_per_1k_cell, True),
    Cell("break-even", volume_short),
    Cell("quality", lambda be: be.quality_note),
)
CALLS_CAPTION = (
    "One row per self-hosted model and API model. Self-hosted cost per 1,000 calls falls as the "
    "volume spreads the machine's fixed monthly cost; the API's stays the same. Break-even: the "
    "calls a month from which self-hosting costs less; never: Nx: one machine, used as stated, "
    "costs N times the API's price for each call it can serve, so adding calls never catches up. "
    "Assumed: a machine fmgate chose from the records' hardware (name yours with --hardware). "
    "Estimated: an API not run on these prompts, priced at its list price for the self-hosted "
    "model's own token counts. Capacity: calls/s and output tok/s at the level chosen (observed: "
    "the run's own calls, no sweep)."
)
TOKENS_CAPTION = (
    "Cost per million output tokens, each side from its own mean output tokens per call (a "
    "model that answers at more length pays for more tokens)."
)


# -- the assumptions ----------------------------------------------------------------------------


def assumptions(found: Sequence[BreakEven]) -> list[str]:
    """The stated inputs behind the numbers, one sentence each: utilisation, hours, hardware."""
    utilisation = sorted({be.utilisation for be in found})
    used = ", ".join(f"{u:.0%}" for u in utilisation)
    said = [
        f"Utilisation {used}: the share of a machine's measured capacity that real traffic keeps "
        "busy on average (set --utilisation); a month is "
        f"{HOURS_PER_MONTH} hours (8,760 a year over 12).",
        "Capacity: the concurrency level with the most calls per second whose p90 latency kept "
        "under the target (default: the API's own p90 on the same prompts; set --p90-target); "
        "run fmgate bench for a sweep.",
    ]
    machines = {hardware_name(be.hardware): be.hardware for be in found}
    for label, machine in machines.items():
        assumed = (
            f" Assumed ({machine.why_assumed or 'from the hardware the records ran on'}): "
            "name yours with --hardware."
            if machine.assumed
            else ""
        )
        said.append(f"Hardware {label}: {hardware_source(machine)}.{assumed}")
    said += list(dict.fromkeys(_power(be) for be in found if be.busy_watts is not None))
    said += list(dict.fromkeys(f"{be.local}: {note}." for be in found for note in be.notes))
    return said


def _power(be: BreakEven) -> str:
    """Owned hardware's power: busy (given, or from the records' energy), idle, and its price."""
    machine, busy = be.hardware, be.busy_watts or 0.0
    given = "given" if machine.busy_watts is not None else "from the records' energy per call"
    idle = machine.idle_watts if machine.idle_watts is not None else busy * DEFAULT_IDLE_FRACTION
    return (
        f"{be.local} on {hardware_name(machine)}: {fmt_number(busy)} W busy ({given}), "
        f"{fmt_number(idle)} W idle, at ${machine.usd_per_kwh}/kWh."
    )


# -- Markdown -----------------------------------------------------------------------------------


def markdown_section(found: Sequence[BreakEven]) -> list[str]:
    """The section's Markdown lines; none without a pair."""
    if not found:
        return []
    lines = [f"## {TITLE}", "", *_md_table(found, CALLS_TABLE), "", CALLS_CAPTION, ""]
    lines += ["### Per million output tokens", "", *_md_table(found, TOKENS_TABLE), ""]
    lines += [TOKENS_CAPTION, ""]
    lines += [f"- {_md_escape(s)}" for s in assumptions(found)]
    return [*lines, f"- The model, its formulas and defaults: [docs/economics.md]({DOC_URL}).", ""]


def _md_table(found: Sequence[BreakEven], cells: Sequence[Cell]) -> list[str]:
    lines = ["| " + " | ".join(_md_escape(c.header) for c in cells) + " |"]
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in cells) + "|")
    return lines + ["| " + " | ".join(_md_escape(c.cell(be)) for c in cells) + " |" for be in found]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- HTML ---------------------------------------------------------------------------------------


def html_section(found: Sequence[BreakEven], *, plots: bool = True) -> str:
    """The section as HTML (tables, assumptions, and with ``plots`` one figure per self-hosted
    row); empty without a pair."""
    if not found:
        return ""
    parts = [f"<h2>{escape(TITLE)}</h2>", _html_table(found, CALLS_TABLE, CALLS_CAPTION)]
    parts += [
        "<h3>Per million output tokens</h3>",
        _html_table(found, TOKENS_TABLE, TOKENS_CAPTION),
    ]
    items = "".join(f"<li>{escape(s)}</li>" for s in assumptions(found))
    doc = f"<li>The model, its formulas and defaults: {DOC_NAME}.</li>"
    parts.append(f'<ul class="note">{items}{doc}</ul>')  # no link: the page is self-contained
    if plots:
        for plot in breakeven_plots(found, limit=MAX_PLOTS):
            image = f'<img alt="{escape(plot.caption)}" src="{plot.png_uri}">'
            parts.append(f"<figure>{image}<figcaption>{escape(plot.caption)}</figcaption></figure>")
    return "\n".join(parts)


def _html_table(found: Sequence[BreakEven], cells: Sequence[Cell], caption: str) -> str:
    head = "".join(f"<th>{escape(c.header)}</th>" for c in cells)
    rows = "".join("<tr>" + "".join(_html_cell(be, c) for c in cells) + "</tr>\n" for be in found)
    return (
        f'<div class="wide"><table class="wrap"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{rows}</tbody></table>"
        f'</div><p class="caption">{escape(caption)}</p>'
    )


def _html_cell(be: BreakEven, c: Cell) -> str:
    attrs = ' class="num"' if c.numeric else ""
    if c.hint is not None:
        attrs += f' title="{escape(c.hint(be))}"'
    return f"<td{attrs}>{escape(c.cell(be))}</td>"


# -- the section's own files (fmgate breakeven --out) -------------------------------------------


def write_section(out: Path, found: Sequence[BreakEven]) -> tuple[dict[str, Path], str | None]:
    """breakeven.md, breakeven.csv (one row per pair and monthly volume) and breakeven.html
    (with the plots); the paths by format, and why the HTML page was left out (no matplotlib:
    the install line), or ``None``."""
    from .._errors import MissingExtraError
    from .html import CSS, require_matplotlib

    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "breakeven.md", "csv": out / "breakeven.csv"}
    _, *lines = markdown_section(found)  # a page of its own: the section's title heads it
    paths["md"].write_text("\n".join([f"# {TITLE}", *lines]), "utf-8")
    rows = csv_rows(found)
    with paths["csv"].open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    try:
        require_matplotlib()
    except MissingExtraError as exc:
        return paths, str(exc)
    paths["html"] = out / "breakeven.html"
    paths["html"].write_text(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(TITLE)}</title><style>{CSS}</style></head>\n<body>\n"
        f"{html_section(found)}\n</body></html>\n",
        "utf-8",
    )
    return paths, None


def csv_rows(found: Sequence[BreakEven]) -> list[dict[str, Any]]:
    """One row per pair and monthly volume (:data:`~fmgate._economics.VOLUMES`)."""
    rows = []
    for be in found:
        pair = {
            "self_hosted": be.local,
            "hardware": be.hardware.name,
            "hardware_usd_per_hour": be.hardware.usd_per_hour,
            "hardware_assumed": be.hardware.assumed,
            "hardware_source": be.hardware.source,
            "billing": be.hardware.billing,
            "utilisation": be.utilisation,
            "concurrency": be.capacity.level.concurrency,
            "calls_per_s": be.capacity.level.calls_per_s,
            "latency_p90_s": be.capacity.level.latency_p90_s,
            "target_p90_s": be.capacity.target_p90_s,
            "fixed_usd_per_month": be.fixed_usd_per_month,
            "usd_per_call": be.usd_per_call,
            "calls_per_machine_month": be.calls_per_machine_month,
            "api": be.api.label,
            "api_usd_per_call": be.api.cost_per_call,
            "api_estimated_from": be.api.estimated_from,
            "breakeven_calls_per_month": be.volume,
            "reason": be.reason,
            "quality": be.quality_note,
        }
        for volume in VOLUMES:
            mine, theirs = be.per_1m_output_tokens(volume)
            row = pair | {
                "calls_per_month": volume,
                "machines": be.machines(volume),
                "self_hosted_usd_per_month": be.self_hosted_per_month(volume),
                "api_usd_per_month": be.api_per_month(volume),
                "self_hosted_usd_per_1m_output_tokens": mine,
                "api_usd_per_1m_output_tokens": theirs,
            }
            rows.append({k: _csv_cell(v) for k, v in row.items()})
    return rows


def _csv_cell(value: object) -> object:
    """Amounts in plain digits (1065800, never 1.06580E+6), booleans as true/false."""
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


# -- the terminal -------------------------------------------------------------------------------


def terminal_table(found: Sequence[BreakEven]) -> Table:
    """A compact table: self-hosted, hardware, API, break-even volume, quality note."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=TITLE,
        caption="Break-even: calls a month from which self-hosting costs less. "
        + " ".join(assumptions(found)[:1]),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        title_justify="left",
        caption_justify="left",
    )
    for c in TERMINAL:
        table.add_column(c.header, justify="right" if c.numeric else "left", overflow="fold")
    for be in found:
        table.add_row(*(c.cell(be) for c in TERMINAL))
    return table


# -- the plot -----------------------------------------------------------------------------------

SELF_COLOUR, API_COLOURS = "#0072B2", ("#D55E00", "#CC79A7", "#E69F00", "#009E73", "#56B4E9")
GRID_POINTS = 120
MAX_STEPS = 200  # machine counts drawn as steps; past that the line is smooth at this scale


def breakeven_plots(found: Sequence[BreakEven], *, limit: int = MAX_PLOTS) -> list[Plot]:
    """One figure per self-hosted row and machine: cost per month against calls per month,
    log-log, the self-hosted line stepping up as machines are added, one line per API model,
    and a dot where they cross."""
    groups: dict[tuple[str, str], list[BreakEven]] = {}
    for be in found:
        groups.setdefault((be.local, hardware_name(be.hardware)), []).append(be)
    return [_plot(group) for group in list(groups.values())[:limit]]


def _plot(group: Sequence[BreakEven]) -> Plot:
    from .plots import WIDTH, Plot, _new_figure, png_uri

    fig = _new_figure(WIDTH, 4.2)
    ax = fig.add_subplot()
    grid = _volumes(group)
    drawn: set[tuple[Decimal, Decimal, Decimal]] = set()
    for be in group:
        line = (be.fixed_usd_per_month, be.usd_per_call, be.calls_per_machine_month)
        if line not in drawn:
            name = be.local if not drawn else f"{be.local} (capacity for {be.api.label})"
            _line(ax, grid, be.self_hosted_per_month, name, SELF_COLOUR, "-")
            drawn.add(line)
    for i, be in enumerate(group):
        colour = API_COLOURS[i % len(API_COLOURS)]
        _line(ax, grid, be.api_per_month, be.api.label, colour, "--")
        if be.volume:
            v = float(be.volume)
            ax.scatter([v], [float(be.api_per_month(be.volume))], color=colour, s=50, zorder=4)
            ax.annotate(
                f"{fmt_volume(v)} calls/month",
                (v, float(be.api_per_month(be.volume))),
                xytext=(6, -12),
                textcoords="offset points",
                fontsize=9,
            )
    _axes(ax, group[0])
    return Plot(png_uri(fig), _caption(group))


def _volumes(group: Sequence[BreakEven]) -> list[float]:
    """A log grid of volumes, plus each side of every machine added, so the steps stand up."""
    low = float(VOLUMES[0])
    crossings = [float(be.volume) for be in group if be.volume]
    high = min(max([float(VOLUMES[-1]) * 10, *(10 * v for v in crossings)]), 1e12)
    grid = [low * (high / low) ** (i / (GRID_POINTS - 1)) for i in range(GRID_POINTS)]
    for be in group:
        per = float(be.calls_per_machine_month)
        if be.hardware.billing == "while_running" and per > 0 and high / per <= MAX_STEPS:
            grid += [k * per * f for k in range(1, int(high / per) + 1) for f in (1, 1.000001)]
    return sorted(v for v in grid if low <= v <= high)


def _line(
    ax: Axes,
    grid: Sequence[float],
    cost: Callable[[Decimal], Decimal],
    label: str,
    colour: str,
    style: str,
) -> None:
    points = [(v, float(cost(Decimal(str(v))))) for v in grid]
    shown = [(v, c) for v, c in points if c > 0]  # log axes: a free line has no point
    if shown:
        ax.plot(*zip(*shown, strict=True), style, color=colour, label=label.replace("$", r"\$"))


def _axes(ax: Axes, be: BreakEven) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_volume(v)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _money(v)))
    ax.set(xlabel="calls per month", ylabel="cost per month (USD)")
    ax.set_title(f"{be.local} on {hardware_name(be.hardware)}".replace("$", r"\$"))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)  # every line rises to the right: that corner is free


def _money(value: float) -> str:
    return "$" + (fmt_volume(value) if value >= 1000 else fmt_number(value))


def _caption(group: Sequence[BreakEven]) -> str:
    be = group[0]
    steps = (
        "billed per request, so it grows with every call"
        if be.hardware.billing == "active_seconds"
        else f"stepping up as machines are added (each at {be.utilisation:.0%} of its capacity)"
    )
    text = (
        f"Cost per month against calls per month, log-log: {be.local} on "
        f"{hardware_name(be.hardware)} "
        f"(solid), {steps}; each API model (dashed) costs the same per call at any volume."
    )
    crossing = [b for b in group if b.volume]
    if crossing:
        text += " Dots: break-even volumes."
    never = [b.api.label for b in group if b.volume is None]
    if never:
        text += f" Never cheaper than {', '.join(never)} at this throughput."
    return text
