"""Retries, fallback and offline mode, over the scripted backend (no wire, no real waits)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import fmgate
from fmgate import _registry, _retry
from fmgate._fallback import FallbackModel
from fmgate._model import Model
from fmgate._retry import RetryPolicy
from tests.fakes import FakeBackend, fake_config


@pytest.fixture(autouse=True)
def plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_plugins", lambda: {"fake": "tests.fakes:FakeBackend"})


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The back-off waits, recorded instead of slept."""
    slept: list[float] = []

    async def asleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(_retry, "sleep", slept.append)
    monkeypatch.setattr(_retry, "asleep", asleep)
    return slept


def make(policy: RetryPolicy | None = None, **kw: object) -> Model:
    return Model(FakeBackend(fake_config()), retry=policy, **kw)  # type: ignore[arg-type]


def fake(model: Model) -> FakeBackend:
    assert isinstance(model.backend, FakeBackend)
    return model.backend


def server_error(**kw: object) -> fmgate.ServerError:
    return fmgate.ServerError("busy", status_code=503, provider="fake", **kw)  # type: ignore[arg-type]


FAST = RetryPolicy(max_retries=3, backoff_s=0.1)


def test_a_retryable_failure_is_tried_again_and_the_record_counts_tries(
    waits: list[float], memory: fmgate.MemorySink
) -> None:
    m = make(FAST)
    fake(m).fail_next = [server_error(), fmgate.RateLimitError("slow", status_code=429)]
    r = m.generate("hi")
    assert r.text == "HI" and len(fake(m).requests) == 3
    assert r.record.outcome.attempts == 3 and r.record.ok
    assert memory.records == [r.record]  # one record for the call, not one per try
    lat = r.record.latency
    assert lat.wall_s is not None and lat.total_s is not None and lat.wall_s >= lat.total_s
    assert len(waits) == 2 and 0 <= waits[0] <= 0.1 and 0 <= waits[1] <= 0.2  # full jitter


@pytest.mark.parametrize(
    "error",
    [
        fmgate.BadRequestError("bad", status_code=400),
        fmgate.AuthenticationError("no", status_code=401),
        fmgate.NotFoundError("gone", status_code=404),
        fmgate.ContextLengthError("long", status_code=400),
    ],
)
def test_other_4xx_are_never_retried(waits: list[float], error: fmgate.BackendError) -> None:
    m = make(FAST)
    fake(m).fail = error
    with pytest.raises(type(error)) as info:
        m.generate("hi")
    assert len(fake(m).requests) == 1 and waits == []
    assert info.value.record is not None and info.value.record.outcome.attempts == 1


def test_retries_stop_at_the_cap_and_the_last_error_is_raised(waits: list[float]) -> None:
    m = make(RetryPolicy(max_retries=2, backoff_s=0.01))
    fake(m).fail = server_error()
    with pytest.raises(fmgate.ServerError) as info:
        m.generate("hi")
    assert len(fake(m).requests) == 3 and len(waits) == 2
    record = info.value.record
    assert record is not None and record.outcome.attempts == 3 and not record.ok


def test_retry_after_is_honoured_up_to_the_cap(waits: list[float]) -> None:
    m = make(RetryPolicy(max_retries=3, max_retry_after_s=10))
    fake(m).fail_next = [server_error(retry_after_s=2.5)]
    assert m.generate("hi").record.outcome.attempts == 2
    assert waits == [2.5]
    fake(m).fail_next = [server_error(retry_after_s=11.0)]  # longer than the cap: no wait
    with pytest.raises(fmgate.ServerError):
        m.generate("hi")
    assert waits == [2.5]


def test_backoff_grows_exponentially_with_full_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_retry.random, "uniform", lambda low, high: high)  # the ceiling
    policy = RetryPolicy(max_retries=6, backoff_s=0.5, max_backoff_s=3.0)
    error = server_error()
    assert [policy.delay(n, error) for n in range(1, 8)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, None]
    assert policy.delay(1, fmgate.BadRequestError("x")) is None


