"""Scorers: how ``fmgate compare`` grades an answer against a prompt item, from 0 to 1.

``exact``, ``contains`` and ``regex`` check the item's ``expected`` answer; ``judge:<model>`` asks
another model to grade. An item without ``expected`` gets ``None`` from the scorers that need one,
never 0: "could not grade" must not read as "wrong". Encoders are graded by retrieval instead
(:class:`RetrievalIndex`). ``accuracy`` and ``macro_f1`` grade a classification set (rows with a
``label``): each row is right or wrong, and the report computes both metrics from the rows.
``json_schema`` and ``tool_call`` grade rows that ask for structure (a ``schema``, or ``tools``
with an ``expected_tool``; see :mod:`.structured_scorers`). ``top1``, ``top5`` and ``recall@0.5``
grade image sets (see :mod:`.image_scorers`).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import FmgateError, InvalidRequestError
from .._tags import PROMPT, ROLE, tagged
from .classification import CLASSIFICATION_SCORERS, Prediction, predictions_detail
from .grading import ChecksItems, GradesResponses, Scorer, ScoreResult
from .image_scorers import IMAGE_SCORERS, image_scorer
from .prompts import PromptItem, is_classification
from .structured_scorers import JsonSchemaScorer, ToolCallScorer

if TYPE_CHECKING:
    from .._model import Model

__all__ = [
    "RETRIEVAL",
    "ChecksItems",
    "ClassificationScorer",
    "GradesResponses",
    "JsonSchemaScorer",
    "JudgeScorer",
    "RetrievalIndex",
    "ScoreResult",
    "Scorer",
    "ToolCallScorer",
    "get_scorer",
    "normalise",
    "parse_judge_score",
]

RETRIEVAL = "retrieval@1"
_TRAILING = ".,;:!?…"  # a final full stop or "!" must not fail an exact match
_SCORE_LINE = re.compile(r"^\W*score[ \t*]*[:=][ \t*]*(\d+(?:\.\d+)?)", re.IGNORECASE | re.M)

JUDGE_SYSTEM = "You grade answers to questions strictly and fairly."
JUDGE_TEMPLATE = """\
Grade the candidate answer to the question below.

Question:
{question}

{reference}Candidate answer:
{answer}

Give a score from 0 (wrong, or no answer) to 10 (correct and complete). {against}
Reply with one or two sentences of reasoning, then a last line of the form:
SCORE: <integer from 0 to 10>"""


_NO_EXPECTED = ScoreResult(None, "the item has no expected answer")


def normalise(text: str) -> str:
    """Case-folded, whitespace collapsed, final ``.,;:!?`` dropped: ``" Paris. "`` -> ``paris``."""
    return " ".join(text.casefold().split()).rstrip(_TRAILING + " ")


class ExactScorer:
    """1 when the answer equals the expected one once both are normalised."""

    name = "exact"

    def score(self, item: PromptItem, answer: str) -> ScoreResult:
        if item.expected is None:
            return _NO_EXPECTED
        return ScoreResult(1.0 if normalise(answer) == normalise(item.expected) else 0.0)


class ContainsScorer:
    """1 when the normalised answer holds the normalised expected one as whole words.

    Whole words: the expected "4" must not be found inside "14" or "40".
    """

    name = "contains"

    def score(self, item: PromptItem, answer: str) -> ScoreResult:
        if item.expected is None:
            return _NO_EXPECTED
        expected = normalise(item.expected)
        if not expected:
            return ScoreResult(None, "the expected answer is empty once normalised")
        found = re.search(rf"(?<!\w){re.escape(expected)}(?!\w)", normalise(answer))
        return ScoreResult(1.0 if found else 0.0)


class RegexScorer:
    """1 when the item's ``expected`` pattern is found in the answer (``re.search``, as given:
    write ``(?i)`` for a case-insensitive pattern)."""

    name = "regex"

    def check(self, items: Sequence[PromptItem]) -> None:
        for item in items:
            if item.expected is not None:
                _pattern(item)

    def score(self, item: PromptItem, answer: str) -> ScoreResult:
        if item.expected is None:
            return _NO_EXPECTED
        return ScoreResult(1.0 if _pattern(item).search(answer) else 0.0)


def _pattern(item: PromptItem) -> re.Pattern[str]:
    assert item.expected is not None
    try:
        return re.compile(item.expected)  # re keeps its own cache of compiled patterns
    except re.error as exc:
        raise InvalidRequestError(
            f"prompt {item.id!r}: expected {item.expected!r} is not a valid regular expression "
            f"({exc}); fix the pattern, or use the 'contains' scorer for plain text."
        ) from None


class JudgeScorer:
    """Asks a model to grade the answer (``SCORE: 0-10`` -> 0..1); loaded on first use.

    The judge's own call is recorded with the tag ``fmgate.role=judge`` (plus the caller's tags,
    such as the run), so its cost and latency are kept apart from the models compared.
    """

    def __init__(self, judge: str | Model) -> None:
        self._spec = judge if isinstance(judge, str) else judge.alias or judge.spec
        self._model: Model | None = None if isinstance(judge, str) else judge
        self._lock = threading.Lock()
        self.name = f"judge:{self._spec}"

    @property
    def model(self) -> Model:
        with self._lock:
            if self._model is None:
                from .._load import load

                self._model = load(self._spec)
            return self._model

    def check(self, items: Sequence[PromptItem]) -> None:
        self.model  # noqa: B018 - a judge that cannot load must fail before any candidate runs

    def score(self, item: PromptItem, answer: str) -> ScoreResult:
        judge = self.model  # outside the try: a bad spec is a configuration error, not a grade
        try:
            with tagged({ROLE: "judge", PROMPT: item.id}):
                response = judge.generate(judge_prompt(item, answer), system=JUDGE_SYSTEM)
        except FmgateError as exc:
            return ScoreResult(None, f"the judge call failed: {type(exc).__name__}: {exc}")
        value = parse_judge_score(response.text)
        if value is None:
            reply = response.text.strip()[-200:]
            detail = f"no 'SCORE: <0-10>' line in the judge's reply: {reply!r}"
            return ScoreResult(None, detail, response.record.id)
        return ScoreResult(value / 10, f"judge: {value:g}/10", response.record.id)


def judge_prompt(item: PromptItem, answer: str) -> str:
    reference = f"Reference answer:\n{item.expected}\n\n" if item.expected is not None else ""
    against = (
        "Judge it against the reference answer."
        if item.expected is not None
        else "There is no reference answer: judge its correctness yourself."
    )
    return JUDGE_TEMPLATE.format(
        question=item.prompt, reference=reference, answer=answer, against=against
    )


def parse_judge_score(reply: str) -> float | None:
    """The number on the reply's last ``SCORE:`` line, if it is between 0 and 10."""
    found = _SCORE_LINE.findall(reply)
    if not found:
        return None
    value = float(found[-1])
    return value if 0 <= value <= 10 else None


