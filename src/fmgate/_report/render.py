"""The report as text: cell formats, the tables every renderer shares, a rich table and Markdown.

The Markdown and HTML pages show the same three tables (:data:`TABLES`: summary, speed, access);
the terminal a narrower selection of the same cells (:data:`TERMINAL_TABLES`), so every table
says the same thing in the same units: times in milliseconds, costs in dollars, or in µ$
(millionths of a dollar) under a cent. A value fmgate could not compute renders as an en dash,
never as 0. Columns and tables that only some runs have (validity and tool use beside quality,
the classification and image tables) appear only when a record needs them (:func:`tables_for`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

from .aggregate import ModelSummary
from .strips import Strip, markdown_strips

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, Group, RenderResult
    from rich.table import Table
    from rich.text import Text

__all__ = [
    "DASH",
    "TABLES",
    "TERMINAL_TABLES",
    "fmt_ms",
    "fmt_usd",
    "markdown",
    "notes_for",
    "rich_table",
    "tables_for",
]

DASH = "\u2013"
MICRO = Decimal("0.000001")
UNITS_TEXT = (
    "Times are in milliseconds (ms). Costs are in US dollars; amounts under a cent are in µ$, "
    "millionths of a dollar (150 µ$ = $0.000150; 0.298 µ$ per call is $0.298 per million calls)."
)


def fmt_number(value: float | None) -> str:
    """Three significant digits (all digits from 100 up), never in exponent notation."""
    if value is None:
        return DASH
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    places = max(0, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_ms(seconds: float | None) -> str:
    """A duration in milliseconds, three significant digits: every table's unit of time."""
    return fmt_number(None if seconds is None else seconds * 1000)


def fmt_usd(amount: Decimal | None) -> str:
    """``$12.50``, ``$0.300``, ``$0.0150``; under a cent in µ$: ``150 µ$``, ``0.298 µ$``.

    Three significant digits (at least cents in dollars), never a string of zeros: a millionth of
    a dollar is the unit that keeps a local model's cost per call readable.
    """
    if amount is None:
        return DASH
    if amount == 0:
        return "$0.00"
    if abs(amount) >= Decimal("0.01"):
        return f"${amount:.{max(2, 2 - amount.adjusted())}f}"
    micro = amount / MICRO
    if micro.adjusted() < -3:  # under a billionth of a dollar: zeros would crowd the digits
        return f"{micro:.2e} µ$"
    return f"{micro:.{max(0, 2 - micro.adjusted())}f} µ$"


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


def fmt_tries(s: ModelSummary) -> str:
    """Mean tries per call (1.00 without retries), and the calls served as a fallback."""
    if s.tries_per_call is None:
        return DASH
    served = f" ({s.fallbacks} as fallback)" if s.fallbacks else ""
    return f"{s.tries_per_call:.2f}{served}"


def all_failed(s: ModelSummary) -> bool:
    return s.calls > 0 and s.ok == 0


def fmt_cost(amount: Decimal | None, s: ModelSummary) -> str:
    """The amount, ``(n/m priced)`` when some calls could not be priced; a model whose calls
    all failed says so rather than leave its cost unexplained."""
    if amount is None:
        return "all calls failed" if all_failed(s) else DASH
    partly = f" ({s.cost_known_calls}/{s.calls} priced)" if s.cost_known_calls < s.calls else ""
    return fmt_usd(amount) + partly


def fmt_quality(s: ModelSummary) -> str:
    """Three decimals (a mean score lies in [0, 1]), three significant digits under 0.1."""
    if s.quality is None:
        return DASH
    return f"{s.quality:.3f}" if s.quality == 0 or abs(s.quality) >= 0.1 else f"{s.quality:.3g}"


def fmt_metric(value: float | None) -> str:
    """A share or an F1 in [0, 1], three decimals: ``0.957``."""
    return DASH if value is None else f"{value:.3f}"


def fmt_scored(s: ModelSummary) -> str:
    return DASH if s.quality_scorer is None else f"{s.quality_scorer}, n={s.scored}"


