"""Scorers: normalised exact and whole-word contains, regex, the judge model, retrieval@1."""

from __future__ import annotations

import pytest

import fmgate
from fmgate import _registry
from fmgate._compare import (
    ChecksItems,
    JudgeScorer,
    PromptItem,
    RetrievalIndex,
    ScoreResult,
    get_scorer,
    normalise,
    parse_judge_score,
)
from fmgate._errors import ServerError
from fmgate._record import Usage
from fmgate._tags import PROMPT, ROLE, RUN
from fmgate._types import ChatRequest, Completion
from tests.fakes import FakeBackend, fake_config

PARIS = PromptItem("fr", "Capital of France?", "Paris")
OPEN = PromptItem("open", "Tell me a story.")


class ScriptedBackend(FakeBackend):
    """Replies with ``reply`` whatever it is asked: a judge with a fixed verdict."""

    reply = "SCORE: 7"

    def _reply(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        if self.fail is not None:
            raise self.fail
        return Completion(self.reply, "stop", Usage(10, 3), "judge-1")


def judge(reply: str) -> tuple[fmgate.Model, ScriptedBackend]:
    backend = ScriptedBackend(fake_config("judge"))
    backend.reply = reply
    return fmgate.Model(backend, alias="judge"), backend


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("  Paris. ", "paris"),
        ("PARIS!!", "paris"),
        ("New   York\n City", "new york city"),
        ("Straße", "strasse"),  # casefold, not lower
        ("3.14", "3.14"),  # only trailing punctuation goes
        ("ok ?!", "ok"),
        ("...", ""),
    ],
)
def test_normalise(text: str, normal: str) -> None:
    assert normalise(text) == normal


@pytest.mark.parametrize(
    ("answer", "value"),
    [("paris", 1.0), (" PARIS. ", 1.0), ("Paris, France", 0.0), ("It is Paris.", 0.0)],
)
def test_exact_compares_normalised_text(answer: str, value: float) -> None:
    assert get_scorer("exact").score(PARIS, answer) == ScoreResult(value)


@pytest.mark.parametrize(
    ("expected", "answer", "value"),
    [
        ("Paris", "The capital is PARIS.", 1.0),
        ("Paris", "It is Lyon", 0.0),
        ("Paris", "Parisian food", 0.0),  # whole words only
        ("4", "The answer is 14.", 0.0),
        ("4", "2 + 2 = 4!", 1.0),
        ("New York.", "I love new  york city", 1.0),
        ("3.14", "pi is about 3.14159", 0.0),
        ("3.14", "pi is about 3.14, roughly", 1.0),
    ],
)
def test_contains_finds_the_expected_words(expected: str, answer: str, value: float) -> None:
    item = PromptItem("1", "q", expected)
    assert get_scorer("contains").score(item, answer).value == value


def test_an_item_without_expected_is_not_graded_rather_than_wrong() -> None:
    for name in ("exact", "contains", "regex"):
        result = get_scorer(name).score(OPEN, "Once upon a time")
        assert result.value is None and result.detail == "the item has no expected answer"
    punctuation = PromptItem("p", "q", "?!")
    assert get_scorer("contains").score(punctuation, "anything").value is None


def test_regex_searches_the_raw_answer() -> None:
    regex = get_scorer("regex")
    assert regex.score(PromptItem("1", "q", r"\b4[0-9]\b"), "it is 42.").value == 1.0
    assert regex.score(PromptItem("1", "q", "paris"), "Paris").value == 0.0
    assert regex.score(PromptItem("1", "q", "(?i)paris"), "Paris").value == 1.0


def test_a_bad_pattern_is_refused_by_check_before_any_call() -> None:
    regex = get_scorer("regex")
    assert isinstance(regex, ChecksItems)
    items = [PARIS, OPEN, PromptItem("bad", "q", "([a-z")]
    with pytest.raises(fmgate.InvalidRequestError, match=r"prompt 'bad'.*'\(\[a-z'.*contains"):
        regex.check(items)
    with pytest.raises(fmgate.InvalidRequestError, match="not a valid regular expression"):
        regex.score(items[2], "abc")


@pytest.mark.parametrize("spec", ["", "levenshtein", "judge:", "judge:  ", "Exactly"])
def test_unknown_scorers_are_refused(spec: str) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="scorer|judge"):
        get_scorer(spec)


