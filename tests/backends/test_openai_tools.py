"""Tools and structured output on the OpenAI wire backend: fmgate.load -> the openai SDK -> mocked
HTTP in the documented wire format (function calling:
https://platform.openai.com/docs/guides/function-calling; streamed tool calls as
``delta.tool_calls[i]`` pieces: https://platform.openai.com/docs/api-reference/chat-streaming;
structured outputs: https://platform.openai.com/docs/guides/structured-outputs). The
OpenAI-compatible rows (vLLM here) go through the same code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

import fmgate
from fmgate import InvalidRequestError, MalformedResponseError, OutputValidationError
from fmgate._tags import TOOL_LOOP
from fmgate._tools import ToolCall, to_output, to_tools
from fmgate.backends.openai import OpenAIBackend, _ChunkReader
from tests.backends.tool_fixtures import Conversion, get_time, get_weather

from . import openai_wire as wire

CHAT_URL = "https://api.openai.com/v1/chat/completions"
VLLM_URL = "http://127.0.0.1:8000/v1"
KEY = "sk-test-canary0123456789abcdefABCDEF"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.fixture
def model() -> Iterator[fmgate.Model]:
    with fmgate.load("openai:gpt-4o-mini") as m:
        yield m


STRICT_WEATHER: dict[str, Any] = {  # fits strict mode: every property required, no others allowed
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City and country e.g. Bogota"},
                "units": {"type": ["string", "null"], "enum": ["celsius", "fahrenheit", None]},
            },
            "required": ["location", "units"],
            "additionalProperties": False,
        },
    },
}


# -- wire helpers --------------------------------------------------------------------------------


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """One entry of ``message.tool_calls``: arguments are a JSON string, as the API sends."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_completion(*calls: dict[str, Any], content: str | None = None) -> dict[str, Any]:
    body = wire.chat_completion(content, finish_reason="tool_calls", usage_=wire.usage(82, 17))
    body["choices"][0]["message"]["tool_calls"] = list(calls)
    return body


def piece(
    index: int, *, call_id: str | None = None, name: str | None = None, args: str | None = None
) -> dict[str, Any]:
    """One ``delta.tool_calls`` entry: the first piece of a call carries its id and name (and
    empty arguments), the next ones fragments of the arguments."""
    out: dict[str, Any] = {"index": index}
    function: dict[str, Any] = {}
    if call_id is not None:
        out |= {"id": call_id, "type": "function"}
        function["name"] = name
    if args is not None:
        function["arguments"] = args
    out["function"] = function
    return out


def tool_stream(*pieces: dict[str, Any], text: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """A whole streamed reply: a role chunk, text chunks, one chunk per tool call piece, the
    finish reason and the usage chunk, as OpenAI sends them with include_usage."""
    events = [wire.chunk({"role": "assistant", "content": None, "refusal": None})]
    events += [wire.chunk({"content": t}) for t in text]
    events += [wire.chunk({"tool_calls": [p]}) for p in pieces]
    events.append(wire.chunk({}, finish_reason="tool_calls"))
    events.append(wire.chunk(None, usage_=wire.usage(82, 17)))
    return events


def split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def reply(router: respx.Router, *bodies: Any, url: str = CHAT_URL) -> respx.Route:
    """Answer successive POSTs with ``bodies`` in turn: a dict as JSON, a list of chunks as SSE."""
    responses = [
        httpx.Response(200, content=wire.sse(b), headers={"content-type": "text/event-stream"})
        if isinstance(b, list)
        else httpx.Response(200, json=b)
        for b in bodies
    ]
    return router.post(url).mock(side_effect=responses)


def sent(route: respx.Route, n: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[n].request.content)
    return body


# -- requests ------------------------------------------------------------------------------------


def test_tools_go_in_openai_function_form_strict_only_where_the_schema_fits(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = reply(httpx2_mock, wire.chat_completion("ok"))
    model.generate("Weather?", tools=[get_weather, STRICT_WEATHER["function"] | {"name": "w2"}])
    tools = sent(route)["tools"]
    # an optional argument: strict mode would refuse the schema, so it is not marked strict
    parameters = to_tools([get_weather])[0].parameters
    assert parameters["required"] == ["city"]
    assert tools[0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": parameters,
        },
    }
    strict = STRICT_WEATHER["function"] | {"name": "w2", "strict": True}
    assert tools[1] == {"type": "function", "function": strict}
    assert "tool_choice" not in sent(route) and "response_format" not in sent(route)


def test_strict_tools_false_never_marks_a_tool_strict(httpx2_mock: respx.Router) -> None:
    route = reply(httpx2_mock, wire.chat_completion("ok"))
    with fmgate.load("openai:gpt-4o-mini", strict_tools=False) as m:
        m.generate("Weather?", tools=[STRICT_WEATHER])
    assert "strict" not in sent(route)["tools"][0]["function"]


@pytest.mark.parametrize(
    ("choice", "on_the_wire"),
    [
        ("auto", "auto"),
        ("required", "required"),
        ("none", "none"),
        ("get_time", {"type": "function", "function": {"name": "get_time"}}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"type": "function", "function": {"name": "get_time"}},
        ),
    ],
)
def test_tool_choice_forms(
    model: fmgate.Model, httpx2_mock: respx.Router, choice: Any, on_the_wire: Any
) -> None:
    route = reply(httpx2_mock, wire.chat_completion("ok"))
    r = model.generate("x", tools=[get_weather, get_time], tool_choice=choice)
    assert sent(route)["tool_choice"] == on_the_wire
    assert r.record.tools.choice == (choice if isinstance(choice, str) else "get_time")


