"""Grading classification: each row's predicted label against its true one, and the set's metrics.

A classify call may carry many rows (a local model classifies a batch in one call, one record),
and a record has one score per scorer. So a record's score is the share of its rows classified
right (1 or 0 for a call of one text), and its ``detail`` keeps every row's id, true label and
prediction as JSON: the report pools the rows of all of a model's records to compute accuracy
and macro-F1 over texts, not over calls. The record itself keeps no text, only this.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CLASSIFICATION_SCORERS",
    "ClassMetrics",
    "Prediction",
    "class_metrics",
    "macro_f1",
    "predictions_detail",
    "read_predictions",
]

CLASSIFICATION_SCORERS = ("accuracy", "macro_f1")
_KEY = "predictions"


@dataclass(frozen=True, slots=True)
class Prediction:
    """One classified text: its prompt ``id``, its true ``label``, and the model's top-1
    ``predicted`` label (``None``: the model gave no usable label, which counts as wrong)."""

    id: str
    label: str
    predicted: str | None

    @property
    def correct(self) -> bool:
        return self.predicted is not None and _same(self.predicted) == _same(self.label)


def _same(label: str) -> str:
    """Labels compare case-folded: a classifier's ``POSITIVE`` is the set's ``positive``."""
    return label.strip().casefold()


def predictions_detail(rows: Sequence[Prediction]) -> str:
    """The rows as a score's ``detail``: ``{"predictions": [[id, label, predicted], ...]}``."""
    return json.dumps({_KEY: [[r.id, r.label, r.predicted] for r in rows]}, ensure_ascii=False)


def read_predictions(detail: str | None) -> list[Prediction] | None:
    """The rows a :func:`predictions_detail` holds; ``None`` for any other detail."""
    try:
        rows = json.loads(detail or "")[_KEY]
        return [
            Prediction(str(i), str(label), None if p is None else str(p)) for i, label, p in rows
        ]
    except (ValueError, TypeError, KeyError):  # not ours: a message, or a damaged row
        return None


def macro_f1(rows: Sequence[Prediction]) -> float | None:
    """The mean F1 over the true labels present in ``rows`` (``None`` without rows).

    Per label, F1 = 2TP / (2TP + FP + FN): a label never predicted scores 0, not "undefined". A
    prediction outside the true labels (lid.176 answering ``gl`` in a set without Galician) is
    a miss for the row's own label but adds no class of its own: the set defines the classes.
    """
    classes = {_same(r.label) for r in rows}
    if not classes:
        return None
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for row in rows:
        true = _same(row.label)
        if row.correct:
            tp[true] += 1
            continue
        fn[true] += 1
        if row.predicted is not None:
            fp[_same(row.predicted)] += 1
    scores = [2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) for c in classes]
    return sum(scores) / len(scores)


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    """A model's classification quality over all its graded rows."""

    accuracy: float | None
    macro_f1: float | None
    rows: int


def class_metrics(details: Iterable[str | None]) -> ClassMetrics:
    """Accuracy and macro-F1 over the rows of every score detail given (others are skipped)."""
    rows = [row for detail in details for row in read_predictions(detail) or []]
    accuracy = sum(r.correct for r in rows) / len(rows) if rows else None
    return ClassMetrics(accuracy, macro_f1(rows), len(rows))
