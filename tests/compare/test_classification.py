"""Grading a classification set: accuracy and macro-F1 against values computed by hand."""

from __future__ import annotations

import pytest

from fmgate import InvalidRequestError
from fmgate._compare import (
    ClassificationScorer,
    Prediction,
    PromptItem,
    class_metrics,
    get_scorer,
    load_prompts,
)
from fmgate._compare.classification import macro_f1, predictions_detail, read_predictions

# true -> predicted. c is never predicted; "zz" is outside the set; None: no usable label.
ROWS = [
    Prediction("1", "a", "a"),
    Prediction("2", "a", "a"),
    Prediction("3", "a", "b"),
    Prediction("4", "b", "b"),
    Prediction("5", "c", "a"),
    Prediction("6", "c", None),
    Prediction("7", "a", "zz"),
]


def test_macro_f1_by_hand_with_a_class_never_predicted() -> None:
    # F1 = 2TP / (2TP + FP + FN) per true label:
    # a: TP 2 (rows 1, 2), FP 1 (row 5), FN 2 (rows 3, 7) -> 4/7
    # b: TP 1 (row 4), FP 1 (row 3), FN 0 -> 2/3
    # c: TP 0, FP 0, FN 2 (rows 5, 6): never predicted -> 0, not undefined
    # "zz" is no class of its own: the set's labels are the classes.
    assert macro_f1(ROWS) == pytest.approx((4 / 7 + 2 / 3 + 0) / 3)
    assert macro_f1([]) is None


def test_macro_f1_is_one_when_every_row_is_right_and_labels_compare_case_folded() -> None:
    rows = [Prediction("1", "positive", "POSITIVE"), Prediction("2", "negative", "negative")]
    assert macro_f1(rows) == 1.0 and all(r.correct for r in rows)


def test_macro_f1_weighs_a_rare_label_as_much_as_a_common_one() -> None:
    # 9 of 10 right, all on the common label: accuracy 0.9, but the rare label scores 0
    rows = [Prediction(str(i), "en", "en") for i in range(9)] + [Prediction("9", "ca", "en")]
    metrics = class_metrics([predictions_detail(rows)])
    assert metrics.accuracy == pytest.approx(0.9)
    assert metrics.macro_f1 == pytest.approx((2 * 9 / (2 * 9 + 1) + 0) / 2)


def test_metrics_pool_the_rows_of_every_detail_and_skip_other_details() -> None:
    details = [predictions_detail(ROWS[:3]), predictions_detail(ROWS[3:]), "judge: 7/10", None]
    metrics = class_metrics(details)
    assert metrics.rows == 7
    assert metrics.accuracy == pytest.approx(3 / 7)
    assert metrics.macro_f1 == pytest.approx(macro_f1(ROWS))
    assert class_metrics(["not json", '{"predictions": [["1", "a"]]}']).rows == 0


def test_a_detail_round_trips_with_any_text() -> None:
    rows = [Prediction("ca-09", "ca", "pt"), Prediction("x", 'é"|,', None)]
    assert read_predictions(predictions_detail(rows)) == rows


def test_the_scorer_grades_a_call_of_one_text_or_of_a_batch() -> None:
    scorer = get_scorer("accuracy")
    assert isinstance(scorer, ClassificationScorer) and scorer.name == "accuracy"
    fr, en = PromptItem("a", "Il pleut.", label="fr"), PromptItem("b", "It rains.", label="en")
    one = scorer.score(fr, "fr")
    assert one.value == 1.0 and read_predictions(one.detail) == [Prediction("a", "fr", "fr")]
    assert scorer.score(en, "de").value == 0.0
    batch = scorer.grade([(fr, "fr"), (en, None)])
    assert batch.value == 0.5
    assert read_predictions(batch.detail) == [
        Prediction("a", "fr", "fr"),
        Prediction("b", "en", None),
    ]
    assert get_scorer("macro-F1").name == "macro_f1" == get_scorer(" macro_f1 ").name


def test_the_scorer_refuses_a_set_without_labels_before_any_call() -> None:
    scorer = get_scorer("macro_f1")
    assert isinstance(scorer, ClassificationScorer)
    scorer.check(load_prompts("langid"))
    with pytest.raises(InvalidRequestError, match="classification sets.*use exact, contains"):
        scorer.check(load_prompts("capitals"))


def test_an_unknown_scorer_lists_the_classification_ones() -> None:
    with pytest.raises(InvalidRequestError, match="accuracy, macro_f1 or judge"):
        get_scorer("f1")