@pytest.mark.parametrize("bad", [{"max_retries": -1}, {"max_retries": 1.5}, {"backoff_s": -2}])
def test_a_bad_policy_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(fmgate.InvalidRequestError):
        RetryPolicy(**bad)  # type: ignore[arg-type]


async def test_async_calls_retry_too(waits: list[float]) -> None:
    m = make(FAST)
    fake(m).fail_next = [server_error(), server_error()]
    r = await m.agenerate("hi")
    assert r.record.outcome.attempts == 3 and len(waits) == 2


def test_local_models_do_not_retry_by_default() -> None:
    m = make()  # the fake backend is local
    assert m.retry.max_retries == 0
    fake(m).fail = server_error()
    with pytest.raises(fmgate.ServerError):
        m.generate("hi")
    assert len(fake(m).requests) == 1


def test_a_stream_failing_before_its_first_chunk_is_retried(waits: list[float]) -> None:
    m = make(FAST)
    fake(m).fail_next = [server_error()]
    with m.stream("one two") as s:
        assert [c.text for c in s] == ["ONE ", "TWO "]
    assert s.record.outcome.attempts == 2 and s.record.ok and s.record.outcome.chunks == 2


async def test_an_async_stream_failing_before_its_first_chunk_is_retried(
    waits: list[float],
) -> None:
    m = make(FAST)
    fake(m).fail_next = [server_error()]
    async with m.astream("one two") as s:
        assert [c.text async for c in s] == ["ONE ", "TWO "]
    assert s.record.outcome.attempts == 2


def test_a_stream_failing_after_text_arrived_is_not_retried(waits: list[float]) -> None:
    m = make(FAST)
    fake(m).cut_after = 2
    seen: list[str] = []
    with pytest.raises(fmgate.ServerError, match="stream cut"):
        for chunk in m.stream("one two three"):
            seen.append(chunk.text)
    assert seen == ["ONE ", "TWO "] and waits == [] and len(fake(m).requests) == 1
    rec = fmgate.recent(1)[0]
    assert rec.outcome.chunks == 2 and rec.outcome.attempts == 1 and not rec.ok


# -- fallback -------------------------------------------------------------------------------------


def test_a_failed_call_falls_back_and_the_record_says_so(memory: fmgate.MemorySink) -> None:
    backup = make()
    m = FallbackModel(FakeBackend(fake_config("primary")), alias="main", fallback=[backup])
    fake(m).fail = server_error()
    r = m.generate("hi", max_tokens=5, fake_flag=True)
    assert r.text == "HI"
    failed, served = memory.records
    assert failed.model_id == "primary" and not failed.ok and failed.outcome.fallback_from is None
    assert served.ok and served.outcome.fallback_from == "main"
    assert served.outcome.fallback_reason is not None
    assert served.outcome.fallback_reason.startswith("ServerError: busy")
    assert fake(backup).requests[0].params.max_tokens == 5  # common and matching params follow


async def test_async_fallback_and_a_chain_tried_in_order(memory: fmgate.MemorySink) -> None:
    first, second = make(), make()
    fake(first).fail = fmgate.TimeoutError("slow")
    m = FallbackModel(FakeBackend(fake_config("primary")), fallback=[first, second])
    fake(m).fail = fmgate.ConnectionError("down")
    r = await m.agenerate("hi")
    assert r.record.outcome.fallback_from == "fake:primary"
    assert r.record.outcome.fallback_reason == "ConnectionError: down"
    assert [rec.ok for rec in memory.records] == [False, False, True]


def test_when_every_fallback_fails_the_last_error_is_raised() -> None:
    backup = make()
    fake(backup).fail = fmgate.RateLimitError("quota")
    m = FallbackModel(FakeBackend(fake_config()), fallback=[backup])
    fake(m).fail = server_error()
    with pytest.raises(fmgate.RateLimitError, match="quota") as info:
        m.generate("hi")
    assert info.value.record is not None and info.value.record.outcome.fallback_from == "fake:echo"


