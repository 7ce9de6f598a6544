"""fmgate.testing.stub_server: both wires end to end over real loopback sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import fmgate
from fmgate.testing import stub_server, stub_server_stats

REPLY = "Hello! How can I help you today?"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with stub_server() as base_url:
        yield base_url


@pytest.fixture
def models(url: str, monkeypatch: pytest.MonkeyPatch) -> list[fmgate.Model]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stub-0000000000000000")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-stub-00000000")
    return [
        fmgate.load("openai:gpt-4o-mini", base_url=f"{url}/v1"),
        fmgate.load("anthropic:claude-3-5-haiku-latest", base_url=url),
    ]


def test_both_wires_generate_and_stream_with_records(models: list[fmgate.Model]) -> None:
    for m in models:
        r = m.generate("Say hi", max_tokens=32)
        assert r.text == REPLY and r.finish_reason == "stop"
        assert r.record.outcome.status == "ok" and r.record.cost.basis == "list_price"
        assert r.record.access.data_leaves_machine is False  # loopback
        with m.stream("Say hi") as s:
            assert "".join(c.text for c in s) == REPLY
        lat = s.record.latency
        assert lat.ttft_s is not None and lat.total_s is not None and lat.ttft_s <= lat.total_s


async def test_async_and_many(models: list[fmgate.Model]) -> None:
    for m in models:
        rs = await m.agenerate_many(["a", "b", "c"], concurrency=3)
        assert [r.text for r in rs] == [REPLY] * 3
        await m.aclose()


def test_stats_count_requests(url: str, models: list[fmgate.Model]) -> None:
    before = stub_server_stats(url)["requests"]
    models[0].generate("x")
    assert stub_server_stats(url)["requests"] >= before + 1


def test_building_an_async_client_is_cold_start_not_latency(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import time

    from fmgate.backends import _http

    real = _http.PerLoop.get

    async def slow_build(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original = self._build

        def build():  # type: ignore[no-untyped-def]
            time.sleep(0.2)  # stands for building an SDK client and its TLS context
            return original()

        self._build = build
        try:
            return await real(self, *args, **kwargs)
        finally:
            self._build = original

    monkeypatch.setenv("OPENAI_API_KEY", "sk-stub-0000000000000000")
    m = fmgate.load("openai:gpt-4o-mini", base_url=f"{url}/v1")
    m.generate("warm")  # the sync client's cold start is reported on this call
    monkeypatch.setattr(_http.PerLoop, "get", slow_build)
    first = asyncio.run(m.agenerate("x")).record.latency
    assert first.load_s is not None and first.load_s >= 0.2
    assert first.total_s is not None and first.total_s < 0.2
