"""Scorers of structure: ``json_schema`` (the reply validated against the row's schema, and equals
its ``expected`` value) and ``tool_call`` (the model called the expected tool with the expected
arguments).

Both grade the call's outcome (:class:`~.grading.GradesResponses`): validity is read from the
record (``record.output.valid``, set where the model's reply was checked), the value from
``Response.parsed``, the calls from ``Response.tool_calls``. A reply that did not validate
(:class:`fmgate.OutputValidationError`) is graded 0, never left out: a wrong shape is a quality
failure. A grade is all or nothing: no partial credit for the right tool with wrong arguments, or
for an object with one field of two right (``detail`` says what differed).

Values compare as JSON: numbers within :data:`REL_TOL` (relative; a rounded 1.609 km for a mile
is right), ``true`` is not ``1``, strings exactly once surrounding spaces are stripped (``mm`` and
``Mm`` differ), objects key by key with no key missing or extra, lists item by item.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import FmgateError, InvalidRequestError, OutputValidationError
from .._tools import to_output
from .._types import Response
from .grading import ScoreResult
from .prompts import PromptItem

__all__ = ["REL_TOL", "JsonSchemaScorer", "ToolCallScorer", "same_json"]

REL_TOL = 1e-3  # numbers within 0.1% of the expected one are equal
_SHOWN = 120  # characters of a value in a detail


def same_json(got: Any, expected: Any, rel_tol: float = REL_TOL) -> bool:
    """Whether two JSON values are equal, numbers within ``rel_tol`` (see the module docstring)."""
    if isinstance(got, bool) or isinstance(expected, bool):
        return type(got) is type(expected) and got == expected
    if isinstance(got, int | float) and isinstance(expected, int | float):
        return math.isclose(got, expected, rel_tol=rel_tol, abs_tol=1e-9)
    if isinstance(got, str) and isinstance(expected, str):
        return got.strip() == expected.strip()
    if isinstance(got, Mapping) and isinstance(expected, Mapping):
        return set(got) == set(expected) and all(
            same_json(got[k], expected[k], rel_tol) for k in expected
        )
    if isinstance(got, list | tuple) and isinstance(expected, list | tuple):
        return len(got) == len(expected) and all(
            same_json(g, e, rel_tol) for g, e in zip(got, expected, strict=True)
        )
    return bool(got == expected)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


class JsonSchemaScorer:
    """1 when the reply validated against the row's ``schema`` and, where the row has an
    ``expected`` value, the parsed reply equals it; 0 otherwise. Rows without a schema: None."""

    name = "json_schema"

    def __init__(self, rel_tol: float = REL_TOL) -> None:
        self.rel_tol = rel_tol

    def check(self, items: Sequence[PromptItem]) -> None:
        if not any(item.schema is not None for item in items):
            raise InvalidRequestError(
                "The json_schema scorer grades rows with a 'schema' (such as the bundled units "
                "set); none of these rows has one."
            )

    def score_response(
        self, item: PromptItem, outcome: Response | OutputValidationError
    ) -> ScoreResult:
        if item.schema is None:
            return _NO_SCHEMA
        if isinstance(outcome, OutputValidationError):
            return ScoreResult(0.0, str(outcome)[:300])
        if outcome.record.output.valid is not True:
            return ScoreResult(0.0, _unchecked(outcome))
        return self._compare(item, outcome.parsed)

    def score(self, item: PromptItem, answer: str) -> ScoreResult:
        """The text alone (a stored reply): validated against the schema here."""
        if item.schema is None:
            return _NO_SCHEMA
        spec = to_output(item.schema)
        assert spec is not None
        try:
            value = spec.parse(answer)
        except FmgateError as exc:
            return ScoreResult(0.0, str(exc)[:300])
        return self._compare(item, value)

    def _compare(self, item: PromptItem, value: Any) -> ScoreResult:
        if item.expected_output is None or same_json(value, item.expected_output, self.rel_tol):
            return ScoreResult(1.0)
        detail = f"valid, but {_shown(value)} is not the expected {_shown(item.expected_output)}"
        return ScoreResult(0.0, detail)


_NO_SCHEMA = ScoreResult(None, "the item has no schema")


def _unchecked(response: Response) -> str:
    """Why a reply to a row with a schema was never validated."""
    if response.tool_calls:
        names = ", ".join(call.name for call in response.tool_calls)
        return f"no structured reply: the model called {names} instead"
    if response.record.output.schema is None:
        return "the call did not ask for structured output (output=)"
    return f"the reply was not checked against the schema ({response.finish_reason})"


class ToolCallScorer:
    """1 when the model made exactly one tool call, to the row's ``expected_tool``, with its
    ``expected_arguments`` (when the row gives them); 0 otherwise, a plain answer included.
    Rows without an ``expected_tool``: None. No partial credit (the right tool with wrong
    arguments is 0; ``detail`` says which part was wrong)."""

    name = "tool_call"

    def __init__(self, rel_tol: float = REL_TOL) -> None:
        self.rel_tol = rel_tol

    def check(self, items: Sequence[PromptItem]) -> None:
        if not any(item.expected_tool is not None for item in items):
            raise InvalidRequestError(
                "The tool_call scorer grades rows with 'tools' and an 'expected_tool' (such as "
                "the bundled tools set); none of these rows has one."
            )

    def score_response(
        self, item: PromptItem, outcome: Response | OutputValidationError
    ) -> ScoreResult:
        if item.expected_tool is None:
            return _NO_TOOL
        if isinstance(outcome, OutputValidationError):
            return ScoreResult(0.0, f"no tool call: {str(outcome)[:200]}")
        calls = outcome.tool_calls
        if len(calls) != 1:
            names = ", ".join(call.name for call in calls) or "none"
            detail = f"{len(calls)} tool calls ({names}); expected one, to {item.expected_tool}"
            return ScoreResult(0.0, detail)
        (call,) = calls
        if call.name != item.expected_tool:
            return ScoreResult(0.0, f"called {call.name}, not {item.expected_tool}")
        expected = item.expected_arguments
        if expected is not None and not same_json(call.arguments, expected, self.rel_tol):
            detail = f"{call.name} with {_shown(call.arguments)}, not {_shown(expected)}"
            return ScoreResult(0.0, detail)
        return ScoreResult(1.0)

    def score(self, item: PromptItem, answer: str) -> ScoreResult:
        """A text alone holds no tool calls: the grade needs the Response."""
        if item.expected_tool is None:
            return _NO_TOOL
        return ScoreResult(None, "tool calls are graded from the response, not its text")


_NO_TOOL = ScoreResult(None, "the item has no expected_tool")