def test_bad_input_does_not_fall_back() -> None:
    backup = make()
    m = FallbackModel(FakeBackend(fake_config()), fallback=[backup])
    with pytest.raises(fmgate.InvalidRequestError):
        m.generate("")
    assert fake(backup).requests == []


def test_fallback_specs_load_on_first_need() -> None:
    m = fmgate.load("fake:echo", fallback=["fake:backup"])
    assert isinstance(m, FallbackModel) and m._built is None  # nothing loaded yet
    fake(m).fail = server_error()
    r = m.generate("hi")
    assert r.record.model_id == "fake-1" and r.record.outcome.fallback_from == "fake:echo"


# -- offline mode ---------------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("FMGATE_OFFLINE", "1")
    yield


def test_offline_mode_refuses_a_network_model_before_sending(
    offline: None, monkeypatch: pytest.MonkeyPatch, memory: fmgate.MemorySink
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    m = fmgate.load("openai:gpt-4o-mini")
    for call in (lambda: m.generate("hi"), lambda: m.stream("hi")):
        with pytest.raises(fmgate.OfflineError, match="FMGATE_OFFLINE"):
            call()
    assert [r.outcome.error_type for r in memory.records] == ["OfflineError"] * 2
    assert all(r.cost.source == "refused before sending: nothing ran" for r in memory.records)


def test_offline_mode_lets_local_and_loopback_models_run(offline: None) -> None:
    from fmgate.testing import stub_server

    assert make().generate("hi").text == "HI"
    with stub_server() as url:
        m = fmgate.load("vllm:stub", base_url=url + "/v1")
        assert m.generate("hi").record.ok


# -- settings -------------------------------------------------------------------------------------


def test_retry_settings_come_from_the_alias_and_load(tmp_path: Path) -> None:
    conf = tmp_path / "fmgate.toml"
    conf.write_text(
        '[models.main]\nbackend = "fake"\nmodel = "echo"\nmax_retries = 4\nbackoff = 0.25\n'
        'fallback = ["spare", "fake:other"]\n\n[models.spare]\nbackend = "fake"\nmodel = "spare"\n'
    )
    m = fmgate.load("main", config=conf)
    assert m.retry == RetryPolicy(max_retries=4, backoff_s=0.25)
    assert fmgate.load("main", config=conf, max_retries=0).retry.max_retries == 0
    fake(m).fail = server_error()
    m._retry = RetryPolicy(max_retries=0)  # no waits here; the chain is what is tested
    r = m.generate("hi")
    assert r.record.alias == "spare" and r.record.outcome.fallback_from == "main"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("max_retries = -1", "'max_retries' must be between 0 and 100"),
        ("max_retries = 1.5", "'max_retries' must be int"),
        ("backoff = -1", "'backoff' must be 0 or a positive number"),
        ('fallback = "spare"', "'fallback' must be list"),
        ('fallback = ["", 3]', "'fallback' must list aliases"),
    ],
)
def test_bad_retry_settings_name_the_file_and_key(
    tmp_path: Path, setting: str, message: str
) -> None:
    conf = tmp_path / "fmgate.toml"
    conf.write_text(f'[models.main]\nbackend = "fake"\nmodel = "echo"\n{setting}\n')
    with pytest.raises(fmgate.ConfigFileError, match=message):
        fmgate.load("main", config=conf)


def test_an_interrupted_call_is_still_recorded(memory: fmgate.MemorySink) -> None:
    m = make()
    fake(m).fail = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        m.generate("hi")
    with pytest.raises(KeyboardInterrupt):
        m.stream("hi").collect()
    assert [r.outcome.error_type for r in memory.records] == ["KeyboardInterrupt"] * 2


def test_offline_mode_keeps_local_models_off_the_hub(offline: None) -> None:
    from fmgate._local.loading import hub_offline

    assert hub_offline()  # as if HF_HUB_OFFLINE=1: a model must already be on disk
