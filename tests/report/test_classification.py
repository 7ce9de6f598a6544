"""A classification run's report: accuracy and macro-F1 over texts, whatever the batching."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from fmgate._compare import Prediction
from fmgate._compare.classification import predictions_detail
from fmgate._record import CallRecord, Score, Usage
from fmgate._report import markdown, summarize, write_report
from fmgate._report.render import rich_table
from fmgate._tags import ROLE, WARMUP
from tests.report import T0, build_records, build_scores


def record(n: int, alias: str, items: int, *, warmup: bool = False) -> CallRecord:
    tags = {ROLE: "candidate", **({WARMUP: "true"} if warmup else {})}
    return CallRecord(
        id=f"{alias}-{n}",
        started_at=T0 + timedelta(seconds=n),
        alias=alias,
        backend="fake",
        model_id=alias,
        distribution="local" if alias == "fasttext" else "api",
        operation="classify",
        usage=Usage(items=items),
        tags=tags,
    )


def score(rec: CallRecord, scorer: str, rows: list[Prediction]) -> Score:
    right = sum(r.correct for r in rows) / len(rows)
    return Score(rec.id, scorer, right, T0, detail=predictions_detail(rows))


P = Prediction
# fasttext: a warm-up call, then two batches (3 and 2 texts), 4 of 5 right: per call 2/3 and 1
FT_BATCHES = [
    [P("en-1", "en", "en"), P("ca-1", "ca", "es"), P("es-1", "es", "es")],
    [P("en-2", "en", "en"), P("ca-2", "ca", "ca")],
]
# api: one text per call, 3 of 5 right, never answering ca
API_ROWS = [P("en-1", "en", "en"), P("ca-1", "ca", "es"), P("es-1", "es", "es")]
API_ROWS += [P("en-2", "en", "en"), P("ca-2", "ca", None)]


def run(scorer: str) -> tuple[list[CallRecord], list[Score]]:
    warm = record(0, "fasttext", 1, warmup=True)
    batches = [record(1 + i, "fasttext", len(b)) for i, b in enumerate(FT_BATCHES)]
    singles = [record(10 + i, "api", 1) for i in range(len(API_ROWS))]
    scores = [score(r, scorer, b) for r, b in zip(batches, FT_BATCHES, strict=True)]
    scores += [score(r, scorer, [row]) for r, row in zip(singles, API_ROWS, strict=True)]
    scores.append(score(warm, scorer, [P("x", "en", "fr")]))  # graded by mistake: left out
    return [warm, *batches, *singles], scores


def test_accuracy_is_over_texts_not_calls() -> None:
    fasttext, api = summarize(*run("accuracy"))
    assert fasttext.accuracy == pytest.approx(4 / 5)  # not the mean of the calls' (2/3 + 1) / 2
    assert (fasttext.quality, fasttext.quality_scorer, fasttext.scored) == (
        fasttext.accuracy,
        "accuracy",
        5,
    )
    # en: TP 2 -> 1; ca: TP 1, FN 1 -> 2/3; es: TP 1, FP 1 -> 2/3
    assert fasttext.macro_f1 == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert api.accuracy == pytest.approx(3 / 5) and api.scored == 5
    # en 1; ca: FN 2 -> 0 (never predicted); es: TP 1, FP 1 -> 2/3
    assert api.macro_f1 == pytest.approx((1 + 0 + 2 / 3) / 3)


def test_the_macro_f1_scorer_makes_it_the_quality_column() -> None:
    fasttext, api = summarize(*run("macro_f1"))
    assert fasttext.quality == fasttext.macro_f1 and fasttext.quality_scorer == "macro_f1"
    assert api.quality == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert fasttext.accuracy == pytest.approx(4 / 5)


def test_the_report_shows_a_classification_table_only_for_classification_runs(
    tmp_path: Path,
) -> None:
    summaries = summarize(*run("accuracy"))
    page = markdown(summaries, title="langid")
    assert "## Classification" in page
    assert "| fasttext | 0.800 | 0.778 | 5 |" in page
    assert "| api | 0.600 | 0.556 | 5 |" in page
    written = write_report(tmp_path, *run("accuracy"), title="langid", formats=("html", "csv"))
    assert "<th>macro-F1</th>" in written["html"].read_text(encoding="utf-8")
    assert "macro_f1" in written["csv"].read_text(encoding="utf-8").splitlines()[0]
    chat = build_records()
    assert "Classification" not in markdown(summarize(chat, build_scores(chat)), title="chat")
    assert all(s.accuracy is None and s.macro_f1 is None for s in summarize(chat))


def test_the_terminal_shows_accuracy_and_macro_f1() -> None:
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(rich_table(summarize(*run("accuracy"))))
    text = console.export_text()
    assert "macro-F1" in text and "0.778" in text and "0.800" in text
