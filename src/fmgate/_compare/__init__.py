"""The engine behind ``fmgate compare``: prompt sets, scorers, and the run over several models.

items = load_prompts("capitals")
run = run_compare([load("openai:gpt-4o-mini"), load("hf:Qwen/Qwen2.5-0.5B-Instruct")], items,
                  repeat=3, scorer=get_scorer("contains"))
run.records, run.scores, run.errors

A set whose rows have a ``label`` (the bundled ``langid``) is classified instead, and graded with
``get_scorer("accuracy")`` or ``get_scorer("macro_f1")``; :func:`class_metrics` computes both
from the scores.

An image set (a folder, a CSV of ``path,label`` or ``path,label,x0,y0,x1,y1`` rows, or the bundled
``skimage-photos`` and ``skimage-objects``; :func:`load_images`, or :func:`load_set` for either
kind) is classified or searched for objects, graded ``top1``, ``top5`` or ``recall@0.5``;
:func:`image_metrics` pools them.

Rows may ask for structure (a ``schema`` for the reply, ``tools`` to call; the bundled ``units``
and ``tools`` sets), graded with ``get_scorer("json_schema")`` or ``get_scorer("tool_call")``.
"""

from .classification import CLASSIFICATION_SCORERS, ClassMetrics, Prediction, class_metrics
from .image_scorers import (
    IMAGE_SCORERS,
    BoxRecallScorer,
    ImageMetrics,
    TopKScorer,
    image_metrics,
    iou,
    matched_boxes,
    same_label,
)
from .images import (
    ImageItem,
    TruthBox,
    bundled_image_sets,
    image_items,
    image_task,
    load_images,
    load_set,
)
from .prompts import PromptItem, bundled_prompt_sets, is_classification, label_set, load_prompts
from .runner import (
    DEFAULT_CONCURRENCY,
    CompareRun,
    check_scorer,
    embeds_only,
    new_run_id,
    planned_calls,
    run_compare,
)
from .scorers import (
    RETRIEVAL,
    ChecksItems,
    ClassificationScorer,
    GradesResponses,
    JsonSchemaScorer,
    JudgeScorer,
    RetrievalIndex,
    Scorer,
    ScoreResult,
    ToolCallScorer,
    get_scorer,
    normalise,
    parse_judge_score,
)

__all__ = [
    "CLASSIFICATION_SCORERS",
    "DEFAULT_CONCURRENCY",
    "IMAGE_SCORERS",
    "RETRIEVAL",
    "BoxRecallScorer",
    "ChecksItems",
    "ClassMetrics",
    "ClassificationScorer",
    "CompareRun",
    "GradesResponses",
    "ImageItem",
    "ImageMetrics",
    "JsonSchemaScorer",
    "JudgeScorer",
    "Prediction",
    "PromptItem",
    "RetrievalIndex",
    "ScoreResult",
    "Scorer",
    "ToolCallScorer",
    "TopKScorer",
    "TruthBox",
    "bundled_image_sets",
    "bundled_prompt_sets",
    "check_scorer",
    "class_metrics",
    "embeds_only",
    "get_scorer",
    "image_items",
    "image_metrics",
    "image_task",
    "iou",
    "is_classification",
    "label_set",
    "load_images",
    "load_prompts",
    "load_set",
    "matched_boxes",
    "new_run_id",
    "normalise",
    "parse_judge_score",
    "planned_calls",
    "run_compare",
    "same_label",
]