class ClassificationScorer:
    """Grades a classification set: a text is right when the top-1 label equals its ``label``
    (case-folded). ``accuracy`` and ``macro_f1`` grade the same way; the name says which metric
    the report's quality column shows (both are shown for classification runs)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def check(self, items: Sequence[PromptItem]) -> None:
        if not is_classification(items):
            raise InvalidRequestError(
                f"The {self.name} scorer grades classification sets, whose rows have a 'label' "
                "(such as the bundled langid); for answers with 'expected', use exact, contains, "
                "regex or judge:<model>."
            )

    def score(self, item: PromptItem, answer: str) -> ScoreResult:
        return self.grade([(item, answer)])

    def grade(self, rows: Sequence[tuple[PromptItem, str | None]]) -> ScoreResult:
        """One record's rows: the share classified right, each row kept in ``detail``."""
        predictions = [Prediction(item.id, item.label or "", label) for item, label in rows]
        if not predictions or any(item.label is None for item, _ in rows):
            return ScoreResult(None, "an item has no label to check the prediction against")
        right = sum(p.correct for p in predictions)
        return ScoreResult(right / len(predictions), predictions_detail(predictions))


_SIMPLE: dict[str, Callable[[], Scorer]] = {
    "exact": ExactScorer,
    "contains": ContainsScorer,
    "regex": RegexScorer,
    "json_schema": JsonSchemaScorer,
    "tool_call": ToolCallScorer,
}
SCORER_NAMES = (
    "exact, contains, regex, json_schema, tool_call, top1, top5, recall@0.5, accuracy, macro_f1 "
    "or judge:<model>"
)


def get_scorer(spec: str) -> Scorer:
    """``exact``, ``contains``, ``regex``, ``json_schema`` and ``tool_call`` (rows with a schema
    or tools), ``accuracy``, ``macro_f1`` (classification sets), ``top1``, ``top5`` and
    ``recall@0.5`` (image sets) or ``judge:<model spec or alias>``."""
    kind, colon, judge = spec.strip().partition(":")
    if kind.lower() == "judge" and colon:
        if not judge.strip():
            raise InvalidRequestError("judge: needs a model, e.g. judge:openai:gpt-4o-mini.")
        return JudgeScorer(judge.strip())
    name = spec.strip().lower().replace("-", "_")  # macro-f1 as the papers write it
    if name in CLASSIFICATION_SCORERS:
        return ClassificationScorer(name)
    if name.replace("_", "") in IMAGE_SCORERS:  # top-1 as the papers write it
        return image_scorer(name.replace("_", ""))
    factory = _SIMPLE.get(name)
    if factory is None:
        raise InvalidRequestError(f"Unknown scorer {spec!r}: choose {SCORER_NAMES}.")
    return factory()


@dataclass(frozen=True, slots=True)
class RetrievalIndex:
    """The embedded ``expected`` texts of a prompt set, for grading an encoder by retrieval@1:
    a prompt scores 1 when its nearest expected text (cosine) is its own, else 0."""

    ids: list[str]
    vectors: list[list[float]]

    def score(self, item: PromptItem, vector: Sequence[float]) -> ScoreResult:
        if item.id not in self.ids:
            return _NO_EXPECTED
        similarity = [_cosine(vector, v) for v in self.vectors]
        best = max(range(len(similarity)), key=similarity.__getitem__)
        own = similarity[self.ids.index(item.id)]
        if own >= similarity[best]:  # a tie with an identical reference text still finds it
            return ScoreResult(1.0)
        detail = f"nearest is {self.ids[best]!r} ({similarity[best]:.3f}; its own: {own:.3f})"
        return ScoreResult(0.0, detail)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norms if norms else 0.0
