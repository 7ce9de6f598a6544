"""How ``fmgate compare`` runs a classification set: which models classify how, in what calls.

A model whose backend serves ``classify`` (fastText, a BERT classifier) uses its own labels; a chat
model classifies zero-shot, choosing among the set's labels (``labels=``). Local models classify
a batch of texts per call (one record each); API and self-hosted models one text per call, run
concurrently, as their chat calls are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import InvalidRequestError
from .._tags import PROMPT, REPEAT, ROLE, RUN, WARMUP
from .prompts import PromptItem, label_set

if TYPE_CHECKING:
    from .._model import Model
    from .._types import Classifications

__all__ = [
    "CLASSIFY_BATCH",
    "ClassifyCall",
    "check_classifiers",
    "classify_batch",
    "classify_calls",
    "classify_labels",
    "planned_classify_calls",
    "top_labels",
]

CLASSIFY_BATCH = 32  # texts per call for a local classifier: one record per batch


@dataclass(frozen=True, slots=True)
class ClassifyCall:
    """The texts one classify call sends: one for an API model or a warm-up, a batch locally."""

    items: tuple[PromptItem, ...]
    repeat: int
    warmup: bool = False

    def tags(self, run_id: str) -> dict[str, str]:
        tags = {RUN: run_id, REPEAT: str(self.repeat), ROLE: "candidate"}
        if len(self.items) == 1:  # a batch's record covers many prompts: its score names them
            tags[PROMPT] = self.items[0].id
        return {**tags, WARMUP: "true"} if self.warmup else tags


def classifies_natively(model: Model) -> bool:
    return "classify" in model.tasks


def classify_labels(model: Model, items: Sequence[PromptItem]) -> list[str] | None:
    """``labels=`` for ``model.classify``: none for a classifier (its own labels), the set's
    labels for a chat model classifying zero-shot."""
    return None if classifies_natively(model) else label_set(items)


def check_classifiers(models: Sequence[Model]) -> None:
    """Refuse, before any call, a model that can neither classify nor chat (an encoder)."""
    for model in models:
        tasks = model.tasks
        if "classify" not in tasks and "chat" not in tasks:
            raise InvalidRequestError(
                f"{model.alias or model.spec} cannot classify the set's texts: its tasks are "
                f"{', '.join(sorted(tasks))}. Give a classifier or a chat model."
            )


def classify_batch(model: Model) -> int:
    """Texts per call: one for API and self-hosted models (they run concurrently); locally,
    :data:`CLASSIFY_BATCH` for a classifier, and one generation batch for a chat model, since a
    zero-shot call with an answer that names no label fails as a whole."""
    if model.backend.distribution != "local":
        return 1
    if classifies_natively(model):
        return max(CLASSIFY_BATCH, model.backend.default_batch_size)
    return max(1, model.backend.default_batch_size)


def classify_calls(
    items: Sequence[PromptItem], repeat: int, warmup: int, size: int
) -> tuple[list[ClassifyCall], list[ClassifyCall]]:
    """The warm-up calls (one text each), then each pass over the set in calls of ``size``
    texts; a batch never spans two passes, so its ``repeat`` tag is its own."""
    n = len(items)
    warm = [ClassifyCall((items[i % n],), i // n, warmup=True) for i in range(warmup)]
    measured = [
        ClassifyCall(tuple(items[start : start + size]), r)
        for r in range(repeat)
        for start in range(0, n, size)
    ]
    return warm, measured


def planned_classify_calls(model: Model, n_items: int, repeat: int, warmup: int) -> int:
    return warmup + repeat * math.ceil(n_items / classify_batch(model))


def top_labels(outcome: Classifications) -> list[str | None]:
    """Each text's top-1 label; ``None`` where the model gave none (an answer that named no
    label: a wrong prediction, not an ungraded one)."""
    return [ranked[0][0] if ranked else None for ranked in outcome.results]
