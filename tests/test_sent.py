"""``outcome.sent``: whether a call sent anything, so that a refused call or a connection never
made is not reported as data that left the machine."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import fmgate
from fmgate import _registry, _retry
from fmgate._model import Model
from fmgate._retry import RetryPolicy
from tests.fakes import FakeBackend, fake_config


@pytest.fixture(autouse=True)
def plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_plugins", lambda: {"fake": "tests.fakes:FakeBackend"})
    monkeypatch.setattr(_retry, "sleep", lambda s: None)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def fake_model(policy: RetryPolicy | None = None) -> Model:
    return Model(FakeBackend(fake_config()), retry=policy)  # type: ignore[arg-type]


def test_a_call_that_ran_sent_its_request() -> None:
    assert fake_model().generate("hi").record.outcome.sent is True


def test_a_bad_parameter_is_refused_before_sending() -> None:
    with pytest.raises(fmgate.InvalidRequestError) as info:
        fake_model().generate("hi", temperature=5)
    assert info.value.record is not None and info.value.record.outcome.sent is False


def test_offline_mode_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMGATE_OFFLINE", "1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(fmgate.OfflineError) as info:
        fmgate.load("openai:gpt-4o-mini").generate("hi")
    record = info.value.record
    assert record is not None and record.outcome.sent is False
    assert record.access.data_leaves_machine is True  # the channel would have; this call did not


@pytest.mark.parametrize("spec", ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"])
def test_a_refused_connection_sent_nothing(
    spec: str, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    m = fmgate.load(spec, base_url=f"http://127.0.0.1:{closed_port}", max_retries=1)
    for call in (lambda: m.generate("hi"), lambda: "".join(c.text for c in m.stream("hi"))):
        with pytest.raises(fmgate.ConnectionError) as info:
            call()
        record = info.value.record
        assert record is not None and record.outcome.attempts == 2
        assert record.outcome.sent is False
        assert record.cost.source == "no connection was made: nothing was sent"


def test_a_server_error_was_sent() -> None:
    m = fake_model()
    backend = m.backend
    assert isinstance(backend, FakeBackend)
    backend.fail = fmgate.ServerError("busy", status_code=503, provider="fake")
    with pytest.raises(fmgate.ServerError) as info:
        m.generate("hi")
    assert info.value.record is not None and info.value.record.outcome.sent is True


def test_a_call_whose_first_try_was_sent_sent_its_request() -> None:
    m = fake_model(RetryPolicy(max_retries=1, backoff_s=0))
    refused = fmgate.ConnectionError("refused", provider="fake", sent=False)
    busy = fmgate.ServerError("busy", status_code=503, provider="fake")
    backend = m.backend
    assert isinstance(backend, FakeBackend)
    backend.fail_next = [busy, refused]
    with pytest.raises(fmgate.ConnectionError) as info:
        m.generate("hi")
    assert info.value.record is not None and info.value.record.outcome.sent is True


def test_sent_survives_the_store(tmp_path: Path) -> None:
    store = fmgate.SqliteStore(tmp_path / "s.db")
    m = Model(FakeBackend(fake_config()), sinks=[store])  # type: ignore[arg-type]
    ok = m.generate("hi").record
    with pytest.raises(fmgate.InvalidRequestError):
        m.generate("hi", temperature=5)
    store.flush()
    sent = {r.id: r.outcome.sent for r in store.records()}
    assert sent[ok.id] is True and sorted(sent.values()) == [False, True]