def test_scorer_names() -> None:
    assert [get_scorer(s).name for s in ("exact", " Contains ", "REGEX")] == [
        "exact",
        "contains",
        "regex",
    ]
    assert get_scorer("judge:openai:gpt-4o-mini").name == "judge:openai:gpt-4o-mini"


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ("SCORE: 7", 7.0),
        ("The answer is right.\nScore: 10", 10.0),
        ("**SCORE:** 8.5/10", 8.5),
        ("SCORE: 2\nOn reflection...\nSCORE: 4", 4.0),  # the last verdict counts
        ("SCORE: <integer from 0 to 10>", None),
        ("SCORE: 11", None),
        ("I would give it seven.", None),
        ("", None),
    ],
)
def test_parse_judge_score(reply: str, value: float | None) -> None:
    assert parse_judge_score(reply) == value


def test_the_judge_grades_and_its_call_is_recorded_apart(memory: fmgate.MemorySink) -> None:
    model, backend = judge("Correct and complete.\nSCORE: 7")
    scorer = JudgeScorer(model)
    with fmgate.tagged({RUN: "run-1"}):
        result = scorer.score(PARIS, "Paris")
    assert result.value == pytest.approx(0.7) and result.detail == "judge: 7/10"
    (record,) = memory.records
    assert result.judge_record_id == record.id
    assert record.tags == {RUN: "run-1", ROLE: "judge", PROMPT: "fr"}
    sent = backend.requests[0].messages
    assert sent[0].role == "system"
    assert "Capital of France?" in sent[1].content and "Reference answer:\nParis" in sent[1].content
    assert "Candidate answer:\nParis" in sent[1].content and "SCORE:" in sent[1].content


def test_without_a_reference_the_judge_is_told_so() -> None:
    model, backend = judge("SCORE: 10")
    assert JudgeScorer(model).score(OPEN, "Once upon a time").value == 1.0
    prompt = backend.requests[0].messages[-1].content
    assert "Reference answer" not in prompt and "no reference answer" in prompt


def test_an_unreadable_verdict_is_none_with_the_reply_in_detail() -> None:
    model, _ = judge("Looks fine to me.")
    result = JudgeScorer(model).score(PARIS, "Paris")
    assert result.value is None and result.judge_record_id is not None
    assert result.detail is not None and "Looks fine to me." in result.detail


def test_a_failed_judge_call_is_none_not_an_exception(memory: fmgate.MemorySink) -> None:
    model, backend = judge("SCORE: 9")
    backend.fail = ServerError("overloaded", status_code=503, provider="fake")
    result = JudgeScorer(model).score(PARIS, "Paris")
    assert result.value is None and result.judge_record_id is None
    assert result.detail is not None and "ServerError" in result.detail
    assert memory.records[0].outcome.status == "error"  # recorded all the same


def test_judge_spec_loads_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_plugins", lambda: {"fake": "tests.fakes:FakeBackend"})
    scorer = get_scorer("judge:fake:echo")
    assert isinstance(scorer, JudgeScorer) and scorer._model is None
    # The echo model repeats the grading prompt: no number on its SCORE line.
    assert scorer.score(PARIS, "Paris").value is None
    assert scorer.model.spec == "fake:echo"


def test_a_judge_that_cannot_load_fails_the_check() -> None:
    scorer = get_scorer("judge:nope:model")
    assert isinstance(scorer, ChecksItems)
    with pytest.raises(fmgate.UnknownBackendError):
        scorer.check([PARIS])


def test_retrieval_at_1() -> None:
    index = RetrievalIndex(["a", "b", "c"], [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    assert index.score(PromptItem("a", "q", "x"), [0.9, 0.1]) == ScoreResult(1.0)
    miss = index.score(PromptItem("a", "q", "x"), [0.1, 0.9])
    assert miss.value == 0.0 and miss.detail is not None and "nearest is 'b'" in miss.detail
    assert index.score(PromptItem("d", "q"), [1.0, 0.0]).value is None
    tie = RetrievalIndex(["a", "b"], [[1.0, 0.0], [1.0, 0.0]])
    assert tie.score(PromptItem("b", "q", "x"), [1.0, 0.0]).value == 1.0