def fmt_sent(s: ModelSummary) -> str:
    """How many calls sent the prompt off this machine, from each record's ``outcome.sent``: a
    call refused before sending (offline mode, a bad parameter) sent nothing."""
    if s.data_leaves_machine is None:
        return DASH
    if s.data_leaves_machine is False:
        return f"0/{s.calls}"
    unknown = f" ({s.sent_unknown} unknown)" if s.sent_unknown else ""
    return f"{s.sent_off}/{s.calls}{unknown}"


def model_cell(s: ModelSummary) -> str:
    return s.label if s.role == "candidate" else f"{s.label} ({s.role})"


class Column(NamedTuple):
    header: str
    cell: Callable[[ModelSummary], str]
    numeric: bool = False
    hint: Callable[[ModelSummary], str] | None = None  # the HTML cell's title (shown on hover)


class TableSpec(NamedTuple):
    title: str
    columns: tuple[Column, ...]
    caption: str = ""
    keeps: Callable[[ModelSummary], bool] | None = None  # the rows it shows; None: every one

    def rows(self, summaries: Sequence[ModelSummary]) -> list[ModelSummary]:
        return [s for s in summaries if self.keeps is None or self.keeps(s)]


def _percentiles(p50: float | None, p90: float | None, p99: float | None) -> str:
    return f"p50 {fmt_ms(p50)} ms, p90 {fmt_ms(p90)} ms, p99 {fmt_ms(p99)} ms"


MODEL = Column("model", model_cell)
CALLS = Column("calls", lambda s: str(s.calls), True)
SUMMARY = TableSpec(
    "Summary",
    (
        MODEL,
        CALLS,
        Column("success", lambda s: fmt_rate(s.success_rate), True),
        Column("tries / call", fmt_tries, True),
        Column(
            "latency p50 ms",
            lambda s: fmt_ms(s.latency_p50_s),
            True,
            lambda s: _percentiles(s.latency_p50_s, s.latency_p90_s, s.latency_p99_s),
        ),
        Column(
            "TTFT p50 ms",
            lambda s: fmt_ms(s.ttft_p50_s),
            True,
            lambda s: _percentiles(s.ttft_p50_s, s.ttft_p90_s, s.ttft_p99_s),
        ),
        Column("output tok/s", lambda s: fmt_number(s.output_tokens_per_s), True),
        Column("cost / call", lambda s: fmt_cost(s.cost_per_call, s), True),
        Column("cost / 1k calls", lambda s: fmt_cost(s.cost_per_1k_calls, s), True),
        Column("cost basis", lambda s: s.cost_basis),
        Column("quality", fmt_quality, True),
        Column("scored by", fmt_scored),
    ),
)
SPEED = TableSpec(
    "Speed (ms)",
    (
        MODEL,
        Column("latency p50", lambda s: fmt_ms(s.latency_p50_s), True),
        Column("latency p90", lambda s: fmt_ms(s.latency_p90_s), True),
        Column("latency p99", lambda s: fmt_ms(s.latency_p99_s), True),
        Column("TTFT p50", lambda s: fmt_ms(s.ttft_p50_s), True),
        Column("TTFT p90", lambda s: fmt_ms(s.ttft_p90_s), True),
        Column("TTFT p99", lambda s: fmt_ms(s.ttft_p99_s), True),
        Column("decode tok/s", lambda s: fmt_number(s.decode_tokens_per_s), True),
        Column("output tok/s", lambda s: fmt_number(s.output_tokens_per_s), True),
        Column("load ms", lambda s: fmt_ms(s.load_s), True),
    ),
    "Percentiles over successful calls. Load is the cold start, kept out of every latency.",
)
ACCESS = TableSpec(
    "Access: how open, how reachable",
    (
        MODEL,
        Column("channel", lambda s: s.distribution),
        Column("open weights", lambda s: fmt_bool(s.open_weights)),
        Column("licence", lambda s: s.license or DASH),
        Column("params", lambda s: fmt_params(s.parameters), True),
        Column("data leaves machine", lambda s: fmt_bool(s.data_leaves_machine)),
        Column("calls that sent data off", fmt_sent, True),
        Column("offline capable", lambda s: fmt_bool(s.offline_capable)),
        Column("API key", lambda s: fmt_bool(s.requires_api_key)),
    ),
    "From each model's newest record. Data leaves machine is the channel's property; calls that "
    "sent data off counts the calls that did send the prompt off this machine (a call refused "
    "before sending, in offline mode or on a bad parameter, sent nothing).",
)
TABLES: tuple[TableSpec, ...] = (SUMMARY, SPEED, ACCESS)
CLASSIFICATION = TableSpec(
    "Classification",
    (
        MODEL,
        Column("accuracy", lambda s: fmt_metric(s.accuracy), True),
        Column("macro-F1", lambda s: fmt_metric(s.macro_f1), True),
        Column("texts graded", lambda s: str(s.scored) if s.accuracy is not None else DASH, True),
    ),
    "Over every graded text (a batched call classifies many). Accuracy: the share whose top "
    "label is right. Macro-F1: the mean of each true label's F1, so a rare label weighs as much "
    "as a common one, and a label the model never predicts scores 0.",
    keeps=lambda s: s.accuracy is not None,
)


