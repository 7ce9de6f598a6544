"""The engine behind ``fmgate compare``: prompt sets, scorers, and the run over several models.

items = load_prompts("capitals")
run = run_compare([load("openai:gpt-4o-mini"), load("hf:Qwen/Qwen2.5-0.5B-Instruct")], items,
                  repeat=3, scorer=get_scorer("contains"))
run.records, run.scores, run.errors
"""

from .prompts import PromptItem, bundled_prompt_sets, load_prompts
from .runner import (
    DEFAULT_CONCURRENCY,
    CompareRun,
    embeds_only,
    new_run_id,
    planned_calls,
    run_compare,
)
from .scorers import (
    RETRIEVAL,
    ChecksItems,
    JudgeScorer,
    RetrievalIndex,
    Scorer,
    ScoreResult,
    get_scorer,
    normalise,
    parse_judge_score,
)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "RETRIEVAL",
    "ChecksItems",
    "CompareRun",
    "JudgeScorer",
    "PromptItem",
    "RetrievalIndex",
    "ScoreResult",
    "Scorer",
    "bundled_prompt_sets",
    "embeds_only",
    "get_scorer",
    "load_prompts",
    "new_run_id",
    "normalise",
    "parse_judge_score",
    "planned_calls",
    "run_compare",
]
