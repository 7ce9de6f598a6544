"""The Model facade and its recording wrapper, over a scripted backend."""

from __future__ import annotations

import asyncio

import pytest

import fmgate
from fmgate import _registry
from tests.fakes import FakeBackend


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> fmgate.Model:
    monkeypatch.setattr(_registry, "_plugins", lambda: {"fake": "tests.fakes:FakeBackend"})
    return fmgate.load("fake:echo")


def fake(model: fmgate.Model) -> FakeBackend:
    assert isinstance(model.backend, FakeBackend)
    return model.backend


def test_generate_returns_text_usage_and_a_full_record(
    model: fmgate.Model, memory: fmgate.MemorySink
) -> None:
    r = model.generate("say hi", max_tokens=5, temperature=0)
    assert r.text == "SAY HI" and r.finish_reason == "stop"
    rec = r.record
    assert memory.records == [rec]
    assert (rec.backend, rec.provider, rec.model_id, rec.operation) == (
        "fake",
        "fake",
        "fake-1",
        "chat",
    )
    assert rec.distribution == "local" and rec.endpoint == "in-process" and rec.stream is False
    assert rec.params == {"max_tokens": 5, "temperature": 0.0}
    assert rec.usage.output_tokens == 2 and rec.usage.source == "estimate"
    assert rec.outcome.status == "ok" and rec.outcome.attempts == 1
    assert rec.latency.total_s is not None and rec.latency.total_s >= 0
    assert rec.latency.ttft_s is None  # not measured for a non-streamed call
    assert rec.cost.amount is None and rec.cost.basis == "unknown"  # never a silent 0
    assert rec.access.open_weights is True
    assert rec.environment.python_version


def test_load_time_is_reported_once_on_the_first_call(model: fmgate.Model) -> None:
    first = model.generate("a").record.latency.load_s
    second = model.generate("b").record.latency.load_s
    assert first is not None and first >= 0
    assert second is None


def test_messages_and_system_prompt_are_normalised(model: fmgate.Model) -> None:
    model.generate([{"role": "user", "content": "hi"}], system="be brief")
    sent = fake(model).requests[-1].messages
    assert [(m.role, m.content) for m in sent] == [("system", "be brief"), ("user", "hi")]


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "   ",
        [],
        [{"role": "user"}],
        [{"role": "robot", "content": "x"}],
        [{"role": "user", "content": 3}],
        [{"role": "system", "content": "only system"}],
        42,
        ["plain string in a list"],
    ],
)
def test_bad_prompts_raise_a_typed_error_and_are_recorded(
    model: fmgate.Model, memory: fmgate.MemorySink, prompt: object
) -> None:
    with pytest.raises(fmgate.InvalidRequestError):
        model.generate(prompt)  # type: ignore[arg-type]
    assert [r.outcome.error_type for r in memory.records] == ["InvalidRequestError"]
    assert fake(model).requests == []  # refused before sending


@pytest.mark.parametrize(
    "params",
    [
        {"max_tokens": 0},
        {"max_tokens": 1.5},
        {"temperature": 3},
        {"top_p": -0.1},
        {"stop": [""]},
        {"seed": "x"},
        {"frequency_penalty": 0.5},
    ],
)
def test_bad_params_raise_invalid_request(model: fmgate.Model, params: dict[str, object]) -> None:
    with pytest.raises(fmgate.InvalidRequestError):
        model.generate("hi", **params)  # type: ignore[arg-type]


def test_backend_params_pass_only_with_their_prefix(model: fmgate.Model) -> None:
    r = model.generate("hi", fake_top_k=3)
    assert fake(model).requests[-1].params.extra == {"top_k": 3}
    assert r.record.params == {"top_k": 3}
    with pytest.raises(fmgate.InvalidRequestError, match="fake_top_k"):
        model.generate("hi", top_k=3)


