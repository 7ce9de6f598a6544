"""Tools and structured output on the Anthropic backend: fmgate.load -> the anthropic SDK ->
mocked HTTP in the documented wire format (tool use:
https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use; streamed tool
input: https://docs.anthropic.com/en/docs/build-with-claude/streaming; structured outputs:
https://platform.claude.com/docs/en/build-with-claude/structured-outputs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
import respx

import fmgate
from fmgate import (
    ConfigurationError,
    InvalidRequestError,
    MalformedResponseError,
    OutputValidationError,
    UnsupportedFeatureError,
)
from fmgate._tags import TOOL_LOOP
from fmgate._tools import ToolCall
from fmgate.backends._anthropic_tools import output_mode
from fmgate.backends.anthropic import AnthropicBackend, _StreamReader
from tests.backends import anthropic_wire as wire
from tests.backends.tool_fixtures import Conversion, get_time, get_weather

NATIVE_SPEC = "anthropic:claude-sonnet-4-5"  # a model with native structured output
# wire.SPEC (claude-3-5-haiku-latest) has none: structured output goes through a forced tool


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", wire.KEY)


@pytest.fixture
def model() -> Iterator[fmgate.Model]:
    with fmgate.load(wire.SPEC) as m:
        yield m


@pytest.fixture
def native() -> Iterator[fmgate.Model]:
    with fmgate.load(NATIVE_SPEC) as m:
        yield m


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city and state, e.g. San Francisco, CA."},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}
WEATHER = {  # OpenAI's function form, as a user would give a tool without its function
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": WEATHER_SCHEMA,
    },
}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}


# -- wire helpers --------------------------------------------------------------------------------


def tool_use(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def tool_message(*blocks: dict[str, Any], stop_reason: str = "tool_use") -> dict[str, Any]:
    """A message object whose content is ``blocks`` (text and tool_use)."""
    data = wire.message(stop_reason=stop_reason)
    data["content"] = list(blocks)
    return data


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def block_start(index: int, block: dict[str, Any]) -> bytes:
    event = {"type": "content_block_start", "index": index, "content_block": block}
    return wire.sse("content_block_start", event)


def json_delta(index: int, piece: str) -> bytes:
    delta = {"type": "input_json_delta", "partial_json": piece}
    return wire.sse(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def block_stop(index: int) -> bytes:
    return wire.sse("content_block_stop", {"type": "content_block_stop", "index": index})


def stream_end(stop_reason: str, output_tokens: int = 89) -> list[bytes]:
    return [
        wire.sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        ),
        wire.sse("message_stop", {"type": "message_stop"}),
    ]


def tool_block_events(index: int, call_id: str, name: str, pieces: list[str]) -> list[bytes]:
    """One streamed tool_use block: its start with an empty input, then its JSON in pieces (the
    first one empty, as in Anthropic's documented example)."""
    return [
        block_start(index, tool_use(call_id, name, {})),
        *(json_delta(index, p) for p in ["", *pieces]),
        block_stop(index),
    ]


def text_block_events(index: int, texts: list[str]) -> list[bytes]:
    return [
        block_start(index, text_block("")),
        *(wire.text_delta(t, index) for t in texts),
        block_stop(index),
    ]


def reply(router: respx.Router, *bodies: dict[str, Any]) -> respx.Route:
    responses = [httpx.Response(200, json=b) for b in bodies]
    return router.post(wire.API_URL).mock(side_effect=responses)


def stream_reply(router: respx.Router, events: list[bytes]) -> respx.Route:
    headers = {"content-type": "text/event-stream"}
    response = httpx.Response(200, headers=headers, content=b"".join(events))
    return router.post(wire.API_URL).mock(return_value=response)


def sent(route: respx.Route, call: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[call].request.content)
    return body


# -- the request ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ("get_time", {"type": "tool", "name": "get_time"}),
    ],
)
def test_tools_and_each_tool_choice_in_the_request(
    model: fmgate.Model, httpx2_mock: respx.Router, choice: str | None, expected: Any
) -> None:
    route = reply(httpx2_mock, wire.message())
    model.generate("Weather in SF?", tools=[WEATHER, TIME], tool_choice=choice)
    body = sent(route)
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "input_schema": WEATHER_SCHEMA,
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body.get("tool_choice") == expected
    assert "tool_choice" in body or expected is None


def conversation() -> list[dict[str, Any]]:
    """A turn with two parallel calls, both results, and a user's follow-up, in OpenAI's form."""
    calls = [
        {
            "id": "toolu_01A",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "toolu_01B",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"city": "Paris"}'},
        },
    ]
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18 degrees"},
        {"role": "tool", "tool_call_id": "toolu_01B", "name": "get_time", "content": "14:05"},
        {"role": "user", "content": "And in one sentence?"},
    ]


