"""What a scorer is: a grade (:class:`ScoreResult`) and the protocols the runner relies on.

Every scorer grades an answer's text (:class:`Scorer`); a scorer that needs more than the text
(the parsed structured output, the tool calls, whether the reply validated) grades the whole
outcome of the call as well (:class:`GradesResponses`), a reply that failed validation included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .._errors import OutputValidationError
    from .._types import Response
    from .prompts import PromptItem

__all__ = ["ChecksItems", "GradesResponses", "ScoreResult", "Scorer"]


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """A grade: ``value`` in [0, 1], or None when it could not be graded (``detail`` says why)."""

    value: float | None
    detail: str | None = None
    judge_record_id: str | None = None


class Scorer(Protocol):
    """Grades one answer; ``name`` is stored with each score (``exact``, ``judge:<model>``)."""

    @property
    def name(self) -> str: ...

    def score(self, item: PromptItem, answer: str) -> ScoreResult: ...


@runtime_checkable
class ChecksItems(Protocol):
    """A scorer that can reject the prompt set before any model is called (a bad regex)."""

    def check(self, items: Sequence[PromptItem]) -> None: ...


@runtime_checkable
class GradesResponses(Protocol):
    """A scorer that grades the call's outcome, not only its text: the Response (its ``parsed``
    value, ``tool_calls`` and record), or the OutputValidationError of a reply that did not
    validate, which such a scorer grades (usually 0) rather than leaves out."""

    def score_response(
        self, item: PromptItem, outcome: Response | OutputValidationError
    ) -> ScoreResult: ...