def test_load_defaults_are_merged_with_call_params(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_plugins", lambda: {"fake": "tests.fakes:FakeBackend"})
    m = fmgate.load("fake:echo", temperature=0.5, max_tokens=10, system="sys")
    m.generate("hi", max_tokens=3)
    sent = fake(m).requests[-1]
    assert sent.params.temperature == 0.5 and sent.params.max_tokens == 3
    assert sent.messages[0].content == "sys"


def test_a_failed_call_is_recorded_then_raised(
    model: fmgate.Model, memory: fmgate.MemorySink
) -> None:
    fake(model).fail = fmgate.RateLimitError("slow down", status_code=429, provider="fake")
    with pytest.raises(fmgate.RateLimitError) as info:
        model.generate("hi")
    (rec,) = memory.records
    assert info.value.record is rec  # the caller gets the failed call's record with the error
    assert rec.outcome.status == "error" and rec.outcome.error_type == "RateLimitError"
    assert rec.outcome.http_status == 429 and rec.cost.amount is None


def test_an_unmapped_backend_exception_is_wrapped_not_leaked(model: fmgate.Model) -> None:
    fake(model).fail = KeyError("choices")
    with pytest.raises(fmgate.BackendError) as info:
        model.generate("hi")
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.record is not None and info.value.record.outcome.error_type == "BackendError"


def test_stream_yields_chunks_then_the_final_response(
    model: fmgate.Model, memory: fmgate.MemorySink
) -> None:
    s = model.stream("one two three")
    with pytest.raises(RuntimeError, match="not finished"):
        s.response  # noqa: B018
    text = "".join(c.text for c in s)
    assert text == "ONE TWO THREE "
    rec = s.record
    assert s.response.text == text and rec.stream is True and rec.outcome.chunks == 3
    assert rec.latency.ttft_s is not None and rec.latency.total_s is not None
    assert 0 <= rec.latency.ttft_s <= rec.latency.total_s
    assert rec.usage.output_tokens == 3 and memory.records == [rec]
    assert rec.latency.decode_tokens_per_s is None or rec.latency.decode_tokens_per_s > 0


def test_stream_closed_early_still_gives_a_record(
    model: fmgate.Model, memory: fmgate.MemorySink
) -> None:
    with model.stream("one two three") as s:
        for chunk in s:
            assert chunk.text == "ONE "
            break
    assert s.response.finish_reason == "client_closed" and s.response.text == "ONE "
    assert fake(model).closed_streams == 1
    assert len(memory.records) == 1 and memory.records[0].outcome.chunks == 1


def test_stream_failing_midway_records_the_chunks_that_arrived(
    model: fmgate.Model, memory: fmgate.MemorySink
) -> None:
    fake(model).cut_after = 2
    s = model.stream("one two three")
    got = []
    with pytest.raises(fmgate.ServerError):
        for chunk in s:
            got.append(chunk.text)
    assert got == ["ONE ", "TWO "]
    (rec,) = memory.records
    assert rec.outcome.status == "error" and rec.outcome.chunks == 2
    assert s.response.text == "ONE TWO "


def test_stream_collect_reads_to_the_end(model: fmgate.Model) -> None:
    assert model.stream("a b").collect().text == "A B "


async def test_agenerate_and_astream(model: fmgate.Model, memory: fmgate.MemorySink) -> None:
    r = await model.agenerate("hello there")
    assert r.text == "HELLO THERE"
    s = model.astream("x y")
    assert [c.text async for c in s] == ["X ", "Y "]
    assert s.record.outcome.chunks == 2 and s.record.stream
    async with model.astream("p q r") as s2:
        async for _ in s2:
            break
    assert s2.response.finish_reason == "client_closed"
    assert len(memory.records) == 3


async def test_astream_error_is_recorded(model: fmgate.Model, memory: fmgate.MemorySink) -> None:
    fake(model).cut_after = 1
    with pytest.raises(fmgate.ServerError):
        async for _ in model.astream("a b c"):
            pass
    assert memory.records[-1].outcome.status == "error"


def test_generate_many_keeps_order_and_runs_concurrently(model: fmgate.Model) -> None:
    fake(model).delay_s = 0.05
    prompts = [f"p{i}" for i in range(8)]
    rs = model.generate_many(prompts, concurrency=4)
    assert [r.text for r in rs] == [p.upper() for p in prompts]
    assert fake(model).max_in_flight == 4


def test_generate_many_return_exceptions(model: fmgate.Model, memory: fmgate.MemorySink) -> None:
    results = model.generate_many(["ok", "", "fine"], return_exceptions=True)
    assert isinstance(results[1], fmgate.InvalidRequestError)
    assert [r.text for r in (results[0], results[2]) if isinstance(r, fmgate.Response)] == [
        "OK",
        "FINE",
    ]
    assert len(memory.records) == 3
    with pytest.raises(fmgate.InvalidRequestError):
        model.generate_many(["ok", ""])
    with pytest.raises(fmgate.InvalidRequestError):
        model.generate_many(["ok"], concurrency=0)


async def test_agenerate_many_bounds_concurrency(model: fmgate.Model) -> None:
    fake(model).delay_s = 0.02
    rs = await model.agenerate_many([f"q{i}" for i in range(10)], concurrency=5)
    assert [r.text for r in rs] == [f"Q{i}" for i in range(10)]
    assert fake(model).max_in_flight == 5
    results = await model.agenerate_many(["a", ""], return_exceptions=True)
    assert isinstance(results[1], fmgate.InvalidRequestError)


def test_embed_records_an_embeddings_call(model: fmgate.Model, memory: fmgate.MemorySink) -> None:
    e = model.embed(["a", "bcd"])
    assert e.vectors == [[1.0, 1.0], [3.0, 1.0]]
    assert e.record.operation == "embeddings" and memory.records == [e.record]
    with pytest.raises(fmgate.InvalidRequestError):
        model.embed([])
    assert [r.outcome.status for r in memory.records] == ["ok", "error"]
    assert memory.records[1].cost.source == "refused before sending: nothing ran"


def test_model_repr_and_access_without_a_call(
    model: fmgate.Model, memory: fmgate.MemorySink
) -> None:
    assert repr(model) == "<Model fake:echo>"
    assert model.access.data_leaves_machine is False
    assert memory.records == []


def test_sinks_given_to_load_get_the_models_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_plugins", lambda: {"fake": "tests.fakes:FakeBackend"})
    mine = fmgate.MemorySink()
    m = fmgate.load("fake:echo", sinks=[mine])
    r = m.generate("x")
    assert mine.records == [r.record]
    assert fmgate.recent(1) == [r.record]


def test_a_broken_sink_does_not_break_the_call(
    model: fmgate.Model, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def write(self, record: fmgate.CallRecord) -> None:
            raise OSError("disk full")

        def flush(self) -> None:
            pass

    broken = Broken()
    fmgate.add_sink(broken)
    try:
        assert model.generate("x").text == "X"
    finally:
        fmgate.remove_sink(broken)
    assert "failed to write" in caplog.text


async def test_async_calls_overlap(model: fmgate.Model) -> None:
    fake(model).delay_s = 0.05
    await asyncio.gather(*(model.agenerate(f"x{i}") for i in range(5)))
    assert fake(model).max_in_flight == 5


def test_a_backend_that_sees_its_first_token_gives_ttft_without_streaming(
    model: fmgate.Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses
    import time

    real = fake(model)._reply

    def reply(request):  # type: ignore[no-untyped-def]
        return dataclasses.replace(real(request), first_token_at=time.perf_counter())

    monkeypatch.setattr(fake(model), "_reply", reply)
    lat = model.generate("a b").record.latency
    assert lat.ttft_s is not None and lat.total_s is not None and 0 <= lat.ttft_s <= lat.total_s


def test_a_stream_closed_before_iteration_sent_nothing_and_leaves_no_record(
    model: fmgate.Model, memory: fmgate.MemorySink
) -> None:
    with model.stream("a b") as s:
        pass
    assert memory.records == [] and fake(model).requests == []
    with pytest.raises(RuntimeError, match="nothing was sent"):
        s.response  # noqa: B018
    with pytest.raises(RuntimeError, match="iterated once"):
        list(s)


def test_collect_reads_the_rest_after_partial_iteration(model: fmgate.Model) -> None:
    s = model.stream("one two three")
    it = iter(s)
    assert next(it).text == "ONE "
    assert s.collect().text == "ONE TWO THREE "
    assert s.record.outcome.chunks == 3


async def test_async_collect_after_partial_iteration_and_unsent_close(
    model: fmgate.Model, memory: fmgate.MemorySink
) -> None:
    s = model.astream("one two")
    it = aiter(s)
    assert (await anext(it)).text == "ONE "
    assert (await s.collect()).text == "ONE TWO "
    async with model.astream("x") as unsent:
        pass
    with pytest.raises(RuntimeError, match="nothing was sent"):
        unsent.response  # noqa: B018
    assert len(memory.records) == 1


def test_the_sdk_exception_stays_chained(model: fmgate.Model) -> None:
    try:
        raise KeyError("from the sdk")
    except KeyError as sdk:
        mapped = fmgate.ServerError("mapped", provider="fake")
        mapped.__cause__ = sdk
    fake(model).fail = mapped
    with pytest.raises(fmgate.ServerError) as info:
        model.generate("hi")
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_generate_many_tags_each_prompt_record(model: fmgate.Model, concurrency: int) -> None:
    labels = [{"item": str(i)} for i in range(6)]
    with fmgate.tagged(run="r", item="outer"):
        rs = model.generate_many([f"p{i}" for i in range(6)], concurrency=concurrency, tags=labels)
    assert [r.record.tags for r in rs] == [{"run": "r", "item": str(i)} for i in range(6)]


async def test_agenerate_many_tags_each_prompt_record(model: fmgate.Model) -> None:
    rs = await model.agenerate_many(["a", "b", "c"], concurrency=2, tags=[{"i": x} for x in "abc"])
    assert [r.record.tags for r in rs] == [{"i": "a"}, {"i": "b"}, {"i": "c"}]