def fmt_per_image(amount: Decimal | None, s: ModelSummary) -> str:
    """A cost per image; a model whose image calls all failed says so."""
    if amount is None:
        return "all calls failed" if all_failed(s) else DASH
    return fmt_usd(amount)


def fmt_graded(s: ModelSummary) -> str:
    """Images graded, and the true boxes among them for a detection set."""
    if not s.images_graded:
        return DASH
    return f"{s.images_graded} ({s.boxes} boxes)" if s.boxes else str(s.images_graded)


IMAGE_QUALITY = (
    Column("top-1", lambda s: fmt_metric(s.top1), True),
    Column("top-5", lambda s: fmt_metric(s.top5), True),
    Column("recall@0.5", lambda s: fmt_metric(s.recall), True),
    Column("precision", lambda s: fmt_metric(s.precision), True),
)
IMAGES_TEXT = (
    "Per image, over the successful calls (a local model sees a batch of images per call). "
    "top-1: the share of images whose best label is right; top-5: right among the five best "
    "(a chat model classifying zero-shot names one label, so its top-5 is its top-1). "
    "recall@0.5: the share of true boxes found by a detection of the same label overlapping it "
    "with IoU at least 0.5; precision: the share of detections that found one. ms / image: the "
    "median of each call's latency over its images."
)
IMAGES = TableSpec(
    "Images",
    (
        MODEL,
        CALLS,
        Column("images", lambda s: str(s.images) if s.images is not None else DASH, True),
        Column("graded", fmt_graded, True),
        *IMAGE_QUALITY,
        Column("ms / image p50", lambda s: fmt_ms(s.latency_per_image_p50_s), True),
        Column("images/s", lambda s: fmt_number(s.images_per_s), True),
        Column("cost / image", lambda s: fmt_per_image(s.cost_per_image, s), True),
        Column("cost / 1k images", lambda s: fmt_per_image(s.cost_per_1k_images, s), True),
        Column("cost basis", lambda s: s.cost_basis),
        Column("channel", lambda s: s.distribution),  # the access columns: the Access table
    ),
    IMAGES_TEXT,
    keeps=lambda s: s.images is not None,
)
TERMINAL_IMAGES = TableSpec(
    "Images",
    (
        MODEL,
        Column("images", lambda s: str(s.images) if s.images is not None else DASH, True),
        *IMAGE_QUALITY,
        Column("ms/img", lambda s: fmt_ms(s.latency_per_image_p50_s), True),
        Column("img/s", lambda s: fmt_number(s.images_per_s), True),
        Column("per 1k images", lambda s: fmt_per_image(s.cost_per_1k_images, s), True),
        Column("basis", lambda s: s.cost_basis),
    ),
    "top-1/top-5: images whose right label is the best / among the five best; recall@0.5: true "
    "boxes found (IoU >= 0.5); precision: detections that found one; ms/img: median latency "
    "per image; per 1k images: cost.",
    keeps=lambda s: s.images is not None,
)

