"""Grading image sets: ``top1`` and ``top5`` for classification, ``recall@0.5`` for detection.

A call may carry many images (a local model classifies a batch in one call, one record), and a
record has one score per scorer. So, as for text classification, a record's score is its share
over its own images (or boxes), and its ``detail`` keeps every image's row as JSON: the report
pools the rows of all of a model's records, so top-1, top-5, recall and precision are over
images and boxes, not averaged per call. Both ``top1`` and ``top5`` keep the same rows (each
image's five best labels), so the report shows both whichever graded.

Labels compare case-folded, with underscores as spaces; a predicted label is right when it, or
one of its comma-separated synonyms (ImageNet's ``tabby, tabby cat``), equals one of the set
label's ``|``-separated alternatives.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import InvalidRequestError
from .grading import ScoreResult
from .images import ImageItem, alternatives, image_items, image_task

if TYPE_CHECKING:
    from .._types import Detection
    from .images import Box, TruthBox

__all__ = [
    "IMAGE_SCORERS",
    "IOU_THRESHOLD",
    "TOP_K",
    "BoxRecallScorer",
    "ImageMetrics",
    "TopKScorer",
    "image_metrics",
    "image_scorer",
    "iou",
    "matched_boxes",
    "same_label",
]

TOP_K = 5  # labels asked of a classifier per image: what top5 needs
IOU_THRESHOLD = 0.5
RECALL = "recall@0.5"
IMAGE_SCORERS = ("top1", "top5", RECALL)
_IMAGES, _BOXES = "images", "boxes"


def _norm(label: str) -> str:
    return " ".join(label.replace("_", " ").casefold().split())


def same_label(predicted: str, label: str) -> bool:
    """Whether ``predicted`` names the set's ``label``: equal to one of its ``|`` alternatives
    once case-folded, whole or by one of its own comma-separated synonyms."""
    wanted = {_norm(a) for a in alternatives(label)}
    names = {_norm(predicted), *(_norm(part) for part in predicted.split(","))}
    return bool(wanted & (names - {""}))


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when they do not touch)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matched_boxes(
    truths: Sequence[TruthBox], found: Sequence[Detection], threshold: float = IOU_THRESHOLD
) -> int:
    """How many true boxes a detection of the same label overlaps with IoU >= ``threshold``.

    Detections are taken best score first; each takes the unmatched true box it overlaps most,
    so a detection is used once and a true box matched once (a duplicate detection of one
    object does not count twice).
    """
    free = list(range(len(truths)))
    matched = 0
    for detection in sorted(found, key=lambda d: -d.score):
        fits = [
            (iou(truths[i].box, detection.box), i)
            for i in free
            if same_label(detection.label, truths[i].label)
        ]
        best = max(fits, default=(0.0, -1))
        if best[1] >= 0 and best[0] >= threshold:
            free.remove(best[1])
            matched += 1
    return matched


# -- one record's grade ---------------------------------------------------------------------------


class TopKScorer:
    """``top1`` or ``top5``: an image is right when the set's label is among the model's ``k``
    best labels. A zero-shot chat model names one label, so its top-5 is its top-1."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.name = f"top{k}"

    def check(self, items: Sequence[object]) -> None:
        _check(self.name, items, "classify")

    def score(self, item: object, answer: str) -> ScoreResult:
        return ScoreResult(None, f"{self.name} grades images, not answers")

    def grade(self, rows: Sequence[tuple[ImageItem, Sequence[str]]]) -> ScoreResult:
        """One record's images with their labels, best first (empty: the model gave none)."""
        if not rows or any(item.label is None for item, _ in rows):
            return ScoreResult(None, "an image has no label to check the prediction against")
        kept = [[item.id, item.label, list(labels)[:TOP_K]] for item, labels in rows]
        right = sum(_within(labels, item.label or "", self.k) for item, labels in rows)
        return ScoreResult(right / len(rows), json.dumps({_IMAGES: kept}, ensure_ascii=False))


def _within(labels: Sequence[str], label: str, k: int) -> bool:
    return any(same_label(predicted, label) for predicted in list(labels)[:k])


class BoxRecallScorer:
    """``recall@0.5``: the share of true boxes found by a detection of the same label with IoU
    at least 0.5. The detail keeps, per image, the boxes expected, matched and detected, so the
    report computes precision too."""

    name = RECALL

    def check(self, items: Sequence[object]) -> None:
        _check(self.name, items, "detect")

    def score(self, item: object, answer: str) -> ScoreResult:
        return ScoreResult(None, f"{self.name} grades detections, not answers")

    def grade(self, rows: Sequence[tuple[ImageItem, Sequence[Detection]]]) -> ScoreResult:
        if not rows or any(not item.boxes for item, _ in rows):
            return ScoreResult(None, "an image has no boxes to check the detections against")
        counts = [
            (len(item.boxes), matched_boxes(item.boxes, found), len(found)) for item, found in rows
        ]
        kept = [[item.id, *count] for (item, _), count in zip(rows, counts, strict=True)]
        matched = sum(count[1] for count in counts)
        truths = sum(count[0] for count in counts)
        return ScoreResult(matched / truths, json.dumps({_BOXES: kept}, ensure_ascii=False))


def _check(name: str, items: Sequence[object], task: str) -> None:
    images = image_items(items)
    if images is None:
        raise InvalidRequestError(
            f"The {name} scorer grades image sets (a folder, or a CSV with path and label "
            "columns, such as the bundled skimage-photos); for prompts, use exact, contains, "
            "regex or judge:<model>."
        )
    if image_task(images) != task:
        right = "recall@0.5" if task == "classify" else "top1 or top5"
        kind = "boxes (a detection set)" if task == "classify" else "labels only (no boxes)"
        raise InvalidRequestError(
            f"The image set's rows have {kind}: grade it with {right}, not {name}."
        )


ImageScorer = TopKScorer | BoxRecallScorer


def image_scorer(name: str) -> ImageScorer:
    """The scorer named ``top1``, ``top5`` or ``recall@0.5``."""
    if name == RECALL:
        return BoxRecallScorer()
    return TopKScorer(int(name.removeprefix("top")))


# -- a model's metrics over all its records -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageMetrics:
    """A model's quality over every image graded: top-1 and top-5 (classification); recall and
    precision over the boxes (detection). ``None`` where nothing was graded that way."""

    images: int
    top1: float | None
    top5: float | None
    boxes: int
    recall: float | None
    precision: float | None


def image_metrics(details: Iterable[str | None]) -> ImageMetrics:
    """The metrics over the rows of every score detail given (other details are skipped)."""
    guesses: list[list[object]] = []
    boxes: list[list[object]] = []
    for detail in details:
        try:
            parsed = json.loads(detail or "")
        except ValueError:
            continue
        if isinstance(parsed, dict):
            guesses += _rows(parsed.get(_IMAGES), 3)
            boxes += _rows(parsed.get(_BOXES), 4)
    top1 = [_within(_strs(r[2]), str(r[1]), 1) for r in guesses]
    top5 = [_within(_strs(r[2]), str(r[1]), TOP_K) for r in guesses]
    truths, matched, found = (sum(_int(r[i]) for r in boxes) for i in (1, 2, 3))
    return ImageMetrics(
        images=len(guesses) + len(boxes),
        top1=_share(sum(top1), len(top1)),
        top5=_share(sum(top5), len(top5)),
        boxes=truths,
        recall=_share(matched, truths),
        precision=_share(matched, found),
    )


def _rows(value: object, width: int) -> list[list[object]]:
    if not isinstance(value, list):
        return []
    return [row for row in value if isinstance(row, list) and len(row) == width]


def _strs(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
