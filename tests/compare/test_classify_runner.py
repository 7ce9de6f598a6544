"""run_compare over a classification set: classifiers with their own labels, chat models
zero-shot, local batches and concurrent API calls, graded accuracy and macro-F1 over texts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import fmgate
from fmgate import CallRecord, InvalidRequestError
from fmgate._compare import (
    PromptItem,
    get_scorer,
    load_prompts,
    planned_calls,
    run_compare,
)
from fmgate._compare.classification import read_predictions
from fmgate._compare.classifying import CLASSIFY_BATCH
from fmgate._errors import ServerError
from fmgate._record import Task, Usage
from fmgate._report import summarize
from fmgate._tags import PROMPT, REPEAT, ROLE, RUN, WARMUP
from fmgate.backends._base import BackendConfig, ChatRequest, Completion
from tests.fakes import FakeBackend, FakeBatchingBackend, FakeClassifierBackend, fake_config

# The fake classifier labels "fr: ..." as fr. The echoing chat fake answers the zero-shot prompt
# in upper case, so the first label its prompt lists ("de", the set's labels sorted) is its pick.
ITEMS = [
    PromptItem("fr-1", "fr: Il pleut.", label="fr"),
    PromptItem("fr-2", "de: Il neige.", label="fr"),  # the classifier gets this one wrong
    PromptItem("en-1", "en: It rains.", label="en"),
    PromptItem("de-1", "de: Es regnet.", label="de"),
]


def classifier(alias: str = "ft", cls: type[FakeBackend] = FakeClassifierBackend) -> fmgate.Model:
    return fmgate.Model(cls(fake_config(alias)), alias=alias)


def api(alias: str = "api", cls: type[FakeBackend] = FakeBackend) -> fmgate.Model:
    provider = dataclasses.replace(cls.provider_info, distribution="api")
    return fmgate.Model(
        cls(BackendConfig(name="fake", model=alias, provider=provider)), alias=alias
    )


def measured(records: list[CallRecord], alias: str) -> list[CallRecord]:
    return [r for r in records if r.alias == alias and WARMUP not in r.tags]


@pytest.fixture
def store(tmp_path: Path) -> fmgate.SqliteStore:
    return fmgate.SqliteStore(tmp_path / "scores.sqlite3")


def test_a_classifier_batches_and_a_chat_api_model_classifies_zero_shot_per_text(
    store: fmgate.SqliteStore,
) -> None:
    models = [classifier(), api()]
    run = run_compare(models, ITEMS, scorer=get_scorer("accuracy"), store=store, run_id="c1")
    assert run.errors == 0
    assert len(run.records) == planned_calls(models, ITEMS) == (1 + 1) + (1 + 4)
    assert all(r.task == "classify" and r.tags[RUN] == "c1" for r in run.records)
    assert all(r.tags[ROLE] == "candidate" for r in run.records)
    # the classifier: a warm-up of one text, then the whole set in one call, labels its own
    ft = models[0].backend
    assert isinstance(ft, FakeClassifierBackend) and ft.batches == [1, 4]
    (batch,) = measured(run.records, "ft")
    assert batch.usage.items == 4 and PROMPT not in batch.tags  # its score names the texts
    assert "labels" not in batch.params
    # the chat model: one text per call, each tagged with its prompt; offered the set's labels
    singles = measured(run.records, "api")
    assert sorted(r.tags[PROMPT] for r in singles) == sorted(i.id for i in ITEMS)
    assert all(r.params["labels"] == ["de", "en", "fr"] for r in singles)
    # graded over texts: the classifier 3 of 4, the zero-shot fake always "de": 1 of 4
    ft_row, api_row = summarize(run.records, run.scores)
    assert (ft_row.accuracy, ft_row.scored, ft_row.quality) == (0.75, 4, 0.75)
    assert api_row.accuracy == 0.25
    # fr: TP 1, FN 1, FP 0 -> 2/3; en: 1; de: TP 1, FP 1 -> 2/3
    assert ft_row.macro_f1 == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert {s.record_id for s in store.scores()} == {s.record_id for s in run.scores}


def test_scores_keep_each_texts_prediction_in_their_detail() -> None:
    run = run_compare([classifier()], ITEMS, warmup=0, scorer=get_scorer("macro_f1"), store=None)
    (score,) = run.scores
    assert score.scorer == "macro_f1" and score.value == 0.75
    rows = read_predictions(score.detail)
    assert rows is not None
    assert [(r.id, r.label, r.predicted) for r in rows] == [
        ("fr-1", "fr", "fr"),
        ("fr-2", "fr", "de"),
        ("en-1", "en", "en"),
        ("de-1", "de", "de"),
    ]


def test_local_batches_never_span_two_passes() -> None:
    items = [PromptItem(f"t{i}", f"x{i % 3}: text {i}", label=f"x{i % 3}") for i in range(70)]
    model = classifier()
    run = run_compare([model], items, repeat=2, warmup=2, scorer=get_scorer("accuracy"))
    ft = model.backend
    assert isinstance(ft, FakeClassifierBackend)
    assert CLASSIFY_BATCH == 32 and ft.batches == [1, 1, 32, 32, 6, 32, 32, 6]
    assert len(run.records) == planned_calls([model], items, repeat=2, warmup=2) == 8
    repeats = [r.tags[REPEAT] for r in measured(run.records, "ft")]
    assert repeats == ["0", "0", "0", "1", "1", "1"]
    assert summarize(run.records, run.scores)[0].accuracy == 1.0


def test_a_local_chat_model_classifies_zero_shot_a_generation_batch_per_call() -> None:
    model = classifier("local-chat", FakeBatchingBackend)
    items = [*ITEMS, PromptItem("de-2", "Es schneit.", label="de")]
    run = run_compare([model], items, warmup=0, scorer=get_scorer("accuracy"))
    assert [r.usage.items for r in run.records] == [4, 1]  # one record per call
    assert all(r.task == "classify" for r in run.records)
    backend = model.backend
    assert isinstance(backend, FakeBatchingBackend) and backend.batches == [4, 1]
    assert summarize(run.records, run.scores)[0].accuracy == pytest.approx(2 / 5)


def test_api_calls_run_concurrently() -> None:
    model = api()
    backend = model.backend
    assert isinstance(backend, FakeBackend)
    backend.delay_s = 0.05
    items = [PromptItem(str(i), f"text {i}", label="a" if i % 2 else "b") for i in range(8)]
    run_compare([model], items, warmup=0, concurrency=4)
    assert backend.max_in_flight == 4


def test_a_failed_call_is_counted_and_its_texts_go_ungraded() -> None:
    model = api("ft-api", FakeClassifierBackend)
    backend = model.backend
    assert isinstance(backend, FakeClassifierBackend)
    backend.fail_next = [ServerError("down", provider="fake", status_code=503)]
    run = run_compare([model], ITEMS, warmup=0, scorer=get_scorer("accuracy"))
    assert run.errors == 1 and len(run.scores) == 3
    (row,) = summarize(run.records, run.scores)
    assert row.calls == 4 and row.ok == 3 and row.scored == 3


class Mumbling(FakeBackend):
    """A chat model whose every answer names no label."""

    def _reply(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        return Completion("I cannot tell.", "stop", Usage(1, 3, source="estimate"), "mumble-1")


def test_a_call_whose_answer_names_no_label_is_graded_wrong_not_left_out() -> None:
    run = run_compare([api("mumbler", Mumbling)], ITEMS, warmup=0, scorer=get_scorer("accuracy"))
    assert run.errors == 0  # the model answered: a wrong answer, not an outage
    assert {r.outcome.error_type for r in run.records} == {"NoLabelError"}
    (row,) = summarize(run.records, run.scores)
    assert (row.calls, row.ok, row.scored, row.accuracy) == (4, 0, 4, 0.0)


def test_the_bundled_langid_set_runs_through_a_classifier() -> None:
    items = load_prompts("langid")
    model = classifier()
    run = run_compare([model], items, scorer=get_scorer("accuracy"), store=None)
    (row,) = summarize(run.records, run.scores)
    assert row.scored == len(items) == 300 and row.accuracy == 0.0  # no "fr: " prefixes
    assert row.macro_f1 == 0.0 and row.calls == 10  # 300 texts in calls of 32


def test_what_cannot_classify_or_grade_is_refused_before_any_call() -> None:
    model = classifier()
    with pytest.raises(InvalidRequestError, match="classification set.*not contains"):
        run_compare([model], ITEMS, scorer=get_scorer("contains"))
    with pytest.raises(InvalidRequestError, match="accuracy scorer grades classification sets"):
        run_compare([api()], [PromptItem("q", "2+2?", "4")], scorer=get_scorer("accuracy"))
    encoder = classifier("enc", EncoderBackend)
    with pytest.raises(InvalidRequestError, match="enc cannot classify.*its tasks are embed"):
        run_compare([model, encoder], ITEMS, scorer=get_scorer("accuracy"))
    ft = model.backend
    assert isinstance(ft, FakeClassifierBackend) and ft.batches == []  # nothing ran


class EncoderBackend(FakeBackend):
    @property
    def tasks(self) -> frozenset[Task]:
        return frozenset({"embed"})