GENERATED_TEXT = (
    "Per image drawn, over the successful calls (one call per prompt; a call may draw several). "
    "ms / image: the median of each call's latency over its images; images/s: all images over "
    "all call time."
)
NO_CLIP = "Images generated: no quality score: no CLIP model available."
GENERATED = TableSpec(
    "Images generated",
    (
        MODEL,
        CALLS,
        Column("images", lambda s: str(s.generated) if s.generated is not None else DASH, True),
        Column("ms / image p50", lambda s: fmt_ms(s.latency_per_image_p50_s), True),
        Column("images/s", lambda s: fmt_number(s.images_per_s), True),
        Column("cost / image", lambda s: fmt_per_image(s.cost_per_image, s), True),
        Column("cost / 1k images", lambda s: fmt_per_image(s.cost_per_1k_images, s), True),
        Column("cost basis", lambda s: s.cost_basis),
        Column("channel", lambda s: s.distribution),
    ),
    GENERATED_TEXT,
    keeps=lambda s: s.generated is not None,
)
TERMINAL_GENERATED = TableSpec(
    "Images generated",
    (
        MODEL,
        Column("images", lambda s: str(s.generated) if s.generated is not None else DASH, True),
        Column("ms/img", lambda s: fmt_ms(s.latency_per_image_p50_s), True),
        Column("img/s", lambda s: fmt_number(s.images_per_s), True),
        Column("per 1k images", lambda s: fmt_per_image(s.cost_per_1k_images, s), True),
        Column("basis", lambda s: s.cost_basis),
    ),
    "ms/img: median latency per image drawn; per 1k images: cost.",
    keeps=lambda s: s.generated is not None,
)


def fmt_validity(s: ModelSummary) -> str:
    return fmt_rate(s.validity_rate)


def validity_hint(s: ModelSummary) -> str:
    return f"{s.output_valid} of {s.output_checked} replies validated against their schema"


VALIDITY = Column("valid", fmt_validity, True, validity_hint)
TOOL_USE = (
    Column("with tools", lambda s: str(s.calls_with_tools), True),
    Column("tools / call", lambda s: fmt_number(s.tools_called_per_call), True),
)
VALIDITY_TEXT = (
    "valid: the share of replies that validated against their row's schema (structured output; "
    "a reply that did not is a failed call, graded 0)."
)
TOOL_USE_TEXT = (
    "with tools: calls that offered the model tools; tools / call: the mean number of tool "
    "calls it made in them."
)


def tables_for(
    summaries: Sequence[ModelSummary], base: Sequence[TableSpec] = TABLES
) -> list[TableSpec]:
    """``base``, its first table with validity and tool use beside quality when any call asked
    for structured output or offered tools, the classification table after the first when any
    model classified texts, the image table when any classified images or detected
    objects, and the images-generated table when any drew images."""
    first, *rest = base
    added = [_with_structure(first, summaries)]
    if any(s.accuracy is not None for s in summaries):
        added.append(CLASSIFICATION)
    if any(s.images is not None for s in summaries):
        added.append(TERMINAL_IMAGES if base is TERMINAL_TABLES else IMAGES)
    if any(s.generated is not None for s in summaries):
        added.append(TERMINAL_GENERATED if base is TERMINAL_TABLES else GENERATED)
    return [*added, *rest]


def _with_structure(spec: TableSpec, summaries: Sequence[ModelSummary]) -> TableSpec:
    """``spec`` with the validity column where any reply was checked against a schema, and the
    tool-use columns where any call offered tools, just before its quality column."""
    added: list[Column] = []
    texts: list[str] = []
    if any(s.output_checked for s in summaries):
        added.append(VALIDITY)
        texts.append(VALIDITY_TEXT)
    if any(s.calls_with_tools for s in summaries):
        added += TOOL_USE
        texts.append(TOOL_USE_TEXT)
    if not added:
        return spec
    headers = [c.header for c in spec.columns]
    at = headers.index("quality") if "quality" in headers else len(headers)
    columns = (*spec.columns[:at], *added, *spec.columns[at:])
    caption = " ".join([spec.caption, *texts]) if spec.caption else " ".join(texts)
    return spec._replace(columns=columns, caption=caption)


