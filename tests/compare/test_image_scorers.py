"""Grading image sets: IoU, box matching, recall and precision, top-1 and top-5, worked by hand."""

from __future__ import annotations

import json

import pytest

from fmgate._compare import (
    BoxRecallScorer,
    ImageItem,
    TopKScorer,
    TruthBox,
    get_scorer,
    image_metrics,
    iou,
    matched_boxes,
    same_label,
)
from fmgate._types import Detection

CAT = ImageItem("cat", "cat.png", "tabby|tiger cat|Egyptian cat")
CUP = ImageItem("cup", "cup.png", "espresso")


def test_iou_worked_by_hand() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    # overlap 5x10 = 50; union 100 + 100 - 50 = 150
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    # one inside the other: 4 / 100
    assert iou((0, 0, 10, 10), (2, 2, 4, 4)) == pytest.approx(0.04)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges share no area
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_labels_match_case_folded_by_alternative_or_by_synonym() -> None:
    assert same_label("Egyptian cat", CAT.label or "")
    assert same_label("TIGER_CAT", CAT.label or "")
    assert same_label(
        "tabby, tabby cat", CAT.label or ""
    )  # ImageNet's name, synonyms after a comma
    assert not same_label("Persian cat", CAT.label or "")
    assert not same_label("cat", CAT.label or "")  # no alternative says just "cat"
    assert not same_label("", "cat")


def box(label: str, score: float, x0: float, y0: float, x1: float, y1: float) -> Detection:
    return Detection(label, score, (x0, y0, x1, y1))


def test_each_detection_is_used_once_and_each_box_matched_once() -> None:
    truths = (TruthBox("cat", (0, 0, 10, 10)), TruthBox("cat", (20, 0, 30, 10)))
    twice = [box("cat", 0.9, 0, 0, 10, 10), box("cat", 0.8, 0, 0, 10, 9)]
    assert matched_boxes(truths, twice) == 1  # a duplicate of one object finds no second one
    both = [*twice, box("cat", 0.7, 21, 0, 30, 10)]
    assert matched_boxes(truths, both) == 2
    assert matched_boxes(truths, [box("dog", 0.9, 0, 0, 10, 10)]) == 0  # the label must match
    # IoU 50/150 = 0.33 is under the bar; 0.5 exactly is enough
    assert matched_boxes(truths, [box("cat", 0.9, 5, 0, 15, 10)]) == 0
    assert matched_boxes(truths[:1], [box("cat", 0.9, 0, 0, 10, 5)]) == 1


def test_the_best_scoring_detection_takes_the_box_it_overlaps_most() -> None:
    truths = (TruthBox("cup", (0, 0, 10, 10)), TruthBox("cup", (4, 0, 14, 10)))
    # the best detection overlaps the second box more (IoU 1) than the first (0.43)
    found = [box("cup", 0.5, 0, 0, 10, 10), box("cup", 0.9, 4, 0, 14, 10)]
    assert matched_boxes(truths, found) == 2


def test_recall_over_boxes_and_precision_over_detections() -> None:
    scene = ImageItem(
        "scene",
        "s.png",
        boxes=(TruthBox("cup", (0, 0, 10, 10)), TruthBox("spoon|fork", (20, 0, 30, 10))),
    )
    alone = ImageItem("alone", "a.png", boxes=(TruthBox("cat", (0, 0, 50, 50)),))
    found = [box("fork", 0.8, 20, 0, 30, 10), box("bowl", 0.7, 0, 0, 10, 10)]
    result = BoxRecallScorer().grade([(scene, found), (alone, [])])
    assert result.value == pytest.approx(1 / 3)  # one of three true boxes found
    assert json.loads(result.detail or "") == {"boxes": [["scene", 2, 1, 2], ["alone", 1, 0, 0]]}
    metrics = image_metrics([result.detail, "not json", None])
    assert (metrics.images, metrics.boxes) == (2, 3)
    assert metrics.recall == pytest.approx(1 / 3) and metrics.precision == pytest.approx(1 / 2)
    assert metrics.top1 is None and metrics.top5 is None


def test_top1_and_top5_from_the_same_rows() -> None:
    ranked_cat = ["Persian cat", "lynx", "tiger cat", "tabby, tabby cat", "plate"]
    ranked_cup = ["espresso", "cup", "coffee mug", "plate", "spoon"]
    top1 = TopKScorer(1).grade([(CAT, ranked_cat), (CUP, ranked_cup)])
    top5 = TopKScorer(5).grade([(CAT, ranked_cat), (CUP, ranked_cup)])
    assert (top1.value, top5.value) == (0.5, 1.0)
    assert top1.detail == top5.detail  # the report computes both from either
    metrics = image_metrics([top1.detail])
    assert (metrics.images, metrics.top1, metrics.top5) == (2, 0.5, 1.0)
    assert metrics.recall is None


def test_a_label_sixth_in_line_is_not_in_the_top_five() -> None:
    ranked = ["a", "b", "c", "d", "e", "tabby"]
    assert TopKScorer(5).grade([(CAT, ranked)]).value == 0.0
    assert TopKScorer(5).grade([(CAT, [])]).value == 0.0  # no label given: wrong, not ungraded


def test_a_call_is_not_graded_against_nothing() -> None:
    unlabelled = ImageItem("x", "x.png")
    assert TopKScorer(1).grade([(unlabelled, ["cat"])]).value is None
    assert BoxRecallScorer().grade([(unlabelled, [])]).value is None


@pytest.mark.parametrize(
    ("spec", "name"),
    [("top1", "top1"), ("top-5", "top5"), ("TOP_1", "top1"), ("recall@0.5", "recall@0.5")],
)
def test_get_scorer_knows_the_image_scorers(spec: str, name: str) -> None:
    assert get_scorer(spec).name == name