def test_tool_calls_and_results_become_blocks_and_parallel_results_one_user_message(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = reply(httpx2_mock, wire.message())
    model.generate(conversation(), tools=[get_weather, get_time])
    body = sent(route)
    assert body["system"] == "Be brief."
    assert body["messages"] == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                tool_use("toolu_01A", "get_weather", {"city": "Paris"}),
                tool_use("toolu_01B", "get_time", {"city": "Paris"}),
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18 degrees"},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "14:05"},
                {"type": "text", "text": "And in one sentence?"},
            ],
        },
    ]


def test_an_assistant_turn_of_calls_only_has_no_empty_text_block(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = reply(httpx2_mock, wire.message())
    messages = conversation()[1:5]
    messages[1] = {**messages[1], "content": None}
    model.generate(messages, tools=[get_weather, get_time])
    assert [b["type"] for b in sent(route)["messages"][1]["content"]] == ["tool_use", "tool_use"]


def test_the_tools_request_is_the_one_messages_create_sends(httpx2_mock: respx.Router) -> None:
    """The SDK's typed parameters (ToolParam, ToolChoiceToolParam, ToolUseBlockParam,
    ToolResultBlockParam) give the same body as fmgate's translation."""
    route = reply(httpx2_mock, wire.message(), wire.message())
    with fmgate.load(wire.SPEC) as m:
        m.generate(conversation()[1:5], tools=[WEATHER], tool_choice="get_weather")
    sdk = anthropic.Anthropic(api_key=wire.KEY, max_retries=0)
    sdk.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=4096,
        messages=[
            {"role": "user", "content": "Weather and time in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01A",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_01B",
                        "name": "get_time",
                        "input": {"city": "Paris"},
                    },
                ],
            },  # fmt: skip
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18 degrees"},
                    {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "14:05"},
                ],
            },
        ],
        tools=[
            {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "input_schema": WEATHER_SCHEMA,
            }
        ],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    sdk.close()
    assert sent(route, 0) == sent(route, 1)


def test_tools_and_tool_choice_are_not_taken_as_raw_parameters(model: fmgate.Model) -> None:
    with pytest.raises(InvalidRequestError, match="tools="):
        model.generate("Hi", anthropic_tools=[{"name": "x", "input_schema": {}}])
    with pytest.raises(InvalidRequestError, match="tool_choice="):
        model.generate("Hi", anthropic_tool_choice={"type": "any"})


# -- the reply -----------------------------------------------------------------------------------


