"""generate_many on a backend that batches: one pass per batch, one record per prompt."""

from __future__ import annotations

import pytest

import fmgate
from fmgate import _registry
from tests.fakes import FakeBatchingBackend


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> fmgate.Model:
    monkeypatch.setattr(_registry, "_plugins", lambda: {"fake": "tests.fakes:FakeBatchingBackend"})
    return fmgate.load("fake:echo")


def backend(model: fmgate.Model) -> FakeBatchingBackend:
    assert isinstance(model.backend, FakeBatchingBackend)
    return model.backend


def test_prompts_run_in_batches_with_one_record_each(
    model: fmgate.Model, memory: fmgate.MemorySink
) -> None:
    prompts = [f"p{i}" for i in range(10)]
    rs = model.generate_many(prompts, max_tokens=3)
    assert [r.text for r in rs] == [p.upper() for p in prompts]
    assert backend(model).batches == [4, 4, 2]
    assert len(memory.records) == 10
    assert [r.record.params["batch_size"] for r in rs] == [4] * 8 + [2] * 2
    assert all(r.record.params["max_tokens"] == 3 for r in rs)


def test_batch_size_overrides_the_default(model: fmgate.Model) -> None:
    model.generate_many(["a", "b", "c"], batch_size=2)
    assert backend(model).batches == [2, 1]
    with pytest.raises(fmgate.InvalidRequestError, match="batch_size"):
        model.generate_many(["a"], batch_size=0)


def test_each_prompt_pays_its_share_of_the_batch(model: fmgate.Model) -> None:
    rs = model.generate_many(["a", "b", "c", "d"])
    for r in rs:
        assert r.record.cost.basis == "energy_estimated" and r.record.cost.amount is not None
        total = r.record.latency.total_s
        assert total is not None
        assert float(r.record.cost.amount) == pytest.approx(total / 4, abs=1e-6)


def test_a_refused_prompt_keeps_its_place_and_the_rest_still_run(
    model: fmgate.Model, memory: fmgate.MemorySink
) -> None:
    rs = model.generate_many(["a", "", "c"], return_exceptions=True)
    assert isinstance(rs[1], fmgate.InvalidRequestError)
    assert [r.text for r in (rs[0], rs[2]) if isinstance(r, fmgate.Response)] == ["A", "C"]
    assert backend(model).batches == [2]
    assert len(memory.records) == 3
    with pytest.raises(fmgate.InvalidRequestError):
        model.generate_many(["a", ""])


def test_a_failed_batch_records_every_prompt_as_failed(
    model: fmgate.Model, memory: fmgate.MemorySink
) -> None:
    backend(model).fail = RuntimeError("CUDA out of memory")
    rs = model.generate_many(["a", "b"], return_exceptions=True)
    assert all(isinstance(r, fmgate.BackendError) for r in rs)
    assert [r.outcome.status for r in memory.records] == ["error", "error"]
    # the machine was busy even though the call failed: a local failure still costs
    assert all(r.cost.basis == "energy_estimated" for r in memory.records)


def test_a_row_that_fails_alone_does_not_fail_its_batch(
    model: fmgate.Model, memory: fmgate.MemorySink
) -> None:
    rs = model.generate_many(["a", "this is too long", "c"], return_exceptions=True)
    assert isinstance(rs[1], fmgate.ContextLengthError)
    assert [r.text for r in (rs[0], rs[2]) if isinstance(r, fmgate.Response)] == ["A", "C"]
    assert [r.outcome.status for r in memory.records] == ["ok", "error", "ok"]


async def test_async_batches(model: fmgate.Model) -> None:
    rs = await model.agenerate_many([f"q{i}" for i in range(5)])
    assert [r.text for r in rs] == [f"Q{i}" for i in range(5)]
    assert backend(model).batches == [4, 1]


def test_per_prompt_tags_reach_each_record_of_a_batch(model: fmgate.Model) -> None:
    labels = [{"item": str(i)} for i in range(5)]
    with fmgate.tagged(run="r"):
        rs = model.generate_many([f"p{i}" for i in range(5)], batch_size=4, tags=labels)
    assert [r.record.tags for r in rs] == [{"run": "r", "item": str(i)} for i in range(5)]


async def test_per_prompt_tags_in_async_batches(model: fmgate.Model) -> None:
    rs = await model.agenerate_many(["a", "b"], tags=[{"item": "a"}, {"item": "b"}])
    assert [r.record.tags for r in rs] == [{"item": "a"}, {"item": "b"}]


@pytest.mark.parametrize("bad", [[{"item": "1"}], {"item": "1"}, [{"item": 1}, {"item": "2"}]])
def test_tags_must_be_one_mapping_of_strings_per_prompt(model: fmgate.Model, bad: object) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="one mapping per prompt"):
        model.generate_many(["a", "b"], tags=bad)  # type: ignore[arg-type]


# -- on_text: each row's text as it comes (what fmgate serve streams its batches with) ------------


def test_on_text_hands_each_row_its_text_and_marks_its_record_streamed(
    model: fmgate.Model,
) -> None:
    seen: list[str] = []
    rs = model.generate_many(["a b", "c d"], on_text=[seen.append, None])
    assert "".join(seen) == "A B"  # this backend does not stream batches: the whole row at once
    assert [r.record.stream for r in rs] == [True, False]
    assert rs[0].record.latency.ttft_s is not None and rs[1].record.latency.ttft_s is None


def test_a_listener_whose_reader_left_ends_its_record_client_closed(model: fmgate.Model) -> None:
    rs = model.generate_many(["a", "b"], on_text=[lambda text: False, lambda text: None])
    assert [r.finish_reason for r in rs] == ["client_closed", "stop"]
    assert [r.record.outcome.finish_reason for r in rs] == ["client_closed", "stop"]


def test_without_batching_a_row_with_a_listener_is_streamed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_registry, "_plugins", lambda: {"fake": "tests.fakes:FakeBackend"})
    m = fmgate.load("fake:echo")
    pieces: list[str] = []
    rs = m.generate_many(["one two three", "x"], on_text=[pieces.append, None], concurrency=1)
    assert pieces == ["ONE ", "TWO ", "THREE "] and rs[0].record.stream
    closed = m.generate_many(["one two three"], on_text=[lambda text: False])[0]
    assert closed.record.outcome.finish_reason == "client_closed"


def test_on_text_needs_one_entry_per_prompt(model: fmgate.Model) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="on_text"):
        model.generate_many(["a", "b"], on_text=[None])


async def test_async_on_text(model: fmgate.Model) -> None:
    seen: list[str] = []
    rs = await model.agenerate_many(["a b"], on_text=[seen.append])
    assert seen == ["A B"] and rs[0].record.stream
