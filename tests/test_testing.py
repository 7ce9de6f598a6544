"""fmgate.testing.stub_server: both wires end to end over real loopback sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import BaseModel

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


# -- tools and structured output: the stub answers by the schemas ---------------------------------


def _answer(path: bytes, request: dict[str, object]) -> dict[str, object]:
    import json

    from fmgate.testing._stub_server import respond

    raw = respond(b"POST", path, json.dumps(request).encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    data: dict[str, object] = json.loads(body)
    return data


WEATHER = {
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
    },
}


@pytest.mark.parametrize(
    "schema",
    [
        WEATHER["parameters"],
        {"type": "array", "items": {"type": "integer", "minimum": 3}, "minItems": 2},
        {"$defs": {"P": {"type": "number", "exclusiveMinimum": 5}}, "$ref": "#/$defs/P"},
        {"anyOf": [{"type": "null"}, {"type": "string"}]},
        {"type": ["string", "null"], "minLength": 4},
    ],
)
def test_the_stubs_example_is_valid_against_its_schema(schema: dict[str, object]) -> None:
    import jsonschema

    from fmgate.testing._stub_server import example

    jsonschema.validate(example(schema), schema)


def test_the_openai_stub_calls_the_tool_then_reads_its_result() -> None:
    tools = [{"type": "function", "function": WEATHER}]
    first = _answer(
        b"/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "w"}], "tools": tools},
    )
    choice = first["choices"][0]  # type: ignore[index]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "x", "unit": "c"}'}
    result = {"role": "tool", "tool_call_id": call["id"], "content": "21C"}
    second = _answer(b"/v1/chat/completions", {"model": "m", "messages": [result], "tools": tools})
    assert second["choices"][0]["message"]["content"] == "The tool said: 21C"  # type: ignore[index]


class Point(BaseModel):
    x: int
    label: str


def get_weather(city: str) -> str:
    """Weather in a city."""
    return f"21C in {city}"


@pytest.mark.parametrize("streamed", [False, True])
def test_the_stubs_answer_tools_and_structured_output_through_fmgate(
    models: list[fmgate.Model], streamed: bool
) -> None:
    for m in models:
        if streamed:
            stream = m.stream("Weather in Paris?", tools=[get_weather])
            list(stream)
            call = stream.response.tool_calls[0]
        else:
            call = m.generate("Weather in Paris?", tools=[get_weather]).tool_calls[0]
        assert (call.name, call.arguments) == ("get_weather", {"city": "x"}), m.spec
        done = m.generate("Weather in Paris?", tools=[get_weather], run_tools=True)
        assert done.text == "The tool said: 21C in x", m.spec
        assert m.generate("A point", output=Point).parsed == Point(x=1, label="x"), m.spec