def test_a_tool_use_reply_gives_parsed_tool_calls(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    reply(httpx2_mock, tool_message(tool_use("toolu_01A", "get_weather", {"city": "SF"})))
    r = model.generate("Weather in SF?", tools=[get_weather])
    assert r.text == "" and r.finish_reason == "tool_calls"
    assert r.tool_calls == (ToolCall("toolu_01A", "get_weather", {"city": "SF"}),)
    assert (r.record.tools.offered, r.record.tools.called) == (1, 1)
    assert r.record.outcome.finish_reason == "tool_calls"


def test_text_and_parallel_tool_uses_in_one_reply(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    reply(
        httpx2_mock,
        tool_message(
            text_block("I'll check both."),
            tool_use("toolu_01A", "get_weather", {"city": "Paris", "unit": "celsius"}),
            tool_use("toolu_01B", "get_time", {"city": "Paris"}),
        ),
    )
    r = model.generate("Weather and time in Paris?", tools=[get_weather, get_time])
    assert r.text == "I'll check both."
    assert [(c.id, c.name, dict(c.arguments)) for c in r.tool_calls] == [
        ("toolu_01A", "get_weather", {"city": "Paris", "unit": "celsius"}),
        ("toolu_01B", "get_time", {"city": "Paris"}),
    ]
    assert r.record.tools.called == 2


def test_a_tool_use_whose_input_is_not_an_object_is_a_malformed_reply(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    reply(httpx2_mock, tool_message(tool_use("toolu_01A", "get_weather", "SF")))
    with pytest.raises(MalformedResponseError, match="get_weather"):
        model.generate("Weather?", tools=[get_weather])


# -- streaming -----------------------------------------------------------------------------------


def documented_tool_stream() -> list[bytes]:
    """Text, then two tool_use blocks whose inputs arrive in pieces, as Anthropic streams them."""
    return [
        wire.message_start(wire.usage(472, 2)),
        *text_block_events(0, ["Okay", ", let's check"]),
        wire.sse("ping", {"type": "ping"}),
        *tool_block_events(1, "toolu_01T1", "get_weather", ['{"city":', ' "San Francisco, CA"}']),
        *tool_block_events(2, "toolu_01T2", "get_time", ['{"ci', 'ty": "SF"}']),
        *stream_end("tool_use"),
    ]


def test_a_stream_assembles_the_pieces_into_whole_tool_calls(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    stream_reply(httpx2_mock, documented_tool_stream())
    stream = model.stream("Weather in SF?", tools=[get_weather, get_time])
    assert [c.text for c in stream] == ["Okay", ", let's check"]
    r = stream.response
    assert r.finish_reason == "tool_calls"
    assert r.tool_calls == (
        ToolCall("toolu_01T1", "get_weather", {"city": "San Francisco, CA"}),
        ToolCall("toolu_01T2", "get_time", {"city": "SF"}),
    )
    assert r.record.tools.called == 2 and r.record.usage.output_tokens == 89


def test_the_assembled_calls_match_the_sdks_own_stream_accumulation(
    httpx2_mock: respx.Router,
) -> None:
    stream_reply(httpx2_mock, documented_tool_stream())
    sdk = anthropic.Anthropic(api_key=wire.KEY, max_retries=0)
    with sdk.messages.stream(
        model="claude-3-5-haiku-latest", max_tokens=64, messages=[{"role": "user", "content": "x"}]
    ) as s:
        final = s.get_final_message()
    sdk.close()
    theirs = [(b.id, b.name, b.input) for b in final.content if b.type == "tool_use"]
    reader = _StreamReader("anthropic")
    deltas = [d for e in documented_tool_stream() for d in reader.feed(e)]
    deltas += list(reader.finish())
    ours = [(c.id, c.name, dict(c.arguments)) for d in deltas for c in d.tool_calls]
    assert ours == theirs


def test_a_tool_call_without_arguments_streams_no_json(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    events = [
        wire.message_start(),
        *tool_block_events(0, "toolu_01", "now", []),
        *stream_end("tool_use"),
    ]
    stream_reply(httpx2_mock, events)

    def now() -> str:
        """The time."""
        return "noon"

    r = model.stream("Time?", tools=[now]).collect()
    assert r.tool_calls == (ToolCall("toolu_01", "now", {}),)


def test_a_streamed_tool_input_that_is_not_json_is_a_malformed_reply(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    events = [
        wire.message_start(),
        *tool_block_events(0, "toolu_01", "get_weather", ['{"city": "SF"']),
        *stream_end("tool_use"),
    ]
    stream_reply(httpx2_mock, events)
    with pytest.raises(MalformedResponseError, match="get_weather"):
        model.stream("Weather?", tools=[get_weather]).collect()


# -- async ---------------------------------------------------------------------------------------


def test_async_calls_send_and_read_tools_alike(httpx2_mock: respx.Router) -> None:
    route = reply(httpx2_mock, tool_message(tool_use("toolu_01A", "get_weather", {"city": "SF"})))

    async def main() -> tuple[fmgate.Response, fmgate.Response]:
        async with fmgate.load(wire.SPEC) as m:
            plain = await m.agenerate("Weather?", tools=[get_weather], tool_choice="required")
            stream_reply(httpx2_mock, documented_tool_stream())
            stream = m.astream("Weather?", tools=[get_weather, get_time])
            async for _ in stream:
                pass
            return plain, stream.response

    plain, streamed = asyncio.run(main())
    assert sent(route, 0)["tool_choice"] == {"type": "any"}
    assert plain.tool_calls == (ToolCall("toolu_01A", "get_weather", {"city": "SF"}),)
    assert [c.name for c in streamed.tool_calls] == ["get_weather", "get_time"]
    assert streamed.finish_reason == "tool_calls"


# -- a tool loop -----------------------------------------------------------------------------------


def test_run_tools_loops_through_tool_use_and_tool_result(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    route = reply(
        httpx2_mock,
        tool_message(
            tool_use("toolu_01A", "get_weather", {"city": "Oslo"}),
            tool_use("toolu_01B", "get_time", {"city": "Oslo"}),
        ),
        wire.message("It is 18 degrees at 14:05 in Oslo."),
    )
    r = model.generate("Weather and time in Oslo?", tools=[get_weather, get_time], run_tools=True)
    assert r.text == "It is 18 degrees at 14:05 in Oslo." and r.finish_reason == "stop"
    second = sent(route, 1)
    assert second["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                tool_use("toolu_01A", "get_weather", {"city": "Oslo"}),
                tool_use("toolu_01B", "get_time", {"city": "Oslo"}),
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A",
                    "content": "18 degrees celsius in Oslo",
                },
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "14:05 in Oslo"},
            ],
        },
    ]
    assert len(second["tools"]) == 2  # the API wants the tools whenever the messages use them
    first, last = memory.records
    assert first.tags[TOOL_LOOP] == last.tags[TOOL_LOOP]
    assert (first.tools.called, last.tools.called) == (2, 0)
    assert (first.outcome.finish_reason, last.outcome.finish_reason) == ("tool_calls", "stop")


# -- structured output -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "mode"),
    [
        ("claude-3-5-haiku-latest", "tool"),
        ("claude-3-7-sonnet-20250219", "tool"),
        ("claude-3-opus-20240229", "tool"),
        ("claude-sonnet-4-20250514", "tool"),
        ("claude-sonnet-4-0", "tool"),
        ("claude-opus-4-1-20250805", "tool"),
        ("claude-opus-4-1", "tool"),
        ("claude-opus-4-0", "tool"),
        ("claude-sonnet-4-5", "native"),
        ("claude-sonnet-4-5-20250929", "native"),
        ("claude-haiku-4-5-20251001", "native"),
        ("claude-opus-4-5", "native"),
        ("claude-opus-4-6", "native"),
        ("claude-sonnet-4-6", "native"),
    ],
)
def test_which_models_get_native_structured_output(model_id: str, mode: str) -> None:
    assert output_mode(model_id) == mode
    assert output_mode(model_id, "native") == "native"
    assert output_mode(model_id, "tool") == "tool"


def test_native_structured_output_sends_the_schema_in_output_config(
    native: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    route = reply(httpx2_mock, wire.message('{"value": 1.609, "unit": "km"}'))
    r = native.generate("1 mile in km?", output=Conversion)
    assert r.parsed == Conversion(value=1.609, unit="km") and r.text.startswith("{")
    body = sent(route)
    fmt = body["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    assert fmt["schema"]["properties"] == {
        "value": {"title": "Value", "type": "number"},
        "unit": {"title": "Unit", "type": "string"},
    }
    assert fmt["schema"]["additionalProperties"] is False
    assert "tools" not in body and "tool_choice" not in body
    (record,) = memory.records
    assert (record.output.schema, record.output.valid) == ("Conversion", True)
    assert isinstance(native.backend, AnthropicBackend) and native.backend.output_mode == "native"


def test_native_schema_moves_unsupported_constraints_out_and_keeps_other_output_config(
    native: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    """The API refuses ``minimum`` and the like in a structured-output schema; the SDK's
    transform moves them into the description (fmgate still validates the reply against them),
    and an ``output_config`` the caller gave keeps its other keys."""
    schema = {
        "title": "age",
        "type": "object",
        "properties": {"years": {"type": "integer", "minimum": 0}},
        "required": ["years"],
    }
    route = reply(httpx2_mock, wire.message('{"years": -3}'))
    with pytest.raises(OutputValidationError, match="years"):
        native.generate("How old?", output=schema, anthropic_output_config={"effort": "low"})
    config = sent(route)["output_config"]
    assert config["effort"] == "low"
    years = config["format"]["schema"]["properties"]["years"]
    assert years["type"] == "integer" and "minimum" not in years
    assert "minimum" in years["description"]


def test_forced_tool_structured_output_returns_the_input_as_text(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    route = reply(
        httpx2_mock,
        tool_message(tool_use("toolu_01", "Conversion", {"value": 1.609, "unit": "km"})),
    )
    r = model.generate("1 mile in km?", output=Conversion)
    assert r.parsed == Conversion(value=1.609, unit="km")
    assert json.loads(r.text) == {"value": 1.609, "unit": "km"}
    assert r.tool_calls == () and r.finish_reason == "stop"
    body = sent(route)
    (tool,) = body["tools"]
    assert tool["name"] == "Conversion"
    assert tool["input_schema"]["properties"].keys() == {"value", "unit"}
    assert body["tool_choice"] == {
        "type": "tool",
        "name": "Conversion",
        "disable_parallel_tool_use": True,
    }
    assert "output_config" not in body
    (record,) = memory.records
    assert record.output.valid is True and record.tools.offered is None
    assert isinstance(model.backend, AnthropicBackend) and model.backend.output_mode == "tool"


def test_forced_tool_structured_output_streams_the_json_as_text(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    events = [
        wire.message_start(),
        *tool_block_events(0, "toolu_01", "Conversion", ['{"value": 1.6', '09, "unit": "km"}']),
        *stream_end("tool_use"),
    ]
    stream_reply(httpx2_mock, events)
    stream = model.stream("1 mile in km?", output=Conversion)
    assert [c.text for c in stream] == ['{"value": 1.6', '09, "unit": "km"}']
    r = stream.response
    assert r.parsed == Conversion(value=1.609, unit="km")
    assert r.tool_calls == () and r.finish_reason == "stop"


def test_native_structured_output_streams_its_text(
    native: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    stream_reply(httpx2_mock, wire.stream_events(['{"value": 1.609,', ' "unit": "km"}']))
    r = native.stream("1 mile in km?", output=Conversion).collect()
    assert r.parsed == Conversion(value=1.609, unit="km")


def test_a_schema_whose_root_is_not_an_object_is_wrapped_for_the_tool(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    schema = {"title": "primes", "type": "array", "items": {"type": "integer"}}
    route = reply(httpx2_mock, tool_message(tool_use("toolu_01", "primes", {"value": [2, 3, 5]})))
    assert model.generate("Three primes", output=schema).parsed == [2, 3, 5]
    (tool,) = sent(route)["tools"]
    assert tool["input_schema"] == {
        "type": "object",
        "properties": {"value": {"title": "primes", "type": "array", "items": {"type": "integer"}}},
        "required": ["value"],
    }
    events = [
        wire.message_start(),
        *tool_block_events(0, "toolu_01", "primes", ['{"value": [2,', " 3]}"]),
        *stream_end("tool_use"),
    ]
    stream_reply(httpx2_mock, events)
    stream = model.stream("Two primes", output=schema)
    assert [c.text for c in stream] == ["[2, 3]"]
    assert stream.response.parsed == [2, 3]


def test_forced_output_beside_the_callers_tools(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    """The model may call a tool of the caller's (a tool call, no answer yet) or answer
    through the output tool; tool_choice="none" leaves it only the answer."""
    route = reply(
        httpx2_mock,
        tool_message(tool_use("toolu_01", "get_weather", {"city": "Oslo"})),
        tool_message(tool_use("toolu_02", "Conversion", {"value": 18, "unit": "C"})),
    )
    first = model.generate("Temperature in Oslo?", tools=[get_weather], output=Conversion)
    assert first.tool_calls[0].name == "get_weather" and first.parsed is None
    assert first.finish_reason == "tool_calls"
    body = sent(route, 0)
    assert [t["name"] for t in body["tools"]] == ["get_weather", "Conversion"]
    assert body["tool_choice"] == {"type": "any"}
    second = model.generate(
        "Temperature in Oslo?", tools=[get_weather], tool_choice="none", output=Conversion
    )
    assert second.parsed == Conversion(value=18, unit="C") and second.tool_calls == ()
    assert sent(route, 1)["tool_choice"]["name"] == "Conversion"


def test_a_load_setting_chooses_the_structured_output_path(httpx2_mock: respx.Router) -> None:
    route = reply(
        httpx2_mock, tool_message(tool_use("toolu_01", "Conversion", {"value": 1, "unit": "m"}))
    )
    with fmgate.load(NATIVE_SPEC, structured_output="tool") as m:
        assert m.generate("1 m?", output=Conversion).parsed == Conversion(value=1, unit="m")
    assert "output_config" not in sent(route) and sent(route)["tools"][0]["name"] == "Conversion"
    with pytest.raises(ConfigurationError, match="structured_output must be one of"):
        fmgate.load(NATIVE_SPEC, structured_output="grammar")


@pytest.mark.parametrize("spec", [wire.SPEC, NATIVE_SPEC])
def test_an_invalid_structured_reply_is_recorded_with_output_valid_false(
    spec: str, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    bad = {"value": "far", "unit": "km"}
    if spec == wire.SPEC:
        reply(httpx2_mock, tool_message(tool_use("toolu_01", "Conversion", bad)))
    else:
        reply(httpx2_mock, wire.message(json.dumps(bad)))
    with fmgate.load(spec) as m, pytest.raises(OutputValidationError, match="value") as caught:
        m.generate("1 mile in km?", output=Conversion)
    assert json.loads(caught.value.text) == bad
    (record,) = memory.records
    assert record.outcome.status == "error" and record.outcome.error_type == "OutputValidationError"
    assert (record.output.schema, record.output.valid) == ("Conversion", False)
    assert record.usage.output_tokens == 6  # the reply came back: its tokens are counted


def test_a_forced_output_tool_with_extended_thinking_is_refused_before_sending(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    with pytest.raises(UnsupportedFeatureError, match="extended thinking") as caught:
        model.generate("1 mile in km?", output=Conversion, anthropic_thinking=thinking)
    assert caught.value.feature == "output"
    assert not httpx2_mock.calls  # nothing was sent