# The terminal: three narrow tables (what each model did, what it cost, how open it is), short
# headers that the captions spell out.
TERMINAL_TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "",
        (
            MODEL,
            CALLS,
            Column(
                "ok", lambda s: DASH if s.success_rate is None else f"{s.success_rate:.0%}", True
            ),
            Column("p50 ms", lambda s: fmt_ms(s.latency_p50_s), True),
            Column("p90 ms", lambda s: fmt_ms(s.latency_p90_s), True),
            Column("p99 ms", lambda s: fmt_ms(s.latency_p99_s), True),
            Column("TTFT ms", lambda s: fmt_ms(s.ttft_p50_s), True),
            Column("tok/s", lambda s: fmt_number(s.output_tokens_per_s), True),
            Column("quality", fmt_quality, True),
        ),
        "Warm-up calls left out. ok: success rate; p50/p90/p99: latency of ok calls; TTFT: "
        "median time to first token; tok/s: output tokens per second, end to end.",
    ),
    TableSpec(
        "Cost (USD; µ$ = a millionth of a dollar)",
        (
            MODEL,
            Column("per call", lambda s: fmt_cost(s.cost_per_call, s), True),
            Column("per 1k calls", lambda s: fmt_cost(s.cost_per_1k_calls, s), True),
            Column("priced", lambda s: f"{s.cost_known_calls}/{s.calls}", True),
            Column("basis", lambda s: s.cost_basis),
        ),
    ),
    TableSpec(
        "Access",
        (
            MODEL,
            Column("channel", lambda s: s.distribution),
            Column("open", lambda s: fmt_bool(s.open_weights)),
            Column("licence", lambda s: s.license or DASH),
            Column("params", lambda s: fmt_params(s.parameters), True),
            Column("leaves", lambda s: "no" if s.data_leaves_machine is False else fmt_sent(s)),
            Column("offline", lambda s: fmt_bool(s.offline_capable)),
            Column("key", lambda s: fmt_bool(s.requires_api_key)),
        ),
        "open: open weights; leaves: how many calls sent the prompt off this machine (no: the "
        "channel keeps it here); offline: works with no network; key: needs an API key.",
    ),
)


def notes_for(summaries: Sequence[ModelSummary]) -> list[str]:
    """What a reader needs to know about these rows: roles other than candidate, batched
    latency, models whose calls all failed, the scorers."""
    notes = []
    for s in summaries:
        if s.role == "index":
            notes.append(
                f"{model_cell(s)}: the call that embedded every expected answer once, to build "
                f"the retrieval index that grades {s.label}; counted apart from its candidate row."
            )
        elif s.role == "judge":
            notes.append(f"{model_cell(s)}: the judge model that graded the answers.")
        if s.batch_size:
            notes.append(
                f"{model_cell(s)} ran its calls in batches of up to {s.batch_size} (one forward "
                "pass): each call's latency is its whole batch's time, and tok/s is per call."
            )
        if all_failed(s):
            notes.append(f"{model_cell(s)}: all calls failed (errors below).")
    scorers = sorted({s.quality_scorer for s in summaries if s.quality_scorer})
    if scorers:
        notes.append(
            f"Quality: each model's mean score from its scorer ({', '.join(scorers)}); scores "
            "of different scorers do not compare."
        )
    if any(s.generated is not None for s in summaries):
        notes.append(NO_CLIP)
    return notes


def rich_table(summaries: Sequence[ModelSummary], *, title: str | None = None) -> Group:
    """The summary for the terminal: measurements, cost, then access, as three tables.

    No value is ever cut or ellipsized: numbers keep their whole width, text wraps between
    words, and a table that cannot fit the console even so is printed as one line per value.
    """
    from rich.console import Group

    main, *rest = tables_for(summaries, TERMINAL_TABLES)
    caption = " ".join([main.caption, *notes_for(summaries)])
    tables = [_Fitted(main.rows(summaries), main, title=title or "", caption=caption)]
    tables += [
        _Fitted(spec.rows(summaries), spec, title=spec.title, caption=spec.caption) for spec in rest
    ]
    return Group(*tables)


