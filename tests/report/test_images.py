"""An image run's report: quality over images and boxes, speed and cost per image, by hand."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Literal

import pytest

from fmgate._record import CallRecord, Cost, Latency, Outcome, Score, Usage
from fmgate._report import markdown, summarize
from fmgate._report.render import rich_table
from fmgate._tags import ROLE, WARMUP
from tests.report import T0


def record(
    n: int,
    alias: str,
    operation: Literal["classify", "detect"],
    images: int,
    seconds: float,
    usd: str | None,
    *,
    ok: bool = True,
    warmup: bool = False,
) -> CallRecord:
    tags = {ROLE: "candidate", **({WARMUP: "true"} if warmup else {})}
    return CallRecord(
        id=f"{alias}-{operation}-{n}",
        started_at=T0 + timedelta(seconds=n),
        alias=alias,
        backend="fake",
        model_id=alias,
        distribution="local" if alias == "effnet" else "api",
        operation=operation,
        usage=Usage(items=images, images_in=images),
        latency=Latency(total_s=seconds if ok else None),
        cost=Cost(Decimal(usd), "energy_estimated") if usd else Cost(),
        outcome=Outcome("ok") if ok else Outcome("error", error_type="ServerError"),
        tags=tags,
    )


def top(rec: CallRecord, scorer: str, rows: list[tuple[str, str, list[str]]]) -> Score:
    # value 0: the report's metrics come from the rows, pooled, not from the calls' own shares
    return Score(rec.id, scorer, 0.0, T0, detail=json.dumps({"images": [list(r) for r in rows]}))


def boxes(rec: CallRecord, rows: list[tuple[str, int, int, int]]) -> Score:
    detail = json.dumps({"boxes": [list(r) for r in rows]})
    return Score(rec.id, "recall@0.5", 0.0, T0, detail=detail)


def run() -> tuple[list[CallRecord], list[Score]]:
    """effnet: a warm-up, then batches of 4 images in 2 s and 2 images in 0.5 s (8 and 2 µ$).
    api: one image per call (1 s, 3 s, one failure), classifying and detecting."""
    warm = record(0, "effnet", "classify", 1, 9.0, "0.000009", warmup=True)
    b1 = record(1, "effnet", "classify", 4, 2.0, "0.000008")
    b2 = record(2, "effnet", "classify", 2, 0.5, "0.000002")
    a1 = record(3, "api", "classify", 1, 1.0, "0.001")
    a2 = record(4, "api", "classify", 1, 3.0, "0.003")
    a3 = record(5, "api", "classify", 1, 0.0, None, ok=False)
    d1 = record(6, "api", "detect", 1, 2.0, "0.002")
    cat, cup = "tabby|tiger cat", "espresso"
    scores = [
        # 6 images: 4 right at top-1 (not b, whose best is cup, nor f: lynx), all 6 at top-5
        top(
            b1,
            "top1",
            [("a", cat, ["tabby"]), ("b", cup, ["cup", "espresso"])]
            + [("c", cup, ["espresso"]), ("d", cat, ["tiger cat"])],
        ),
        top(b2, "top1", [("e", cup, ["espresso"]), ("f", cat, ["lynx", "tabby, tabby cat"])]),
        top(warm, "top1", [("a", cat, ["dog"])]),  # a warm-up is never counted
        top(a1, "top1", [("a", cat, ["tabby"])]),
        top(a2, "top1", [("b", cup, ["cup"])]),
        # one image, 3 boxes, 2 found, 4 detections
        boxes(d1, [("s", 3, 2, 4)]),
    ]
    return [warm, b1, b2, a1, a2, a3, d1], scores


def test_speed_and_cost_are_per_image() -> None:
    records, scores = run()
    rows = {s.label: s for s in summarize(records, scores)}
    effnet = rows["effnet"]
    assert effnet.images == 6 and effnet.calls == 2
    # per image: 2 s / 4 = 0.5 s and 0.5 s / 2 = 0.25 s; the median of two is their mean
    assert effnet.latency_per_image_p50_s == pytest.approx(0.375)
    assert effnet.images_per_s == pytest.approx(6 / 2.5)
    assert effnet.cost_per_image == Decimal("0.00001") / 6
    assert effnet.cost_per_1k_images == Decimal("0.00001") / 6 * 1000
    api = rows["api · classify images"]
    assert api.calls == 3 and api.images == 2  # the failed call saw no image through
    assert api.cost_per_image == Decimal("0.002") and api.latency_per_image_p50_s == 2.0


def test_top1_top5_recall_and_precision_are_pooled() -> None:
    records, scores = run()
    rows = {s.label: s for s in summarize(records, scores)}
    effnet = rows["effnet"]
    assert effnet.top1 == pytest.approx(4 / 6) and effnet.top5 == 1.0
    assert effnet.images_graded == 6 and effnet.scored == 6
    assert effnet.quality == pytest.approx(4 / 6) and effnet.quality_scorer == "top1"
    detect = rows["api · detect"]
    assert detect.recall == pytest.approx(2 / 3) and detect.precision == 0.5
    assert detect.boxes == 3 and detect.quality == pytest.approx(2 / 3)
    assert detect.top1 is None and detect.accuracy is None


def test_the_images_table_renders_in_markdown_and_the_terminal() -> None:
    from rich.console import Console

    records, scores = run()
    summaries = summarize(records, scores)
    md = markdown(summaries, title="images")
    assert "## Images" in md and "## Classification" not in md  # no texts were classified
    images = md[md.index("## Images") :]
    line = next(row for row in images.splitlines() if row.startswith("| effnet |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:8] == ["effnet", "2", "6", "6", "0.667", "1.000", "–", "–"]
    assert "| api · detect | 1 | 1 | 1 (3 boxes) | – | – | 0.667 | 0.500 |" in md
    console = Console(width=200, record=True)
    console.print(rich_table(summaries, title="images"))
    text = console.export_text()
    assert "Images" in text and "1667 µ$" in text  # effnet: $0.00001 / 6 images x 1000
