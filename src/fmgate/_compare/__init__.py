"""The engine behind ``fmgate compare``: prompt sets, scorers, and the run over several models.

items = load_prompts("capitals")
run = run_compare([load("openai:gpt-4o-mini"), load("hf:Qwen/Qwen2.5-0.5B-Instruct")], items,
                  repeat=3, scorer=get_scorer("contains"))
run.records, run.scores, run.errors

A set whose rows have a ``label`` (the bundled ``langid``) is classified instead, and graded with
``get_scorer("accuracy")`` or ``get_scorer("macro_f1")``; :func:`class_metrics` computes both
from the scores.

Rows may ask for structure (a ``schema`` for the reply, ``tools`` to call; the bundled ``units``
and ``tools`` sets), graded with ``get_scorer("json_schema")`` or ``get_scorer("tool_call")``.
"""

from .classification import CLASSIFICATION_SCORERS, ClassMetrics, Prediction, class_metrics
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
    "RETRIEVAL",
    "ChecksItems",
    "ClassMetrics",
    "ClassificationScorer",
    "CompareRun",
    "GradesResponses",
    "JsonSchemaScorer",
    "JudgeScorer",
    "Prediction",
    "PromptItem",
    "RetrievalIndex",
    "ScoreResult",
    "Scorer",
    "ToolCallScorer",
    "bundled_prompt_sets",
    "check_scorer",
    "class_metrics",
    "embeds_only",
    "get_scorer",
    "is_classification",
    "label_set",
    "load_prompts",
    "new_run_id",
    "normalise",
    "parse_judge_score",
    "planned_calls",
    "run_compare",
]