class _Fitted:
    """A rich table where it fits the console, else a list of ``header: value`` lines."""

    def __init__(
        self, summaries: Sequence[ModelSummary], spec: TableSpec, *, title: str, caption: str
    ) -> None:
        self.summaries, self.spec, self.title, self.caption = summaries, spec, title, caption

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.measure import Measurement

        table = _table(self.summaries, self.spec, title=self.title, caption=self.caption)
        needed = Measurement.get(console, options.update_width(10_000), table).minimum
        yield table if needed <= options.max_width else self._lines()

    def _lines(self) -> Text:
        from rich.text import Text

        text = Text()
        if self.title:
            text.append(self.title + "\n", style="italic")
        for s in self.summaries:
            model, *columns = self.spec.columns
            text.append(model.cell(s) + "\n", style="bold")
            text.append("".join(f"  {c.header}: {c.cell(s)}\n" for c in columns))
        return text + Text(self.caption, style="dim") if self.caption else text


def _table(
    summaries: Sequence[ModelSummary], spec: TableSpec, *, title: str, caption: str
) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(
        title=title or None,
        caption=caption or None,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        title_justify="left",
        caption_justify="left",
    )
    for column in spec.columns:
        table.add_column(
            column.header,
            justify="right" if column.numeric else "left",
            no_wrap=column.numeric,  # its minimum width is its widest cell: safe
            overflow="fold",  # never an ellipsis
            min_width=_min_width(summaries, column),
        )
    for i, s in enumerate(summaries):
        # a rule between the candidates and the judges (and any other role) graded with them
        if i > 0 and s.role != "candidate" and summaries[i - 1].role == "candidate":
            table.add_section()
        table.add_row(*(column.cell(s) for column in spec.columns))
    return table


def _min_width(summaries: Sequence[ModelSummary], column: Column) -> int:
    """The widest number, or the longest word of text: rich wraps text between words and never
    narrows a column below this, so no value is split or cut."""
    cells = [column.cell(s) for s in summaries]
    words = [
        w for text in (column.header, *([] if column.numeric else cells)) for w in text.split()
    ]
    return max(len(w) for w in [*words, *(cells if column.numeric else []), ""])


def markdown(
    summaries: Sequence[ModelSummary],
    *,
    title: str,
    notes: Sequence[str] = (),
    strips: Sequence[Strip] = (),
    sections: Sequence[str] = (),
) -> str:
    """A Markdown page: the notes, the three tables, the thumbnails an image-generation run
    drew (``strips``, linked), further ``sections`` (lines: the break-even section), what to
    know about the rows, the errors."""
    lines = [f"# {title}", ""]
    if notes:
        lines += [f"- {_md_escape(n)}" for n in notes] + [""]
    for spec in tables_for(summaries):
        lines += [f"## {spec.title}", "", *_md_table(spec.rows(summaries), spec.columns), ""]
        if spec.caption:
            lines += [spec.caption, ""]
    lines += markdown_strips(strips)
    lines += sections
    lines += [f"- {_md_escape(n)}" for n in notes_for(summaries)]
    lines += ["", NOTES_TEXT, "", UNITS_TEXT]
    failing = [s for s in summaries if s.errors]
    if failing:
        lines += ["", "## Errors", ""]
        lines += [f"- {_md_escape(model_cell(s))}: {error_text(s)}" for s in failing]
    return "\n".join(lines) + "\n"


def _md_table(summaries: Sequence[ModelSummary], columns: Sequence[Column]) -> list[str]:
    lines = [_md_row(c.header for c in columns)]
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in columns) + "|")
    return lines + [_md_row(c.cell(s) for c in columns) for s in summaries]


NOTES_TEXT = (
    "Latency and TTFT percentiles are over successful calls; warm-up calls are left out of "
    "every number except load (the cold start). Costs carry their basis; – means fmgate could "
    "not compute the value."
)


def error_text(s: ModelSummary) -> str:
    return ", ".join(f"{kind} \u00d7 {n}" for kind, n in s.errors.items())


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(_md_escape(c) for c in cells) + " |"
