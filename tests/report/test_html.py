"""The HTML page and its plots: self-contained, readable from 1280 px, one plot per task kind and
scorer, honest axes."""

from __future__ import annotations

import base64
import io
from dataclasses import replace
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import fmgate
from fmgate._record import CallRecord, Cost, Outcome, Score
from fmgate._report import plots as plots_module
from fmgate._report import summarize, write_report
from fmgate._report.plots import _front, _new_figure, _Point, _scale, pareto_front, task_plots
from fmgate._tags import ROLE
from tests.report import build_records, build_scores

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def records() -> list[CallRecord]:
    return build_records()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.tags: set[str] = set()
        self.titles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href"):
                (self.images if tag == "img" else self.links).append(value or "")
            if name == "title" and tag == "td":
                self.titles.append(value or "")


def page_of(path: Path) -> tuple[_Page, str]:
    html = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)
    return page, html


def test_html_is_self_contained_with_valid_pngs(tmp_path: Path, records: list[CallRecord]) -> None:
    import matplotlib.image

    page, _ = page_of(
        write_report(tmp_path, records, build_scores(records), formats=("html",))["html"]
    )
    assert page.links == [] and "script" not in page.tags and "link" not in page.tags
    # chat: cost vs latency beside quality vs cost; latency spread; break-even of qwen-local
    # and of vllm:llama against gpt-4o-mini
    assert len(page.images) == 4
    for uri in page.images:
        assert uri.startswith("data:image/png;base64,")
        data = base64.b64decode(uri.split(",", 1)[1], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        assert matplotlib.image.imread(io.BytesIO(data), format="png").ndim == 3


def test_html_content(tmp_path: Path, records: list[CallRecord]) -> None:
    _, html = page_of(
        write_report(tmp_path, records, formats=("html",), title="Run <1> & co")["html"]
    )
    assert "<title>Run &lt;1&gt; &amp; co</title>" in html
    assert "Not plotted: unknown cost: vllm:llama." in html
    assert "http://" not in html and "https://" not in html
    for s in summarize(records):
        assert f"<td>{s.label}" in html
    assert "RateLimitError \u00d7 1" in html and "How to read this" in html
    assert "2025-03-01 12:00:00 UTC to 2025-03-01 12:00:15 UTC" in html
    assert f"fmgate {fmgate.__version__}" in html


def test_the_page_fits_1280_px(tmp_path: Path, records: list[CallRecord]) -> None:
    """Summary, speed and access in tables of their own; p50 in the summary, p90 and p99 on
    hover; no percentile triples stacked in one cell; figures span the width."""
    page, html = page_of(write_report(tmp_path, records, formats=("html",))["html"])
    assert html.count("<table") == 5  # and break-even: per 1k calls, per 1M output tokens
    assert "<h2>Summary</h2>" in html and "<h2>Access: how open, how reachable</h2>" in html
    assert " / " not in "".join(page.titles) and "p50 / p90" not in html
    assert "p50 3000 ms, p90 4600 ms, p99 4960 ms" in page.titles
    assert "figure img{width:100%" in html


def mixed_records() -> tuple[list[CallRecord], list[Score]]:
    """A chat model graded by ``contains``, an embedding model by ``retrieval@1``, and its
    ``index`` call: never one cost-latency plot, never one quality axis."""
    base = build_records()[3]  # an ok, priced gpt-4o-mini call
    chat = [replace(base, id=f"c{i}", alias="chatty") for i in range(3)]
    embed = [
        replace(base, id=f"e{i}", alias="embedder", operation="embeddings", distribution="local")
        for i in range(3)
    ]
    index = replace(embed[0], id="idx", tags={ROLE: "index"})
    scores = [Score(r.id, "contains", 1.0, r.started_at) for r in chat]
    scores += [Score(r.id, "retrieval@1", 0.5, r.started_at) for r in embed]
    return [*chat, *embed, index], scores


def test_one_figure_per_task_kind_and_a_quality_panel_per_scorer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[Any] = []
    monkeypatch.setattr(plots_module, "png_uri", lambda fig: drawn.append(fig) or "data:")
    records, scores = mixed_records()
    sections = task_plots(summarize(records, scores), records)
    assert [title for title, _ in sections] == ["Chat models", "Embedding models"]
    (chat_panels, _), (embed_panels, _) = (figures for _, figures in sections)
    assert "contains" in chat_panels.caption and "retrieval@1" not in chat_panels.caption
    assert "retrieval@1" in embed_panels.caption and "contains" not in embed_panels.caption
    chat_fig = drawn[0]
    labels = [t.get_text() for ax in chat_fig.axes for t in ax.texts]
    assert labels == ["chatty", "chatty"]  # one point per panel: cost-latency, quality-cost
    assert [ax.get_title() for ax in chat_fig.axes] == [
        "Cost vs latency",
        "Quality (contains) vs cost",
    ]


def test_the_legend_sits_under_the_panels_away_from_the_labels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[Any] = []
    monkeypatch.setattr(plots_module, "png_uri", lambda fig: drawn.append(fig) or "data:")
    records, scores = mixed_records()
    task_plots(summarize(records, scores), records)
    fig = drawn[0]
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    fig.draw(renderer)
    (legend,) = fig.legends
    assert all(ax.get_legend() is None for ax in fig.axes)
    top_of_legend = legend.get_window_extent(renderer).y1
    assert all(ax.get_window_extent(renderer).y0 > top_of_legend for ax in fig.axes)


def point(x: float, y: float) -> _Point:
    return _Point(summarize(build_records()[3:4])[0], x, y)


def test_the_pareto_front_is_drawn_whenever_there_are_two_points() -> None:
    fig = _new_figure(6, 4)
    ax = fig.add_subplot()
    assert _front(ax, [point(1, 1)], sign=1) == ""  # one point: no front, none promised
    assert "Circled" in _front(ax, [point(1, 1), point(2, 2)], sign=1)  # one beats the other
    assert "Dashed" in _front(ax, [point(1, 2), point(2, 1)], sign=1)
    assert ax.get_legend_handles_labels()[1] == ["Pareto front", "Pareto front"]


def test_pareto_front_keeps_points_nothing_beats() -> None:
    points = [(1.0, 5.0), (2.0, 3.0), (3.0, 4.0), (4.0, 1.0), (2.0, 6.0)]
    assert pareto_front(points) == [(1.0, 5.0), (2.0, 3.0), (4.0, 1.0)]


def test_one_point_sits_mid_plot_on_axes_from_zero() -> None:
    fig = _new_figure(6, 4)
    ax = fig.add_subplot()
    _scale(ax, "x", [86.4])
    _scale(ax, "y", [3570.0])
    assert ax.get_xlim() == (0, 172.8) and ax.get_ylim() == (0, 7140.0)


def test_axis_ticks_are_plain_numbers_without_an_offset() -> None:
    """A cost axis from 1.2e-5 to 3.4e-5 used to read 1.5 ... 3.5 with ``1e-5`` in a corner."""
    fig = _new_figure(6, 4)
    ax = fig.add_subplot()
    ax.scatter([1.2e-5, 3.4e-5], [1, 2])
    _scale(ax, "x", [1.2e-5, 3.4e-5])
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ax.xaxis.get_offset_text().get_text() == ""
    assert labels and all("e" not in label for label in labels), labels
    assert "2e-05" not in labels and "2.00e-5" not in labels and "0.00002" in labels  # fmt: skip


def test_costs_under_a_cent_are_plotted_in_micro_dollars(
    tmp_path: Path, records: list[CallRecord]
) -> None:
    from fmgate._report.plots import cost_unit

    assert cost_unit([8.64e-5, 1.08e-5]) == (1e6, "µ$, millionths of a dollar")
    assert cost_unit([0.3, 0.0125]) == (1.0, "USD")


def test_log_scale_only_past_a_hundredfold_range() -> None:
    ax = _new_figure(4, 3).add_subplot()
    _scale(ax, "x", [0.5, 50.0])  # 100x: still linear
    _scale(ax, "y", [0.0, 1000.0])  # a zero cannot go on a log axis
    assert (ax.get_xscale(), ax.get_yscale()) == ("linear", "linear")
    _scale(ax, "x", [0.5, 50.1])
    assert ax.get_xscale() == "log"


def test_a_model_whose_calls_all_failed_is_captioned_so(tmp_path: Path) -> None:
    base = build_records()[3]
    ok = [replace(base, id=str(i), model_id=f"m{i}") for i in range(2)]
    failed = Outcome(status="error", error_type="OfflineError", sent=False)
    down = replace(base, id="f", model_id="down", outcome=failed, cost=Cost())
    page, html = page_of(write_report(tmp_path, [*ok, down], formats=("html",))["html"])
    assert "Not plotted: all calls failed: openai:down." in html
    assert "unknown cost: openai:down" not in html
    assert '<td class="num">all calls failed</td>' in html
    assert len(page.images) == 2


def test_wide_cost_ranges_go_on_log_axes(tmp_path: Path) -> None:
    base = build_records()[3]
    wide = [  # $0.001 to $10 per 1k calls, 10,000x
        replace(base, id=str(i), model_id=f"m{i}", cost=replace(base.cost, amount=Decimal(c)))
        for i, c in enumerate(("0.000001", "0.00001", "0.001", "0.01"))
    ]
    wide = [replace(r, latency=replace(r.latency, total_s=4.0 - i)) for i, r in enumerate(wide)]
    page, html = page_of(write_report(tmp_path, wide, formats=("html",))["html"])
    assert len(page.images) == 2 and "Dashed: the Pareto front" in html


def test_html_escapes_model_labels(tmp_path: Path, records: list[CallRecord]) -> None:
    evil = [replace(r, alias="<script>x</script>") for r in records[3:5]]
    html = write_report(tmp_path, evil, formats=("html",))["html"].read_text()
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


def test_empty_report(tmp_path: Path) -> None:
    paths = write_report(tmp_path, [])
    assert "no records" in paths["html"].read_text()
    assert "| model |" in paths["md"].read_text()