def test_tool_calls_and_results_go_back_in_openai_message_form(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = reply(httpx2_mock, wire.chat_completion("It is 18C and 14:05."))
    calls = [
        tool_call("call_1", "get_weather", '{"city": "Paris"}'),
        tool_call("call_2", "get_time", "{}"),
    ]
    model.generate(
        [
            {"role": "user", "content": "Weather and time in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "14:05", "name": "get_time"},
            {"role": "assistant", "content": "Anything else?", "tool_calls": [calls[0]]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        ],
        tools=[get_weather, get_time],
    )
    assert sent(route)["messages"] == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                tool_call("call_1", "get_weather", '{"city": "Paris"}'),
                tool_call("call_2", "get_time", "{}"),
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "14:05"},
        {
            "role": "assistant",
            "content": "Anything else?",
            "tool_calls": [tool_call("call_1", "get_weather", '{"city": "Paris"}')],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]


def test_output_asks_for_a_strict_json_schema_response_format(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = reply(httpx2_mock, wire.chat_completion('{"value": 3.1, "unit": "mi"}'))
    r = model.generate("5 km in miles?", output=Conversion)
    schema = dict(to_output(Conversion).schema)  # type: ignore[union-attr]
    assert schema["additionalProperties"] is False  # closed, so strict mode takes it
    assert sent(route)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Conversion", "schema": schema, "strict": True},
    }
    assert r.parsed == Conversion(value=3.1, unit="mi")
    assert r.record.output.mode == "native" and r.record.output.valid is True


def test_a_schema_that_does_not_fit_strict_mode_is_sent_with_strict_false(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    schema = {
        "title": "unit conversion!",  # not a valid response_format name: sanitised
        "type": "object",
        "properties": {"value": {"type": "number"}, "unit": {"type": "string"}},
        "required": ["value"],
    }
    route = reply(httpx2_mock, wire.chat_completion('{"value": 3}'))
    r = model.generate("x", output=schema)
    assert sent(route)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "unit_conversion_", "schema": schema, "strict": False},
    }
    assert r.parsed == {"value": 3}


def test_body_keys_that_tools_and_output_own_cannot_be_overridden(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    with pytest.raises(InvalidRequestError, match="'response_format'"):
        model.generate("x", output=Conversion, openai_response_format={"type": "json_object"})
    assert memory.records[-1].outcome.sent is False
    route = reply(httpx2_mock, wire.chat_completion("{}"), wire.chat_completion("ok"))
    model.generate("x", openai_response_format={"type": "json_object"})  # no output=: theirs
    model.generate("x", tools=[get_weather], openai_parallel_tool_calls=False)
    assert sent(route, 0)["response_format"] == {"type": "json_object"}
    assert sent(route, 1)["parallel_tool_calls"] is False


# -- responses -----------------------------------------------------------------------------------


def test_a_tool_call_comes_back_parsed(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    reply(httpx2_mock, tool_completion(tool_call("call_abc", "get_weather", '{"city": "Paris"}')))
    r = model.generate("Weather in Paris?", tools=[get_weather])
    assert r.tool_calls == (ToolCall("call_abc", "get_weather", {"city": "Paris"}),)
    assert (r.text, r.finish_reason) == ("", "tool_calls")
    record = r.record
    assert (record.tools.offered, record.tools.choice, record.tools.called) == (1, "auto", 1)
    assert record.outcome.finish_reason == "tool_calls" and record.usage.output_tokens == 17


def test_parallel_tool_calls_keep_their_order_and_ids(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    body = tool_completion(
        tool_call("call_1", "get_weather", '{"city": "Paris", "unit": "fahrenheit"}'),
        tool_call("call_2", "get_time", '{"city": "Tokyo"}'),
        content="Checking both.",
    )
    reply(httpx2_mock, body)
    r = model.generate("x", tools=[get_weather, get_time])
    assert r.tool_calls == (
        ToolCall("call_1", "get_weather", {"city": "Paris", "unit": "fahrenheit"}),
        ToolCall("call_2", "get_time", {"city": "Tokyo"}),
    )
    assert r.text == "Checking both." and r.record.tools.called == 2


def test_a_server_that_says_stop_with_tool_calls_reads_as_tool_calls(
    httpx2_mock: respx.Router,
) -> None:
    body = tool_completion(tool_call("call_0", "get_time", '{"city": "Oslo"}'))
    body["choices"][0]["finish_reason"] = "stop"
    del body["choices"][0]["message"]["tool_calls"][0]["type"]
    reply(httpx2_mock, body, url=f"{VLLM_URL}/chat/completions")
    with fmgate.load("vllm:qwen", base_url=VLLM_URL) as m:
        r = m.generate("x", tools=[get_time])
    assert r.finish_reason == "tool_calls" and r.tool_calls[0].arguments == {"city": "Oslo"}


@pytest.mark.parametrize("arguments", ['{"city": "Par', '["Paris"]'])
def test_malformed_arguments_are_a_malformed_response_that_shows_them(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink, arguments: str
) -> None:
    reply(httpx2_mock, tool_completion(tool_call("call_1", "get_weather", arguments)))
    with pytest.raises(MalformedResponseError, match="get_weather") as info:
        model.generate("x", tools=[get_weather])
    assert arguments in str(info.value) and str(info.value).startswith("openai: ")
    assert not isinstance(info.value, OutputValidationError)
    record = memory.records[-1]
    assert record.outcome.error_type == "MalformedResponseError"
    assert arguments in (record.outcome.error_message or "")


def test_a_tool_call_without_a_function_is_malformed(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    reply(httpx2_mock, tool_completion({"id": "call_1", "type": "function"}))
    with pytest.raises(MalformedResponseError, match="chat.completion"):
        model.generate("x", tools=[get_weather])


async def test_agenerate_reads_tool_calls(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    route = reply(httpx2_mock, tool_completion(tool_call("call_9", "get_time", '{"city": "Rome"}')))
    r = await model.agenerate("x", tools=[get_time], tool_choice="get_time")
    assert r.tool_calls == (ToolCall("call_9", "get_time", {"city": "Rome"}),)
    assert sent(route)["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    await model.aclose()


# -- streams -------------------------------------------------------------------------------------


def test_a_stream_assembles_arguments_split_over_many_chunks(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    args = '{"city": "San Francisco, CA", "unit": "fahrenheit"}'
    pieces = [piece(0, call_id="call_DdmO9pD3", name="get_weather", args="")]
    pieces += [piece(0, args=a) for a in split(args, 3)]
    reply(httpx2_mock, tool_stream(*pieces, text=("Let me ", "check.")))
    stream = model.stream("x", tools=[get_weather])
    assert [c.text for c in stream] == ["Let me ", "check."]  # text flows as it comes
    r = stream.response
    assert r.tool_calls == (
        ToolCall(
            "call_DdmO9pD3", "get_weather", {"city": "San Francisco, CA", "unit": "fahrenheit"}
        ),
    )
    assert r.finish_reason == "tool_calls" and r.text == "Let me check."
    assert r.record.tools.called == 1 and r.record.usage.output_tokens == 17


def two_interleaved_calls() -> list[dict[str, Any]]:
    """Two parallel calls whose pieces alternate, as a server may send them."""
    first, second = split('{"city": "Paris"}', 4), split('{"city": "Tokyo"}', 5)
    pieces = [
        piece(0, call_id="call_A", name="get_weather", args=""),
        piece(1, call_id="call_B", name="get_time", args=""),
    ]
    for i in range(max(len(first), len(second))):
        pieces += [piece(0, args=first[i])] if i < len(first) else []
        pieces += [piece(1, args=second[i])] if i < len(second) else []
    return tool_stream(*pieces)


def test_parallel_calls_interleaved_by_index_are_assembled_apart(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    reply(httpx2_mock, two_interleaved_calls())
    stream = model.stream("x", tools=[get_weather, get_time])
    assert list(stream) == []
    assert stream.response.tool_calls == (
        ToolCall("call_A", "get_weather", {"city": "Paris"}),
        ToolCall("call_B", "get_time", {"city": "Tokyo"}),
    )
    assert stream.record.tools.called == 2


@pytest.mark.parametrize(
    "events",
    [
        two_interleaved_calls(),
        tool_stream(
            piece(0, call_id="c", name="get_time", args=""),
            piece(0, args='{"city"'),
            piece(0, args=': "Oslo"}'),
        ),
    ],
)
def test_the_assembled_calls_match_the_sdks_own_accumulation(events: list[dict[str, Any]]) -> None:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for event in events:
        state.handle_chunk(ChatCompletionChunk.model_validate(event))
    message = state.get_final_completion().choices[0].message
    theirs = [
        (c.id, c.function.name, json.loads(c.function.arguments))
        for c in message.tool_calls or []
        if c.type == "function"
    ]
    reader = _ChunkReader("openai", "text/event-stream")
    deltas = [*reader.feed(wire.sse(events)), *reader.finish()]
    ours = [(c.id, c.name, dict(c.arguments)) for d in deltas for c in d.tool_calls]
    assert ours == theirs


def test_whole_calls_streamed_without_an_index_are_told_apart_by_id(
    httpx2_mock: respx.Router,
) -> None:
    """Some compatible servers send each call whole in one chunk, without ``index``."""
    whole = [
        {
            "id": "call_x",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"city": "Oslo"}'},
        },
        {
            "id": "call_y",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"city": "Lima"}'},
        },
    ]
    events = tool_stream()
    events[1:1] = [wire.chunk({"tool_calls": [call]}) for call in whole]
    events[-2] = wire.chunk({}, finish_reason="stop")
    reply(httpx2_mock, events, url=f"{VLLM_URL}/chat/completions")
    with fmgate.load("vllm:qwen", base_url=VLLM_URL) as m:
        stream = m.stream("x", tools=[get_time])
        list(stream)
    r = stream.response
    assert [c.id for c in r.tool_calls] == ["call_x", "call_y"]
    assert [c.arguments["city"] for c in r.tool_calls] == ["Oslo", "Lima"]
    assert r.finish_reason == "tool_calls"


def test_malformed_streamed_arguments_fail_the_stream_showing_them(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    pieces = [piece(0, call_id="call_1", name="get_time", args='{"city": '), piece(0, args="Oslo}")]
    reply(httpx2_mock, tool_stream(*pieces))
    stream = model.stream("x", tools=[get_time])
    with pytest.raises(MalformedResponseError, match=r"get_time.*city.*Oslo"):
        list(stream)
    assert memory.records[-1].outcome.error_type == "MalformedResponseError"


async def test_astream_assembles_tool_calls(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    reply(httpx2_mock, two_interleaved_calls())
    stream = model.astream("x", tools=[get_weather, get_time])
    assert [c.text async for c in stream] == []
    assert [c.id for c in stream.response.tool_calls] == ["call_A", "call_B"]
    assert stream.response.finish_reason == "tool_calls"
    await model.aclose()


def test_a_stream_without_usage_counts_tool_call_chunks_as_an_estimate(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    pieces = [piece(0, call_id="call_1", name="get_time", args="")]
    pieces += [piece(0, args=a) for a in split('{"city": "Oslo"}', 4)]
    reply(httpx2_mock, tool_stream(*pieces)[:-1])  # a server that ignores include_usage
    stream = model.stream("x", tools=[get_time])
    list(stream)
    usage = stream.record.usage
    assert (usage.output_tokens, usage.source) == (5, "estimate")
    assert stream.response.tool_calls[0].arguments == {"city": "Oslo"}


# -- the tool loop -------------------------------------------------------------------------------


def test_run_tools_loop_calls_the_tool_and_sends_its_result_back(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    route = reply(
        httpx2_mock,
        tool_completion(tool_call("call_w", "get_weather", '{"city": "Paris"}')),
        wire.chat_completion("It is 18 degrees in Paris."),
    )
    r = model.generate("Weather in Paris?", tools=[get_weather], run_tools=True)
    assert r.text == "It is 18 degrees in Paris." and r.finish_reason == "stop"
    assert sent(route, 1)["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [tool_call("call_w", "get_weather", '{"city": "Paris"}')],
        },
        {"role": "tool", "tool_call_id": "call_w", "content": "18 degrees celsius in Paris"},
    ]
    first, second = memory.records
    assert first.tags[TOOL_LOOP] == second.tags[TOOL_LOOP]
    assert (first.tools.called, second.tools.called) == (1, 0)
    assert first.outcome.finish_reason == "tool_calls" and second.outcome.status == "ok"


async def test_async_run_tools_loop(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    reply(
        httpx2_mock,
        tool_completion(
            tool_call("call_1", "get_weather", '{"city": "Oslo"}'),
            tool_call("call_2", "get_time", '{"city": "Oslo"}'),
        ),
        wire.chat_completion("Cold, and 14:05."),
    )
    r = await model.agenerate("x", tools=[get_weather, get_time], run_tools=True)
    assert r.text == "Cold, and 14:05."
    assert [m.role for m in r.messages] == ["user", "assistant", "tool", "tool", "assistant"]
    await model.aclose()


# -- structured output ---------------------------------------------------------------------------


def test_an_invalid_reply_raises_output_validation_error_with_usage_kept(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    reply(httpx2_mock, wire.chat_completion('{"value": "three", "unit": "mi"}'))
    with pytest.raises(OutputValidationError, match="value") as info:
        model.generate("5 km in miles?", output=Conversion)
    assert info.value.text == '{"value": "three", "unit": "mi"}'
    record = memory.records[-1]
    assert record is info.value.record
    assert record.outcome.status == "error" and record.outcome.error_type == "OutputValidationError"
    assert record.output.valid is False and record.output.schema == "Conversion"
    assert (record.usage.input_tokens, record.usage.output_tokens) == (12, 5)
    assert record.cost.amount is not None  # a billed reply keeps its price


def test_a_refusal_with_output_is_an_output_validation_error_that_keeps_it(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    body = wire.chat_completion(None)
    body["choices"][0]["message"]["refusal"] = "I'm sorry, I cannot assist with that request."
    reply(httpx2_mock, body)
    with pytest.raises(OutputValidationError, match="refused to answer as Conversion") as info:
        model.generate("x", output=Conversion)
    assert info.value.text == "I'm sorry, I cannot assist with that request."
    record = memory.records[-1]
    assert record.outcome.finish_reason == "content_filter"
    assert record.output.valid is False and record.usage.output_tokens == 5


def test_a_streamed_refusal_is_the_text_and_says_content_filter(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    events = [wire.chunk({"role": "assistant", "content": None, "refusal": ""})]
    events += [wire.chunk({"refusal": t}) for t in ("I'm sorry, ", "I can't.")]
    events += [wire.chunk({}, finish_reason="stop"), wire.chunk(None, usage_=wire.usage())]
    reply(httpx2_mock, events)
    stream = model.stream("x", output=Conversion)
    with pytest.raises(OutputValidationError):
        list(stream)
    assert stream.response.text == "I'm sorry, I can't."
    assert stream.record.outcome.finish_reason == "content_filter"


def test_streamed_structured_output_is_parsed_at_the_end(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    reply(httpx2_mock, wire.stream_chunks(split('{"value": 3.1, "unit": "mi"}', 5)))
    stream = model.stream("x", output=Conversion)
    list(stream)
    assert stream.response.parsed == Conversion(value=3.1, unit="mi")


# -- a self-hosted row ---------------------------------------------------------------------------


def test_a_self_hosted_row_runs_the_same_loop_and_structured_output(
    httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    route = reply(
        httpx2_mock,
        tool_completion(tool_call("chatcmpl-tool-1", "get_weather", '{"city": "Paris"}')),
        wire.chat_completion("18 degrees."),
        wire.chat_completion('{"value": 3.1, "unit": "mi"}'),
        url=f"{VLLM_URL}/chat/completions",
    )
    with fmgate.load("vllm:Qwen/Qwen2.5-7B-Instruct", base_url=VLLM_URL) as m:
        assert m.generate("x", tools=[get_weather], run_tools=True).text == "18 degrees."
        assert m.generate("x", output=Conversion).parsed == Conversion(value=3.1, unit="mi")
    assert sent(route, 0)["tools"][0]["function"]["name"] == "get_weather"
    assert sent(route, 1)["messages"][-1]["role"] == "tool"
    assert sent(route, 2)["response_format"]["json_schema"]["strict"] is True
    records = memory.records
    assert {r.distribution for r in records} == {"self_hosted"}
    assert records[0].tags[TOOL_LOOP] == records[1].tags[TOOL_LOOP]
    assert records[2].output.valid is True


def test_the_backend_declares_tools_and_output(model: fmgate.Model) -> None:
    assert isinstance(model.backend, OpenAIBackend)
    assert model.backend.features == frozenset({"images", "tools", "output"})
