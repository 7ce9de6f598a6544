"""Tools and structured output through ``fmgate serve``, as the clients users run send them: the
official openai SDK (tool calls, streamed tool calls, ``parse()`` into a Pydantic model) and
LangChain's ``bind_tools`` / ``with_structured_output``, unmodified, against a loopback server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import openai
import pydantic
import pytest
from pydantic import BaseModel

import fmgate
from fmgate._errors import FmgateError
from fmgate._record import Usage
from fmgate._tools import ToolCall
from fmgate._types import ChatRequest, Completion, Delta, OnText
from fmgate.serve import serving
from tests.fakes import FakeBackend, FakeBatchingBackend, fake_config

from .conftest import chat_body, request


class Tooled(FakeBackend):
    """A backend that honours tools and structured output, by script: with tools it calls the
    chosen one (the first for auto/required) for Paris (with its temperature where the tool takes
    one), and for Oslo too if asked about "both"; after a tool result it says what the tool
    returned; with an output schema it writes a Weather as JSON (half of one if the prompt says
    "broken"); otherwise it answers in capitals."""

    features = frozenset({"tools", "output"})

    def _reply(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        last = request.messages[-1]
        usage = Usage(11, 4, source="estimate")
        if last.role == "tool":
            return Completion(f"{last.name} says {last.content}", "stop", usage, "tooled-1")
        if request.tools and request.tool_choice != "none":
            chosen = request.tool_choice
            tool = next((t for t in request.tools if t.name == chosen), request.tools[0])
            weather = {"celsius": 21} if "celsius" in tool.parameters.get("properties", {}) else {}
            calls = [ToolCall("call_0", tool.name, {"city": "Paris", **weather})]
            if "both" in last.content:
                calls.append(ToolCall("call_1", tool.name, {"city": "Oslo", **weather}))
            return Completion("", "tool_calls", usage, "tooled-1", tool_calls=tuple(calls))
        if request.output is not None:
            text = '{"city": "Paris", "celsius": 21}'
            return Completion(text[:12] if "broken" in last.content else text, "stop", usage)
        return Completion(last.content.upper(), "stop", usage, "tooled-1")

    def _deltas(self, request: ChatRequest) -> list[Delta]:
        done = self._reply(request)
        pieces = [Delta(text=done.text[i : i + 5]) for i in range(0, len(done.text), 5)]
        end = Delta(finish_reason=done.finish_reason, usage=done.usage, tool_calls=done.tool_calls)
        return [*pieces, end]


class Weather(BaseModel):
    city: str
    celsius: int


class GetWeather(BaseModel):
    """The weather in a city now."""

    city: str


WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
FORMAT: Any = {
    "type": "json_schema",
    "json_schema": {"name": "Weather", "schema": Weather.model_json_schema(), "strict": True},
}
CHOOSE_TIME = {"type": "function", "function": {"name": "get_time"}}
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.fixture
def tooled() -> Tooled:
    return Tooled(fake_config("tooled"))


@pytest.fixture
def url(tooled: Tooled, echo: fmgate.Model) -> Iterator[str]:
    """``tooled`` honours tools and structured output; ``echo`` has neither."""
    with serving({"tooled": fmgate.Model(tooled), "echo": echo}) as base_url:
        yield base_url


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="-", max_retries=0)


# -- tools --------------------------------------------------------------------------------------


def test_a_tool_call_and_its_result_round_trip_through_the_sdk(url: str, tooled: Tooled) -> None:
    with client(url) as sdk:
        first = sdk.chat.completions.create(model="tooled", messages=ASK, tools=[WEATHER_TOOL])
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert call.type == "function" and call.id == "call_0"
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        result = {"role": "tool", "tool_call_id": call.id, "content": "21C and sunny"}
        messages = [*ASK, choice.message, result]  # the message as the SDK gave it
        second = sdk.chat.completions.create(
            model="tooled", messages=messages, tools=[WEATHER_TOOL]
        )
    assert second.choices[0].message.content == "get_weather says 21C and sunny"
    assert second.choices[0].finish_reason == "stop"
    (tool,) = tooled.requests[0].tools
    assert tool.to_openai() == WEATHER_TOOL
    assistant = tooled.requests[1].messages[1]
    assert assistant.tool_calls == (ToolCall("call_0", "get_weather", {"city": "Paris"}),)


def test_streamed_tool_calls_are_assembled_by_the_sdk(url: str) -> None:
    """The SDK's stream helper puts the pieces together by index, and parses the arguments of a
    strict tool into its Pydantic model."""
    prompt = [{"role": "user", "content": "The weather in both cities?"}]
    with client(url) as sdk:
        with sdk.chat.completions.stream(
            model="tooled", messages=prompt, tools=[openai.pydantic_function_tool(GetWeather)]
        ) as stream:
            final = stream.get_final_completion()
        raw = list(
            sdk.chat.completions.create(
                model="tooled", messages=prompt, tools=[WEATHER_TOOL], stream=True
            )
        )
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.parsed_arguments for c in calls] == [
        GetWeather(city="Paris"),
        GetWeather(city="Oslo"),
    ]
    assert [c.id for c in calls] == ["call_0", "call_1"]
    # OpenAI's order: the calls (one chunk each, by index), then the finish reason on its own.
    pieces = [c.choices[0] for c in raw]
    assert [p.delta.tool_calls[0].index for p in pieces if p.delta.tool_calls] == [0, 1]
    assert [p.finish_reason for p in pieces] == [None, None, None, "tool_calls"]


@pytest.mark.parametrize(
    ("choice", "asked", "called"),
    [
        ("auto", "auto", "get_weather"),
        ("required", "required", "get_weather"),
        (CHOOSE_TIME, "get_time", "get_time"),
        ("none", "none", None),
    ],
)
def test_each_form_of_tool_choice_reaches_the_model(
    url: str, tooled: Tooled, choice: Any, asked: str, called: str | None
) -> None:
    with client(url) as sdk:
        reply = sdk.chat.completions.create(
            model="tooled", messages=ASK, tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=choice
        )
    assert tooled.requests[-1].tool_choice == asked
    calls = reply.choices[0].message.tool_calls
    assert (calls[0].function.name if calls else None) == called


def test_tool_choice_without_tools_is_a_no_op_when_it_chooses_nothing(url: str) -> None:
    with client(url) as sdk:
        for choice in ("none", "auto"):
            reply = sdk.chat.completions.create(model="echo", messages=ASK, tool_choice=choice)
            assert reply.choices[0].message.content == ASK[0]["content"].upper()


@pytest.mark.parametrize("stream", [False, True])
def test_a_model_without_tools_refuses_them_with_a_400_naming_them(url: str, stream: bool) -> None:
    with client(url) as sdk, pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="echo", messages=ASK, tools=[WEATHER_TOOL], stream=stream)
    assert caught.value.param == "tools"
    assert "cannot take tools" in caught.value.message
    assert "will not drop it silently" in caught.value.message


def test_a_model_without_tools_refuses_a_conversation_holding_tool_calls(url: str) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]
    with client(url) as sdk, pytest.raises(openai.BadRequestError, match="cannot take tools"):
        sdk.chat.completions.create(model="echo", messages=messages)


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        ({"tools": [{"type": "function"}]}, "tools[0].function", "Missing required parameter"),
        ({"tools": [{"type": "custom", "custom": {}}]}, "tools[0].type", "function tools"),
        ({"tools": [WEATHER_TOOL, WEATHER_TOOL]}, "tools", "unique"),
        ({"tools": [WEATHER_TOOL], "tool_choice": "get_time"}, "tool_choice", '"required" or'),
        ({"tools": [WEATHER_TOOL], "tool_choice": CHOOSE_TIME}, "tool_choice", "names no tool"),
        ({"tool_choice": "required"}, "tool_choice", "needs tools"),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "x"}}, "tool_choice", "tool_choice"),
        ({"response_format": {"type": "yaml"}}, "response_format", "json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "w"}}},
            "response_format.json_schema.schema",
            "JSON schema",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "w", "schema": {"type": 5}},
                }
            },
            "response_format.json_schema.schema",
            "not a valid JSON schema",
        ),
        (
            {"messages": [*ASK, {"role": "tool", "tool_call_id": "c1", "content": "x"}]},
            "messages[1].role",
            "must answer a tool call",
        ),
        (
            {
                "messages": [
                    *ASK,
                    {"role": "assistant", "content": None, "tool_calls": [CALL]},
                    {"role": "tool", "tool_call_id": "c2", "content": "x"},
                ]
            },
            "messages[2].tool_call_id",
            "'c1'",
        ),
        (
            {
                "messages": [
                    *ASK,
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "[1]"}}],
                    },
                ]
            },
            "messages[1].tool_calls[0]",
            "not an object",
        ),
    ],
)
def test_malformed_tools_and_formats_are_400_with_the_field_at_fault(
    url: str, extra: dict[str, Any], param: str, words: str
) -> None:
    answer = request(url, "POST", "/chat/completions", {**chat_body(model="tooled"), **extra})
    assert answer.status == 400, answer.body
    assert answer.error["param"] == param and words in answer.error["message"]


# -- structured output --------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [False, True])
def test_parse_gives_the_pydantic_model(url: str, tooled: Tooled, beta: bool) -> None:
    with client(url) as sdk:
        completions = sdk.beta.chat.completions if beta else sdk.chat.completions
        reply = completions.parse(model="tooled", messages=ASK, response_format=Weather)
    assert reply.choices[0].message.parsed == Weather(city="Paris", celsius=21)
    output = tooled.requests[-1].output
    assert output is not None and output.name == "Weather"
    assert output.schema["required"] == ["city", "celsius"]


def test_json_object_asks_for_any_object(url: str, tooled: Tooled) -> None:
    with client(url) as sdk:
        reply = sdk.chat.completions.create(
            model="tooled", messages=ASK, response_format={"type": "json_object"}
        )
    assert json.loads(reply.choices[0].message.content or "") == {"city": "Paris", "celsius": 21}
    output = tooled.requests[-1].output
    assert output is not None and output.schema == {"type": "object"}


def test_a_text_response_format_asks_for_nothing(url: str, tooled: Tooled) -> None:
    with client(url) as sdk:
        sdk.chat.completions.create(model="tooled", messages=ASK, response_format={"type": "text"})
    assert tooled.requests[-1].output is None


def test_a_model_without_structured_output_refuses_it(url: str) -> None:
    with client(url) as sdk, pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.parse(model="echo", messages=ASK, response_format=Weather)
    assert caught.value.param == "response_format"
    assert "structured output" in caught.value.message


def test_a_reply_that_does_not_validate_comes_back_for_the_client_to_judge(
    url: str, memory: fmgate.MemorySink
) -> None:
    """200 with the text as it came (OpenAI's and vLLM's way): the SDK's parse() fails on it
    with the text in hand, and does not retry as it would a 5xx; the server's record says the
    reply did not validate."""
    broken = [{"role": "user", "content": "broken weather"}]
    with client(url) as sdk:
        with pytest.raises(pydantic.ValidationError):
            sdk.chat.completions.parse(model="tooled", messages=broken, response_format=Weather)
        plain = sdk.chat.completions.create(model="tooled", messages=broken, response_format=FORMAT)
        streamed = list(
            sdk.chat.completions.create(
                model="tooled", messages=broken, response_format=FORMAT, stream=True
            )
        )
    assert plain.choices[0].message.content == '{"city": "Pa'
    assert plain.choices[0].finish_reason == "stop" and plain.usage is not None
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == '{"city": "Pa'
    assert streamed[-1].choices[0].finish_reason == "stop"
    records = memory.records
    assert [(r.output.schema, r.output.valid) for r in records] == [("Weather", False)] * 3
    assert {r.outcome.error_type for r in records} == {"OutputValidationError"}


# -- batching -----------------------------------------------------------------------------------


class TooledBatches(Tooled, FakeBatchingBackend):
    """Batches of tooled requests, taking ``batch_s`` each, remembered; rows stream their text."""

    streams_batches = True
    batch_s = 0.8

    def __init__(self) -> None:
        super().__init__(fake_config("tooled"))
        self.runs: list[list[ChatRequest]] = []

    def complete_batch(
        self, requests: Sequence[ChatRequest], on_text: Sequence[OnText | None] | None = None
    ) -> list[Completion | FmgateError]:
        self.runs.append(list(requests))
        time.sleep(self.batch_s)
        rows = super().complete_batch(requests)
        for row, listener in zip(rows, on_text or [None] * len(rows), strict=True):
            if listener is not None and isinstance(row, Completion) and row.text:
                listener(row.text)
        return rows


def _shape(request: ChatRequest) -> str:
    tools = [t.to_openai() for t in request.tools]
    output = request.output and request.output.digest
    return json.dumps([tools, request.tool_choice, output])


async def _ask(sdk: openai.AsyncOpenAI, kind: dict[str, Any], stream: bool) -> tuple[str, Any]:
    """The reply's text and its tool calls' names, plain or streamed."""
    if not stream:
        reply = await sdk.chat.completions.create(model="m", messages=ASK, **kind)
        message = reply.choices[0].message
        return message.content or "", [c.function.name for c in message.tool_calls or []]
    chunks = [
        c
        async for c in await sdk.chat.completions.create(
            model="m", messages=ASK, stream=True, **kind
        )
    ]
    deltas = [c.choices[0].delta for c in chunks]
    names = [t.function.name for d in deltas for t in d.tool_calls or [] if t.function]
    return "".join(d.content or "" for d in deltas), names


async def test_only_requests_with_the_same_tools_and_schema_share_a_batch() -> None:
    """``generate_many`` takes one set of tools and one schema for its batch: requests that
    differ in them wait for batches of their own, plain and streamed alike."""
    backend = TooledBatches()
    weather = {"tools": [WEATHER_TOOL]}
    timed = {"tools": [WEATHER_TOOL, TIME_TOOL], "tool_choice": "required"}
    kinds = [weather, timed, {"response_format": FORMAT}, {}]
    with serving({"m": fmgate.Model(backend)}, max_batch=8) as base_url:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="-", max_retries=0) as sdk:
            blocker = asyncio.create_task(_ask(sdk, {"max_tokens": 9}, False))
            await asyncio.sleep(0.2)
            replies = await asyncio.gather(
                *(_ask(sdk, kind, stream) for stream in (False, True) for kind in kinds)
            )
            await blocker
    assert sorted(len(run) for run in backend.runs) == [1, 2, 2, 2, 2]
    for run in backend.runs:
        assert len({_shape(r) for r in run}) == 1
    weather_json = '{"city": "Paris", "celsius": 21}'
    expected = [("", ["get_weather"])] * 2 + [(weather_json, []), (ASK[0]["content"].upper(), [])]
    assert replies == expected * 2


# -- LangChain ----------------------------------------------------------------------------------


def _chat_openai(url: str) -> Any:
    langchain_openai = pytest.importorskip("langchain_openai")
    return langchain_openai.ChatOpenAI(model="tooled", base_url=url, api_key="x", max_retries=0)


def test_langchain_bind_tools_runs_a_tool_round(url: str) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage

    llm = _chat_openai(url).bind_tools([GetWeather])
    question = HumanMessage("What is the weather in Paris?")
    asked = llm.invoke([question])
    assert asked.tool_calls == [
        {"name": "GetWeather", "args": {"city": "Paris"}, "id": "call_0", "type": "tool_call"}
    ]
    answer = llm.invoke([question, asked, ToolMessage("21C", tool_call_id="call_0")])
    assert answer.content == "GetWeather says 21C" and not answer.tool_calls


def test_langchain_streams_tool_calls(url: str) -> None:
    llm = _chat_openai(url).bind_tools([GetWeather], tool_choice="GetWeather")
    whole = None
    for piece in llm.stream("The weather in both cities?"):
        whole = piece if whole is None else whole + piece
    assert whole is not None
    assert [(c["name"], c["args"]) for c in whole.tool_calls] == [
        ("GetWeather", {"city": "Paris"}),
        ("GetWeather", {"city": "Oslo"}),
    ]


@pytest.mark.parametrize(
    ("method", "asked"),
    [("json_schema", "Weather"), ("json_mode", "json_object"), ("function_calling", None)],
)
def test_langchain_with_structured_output_gives_the_pydantic_model(
    url: str, tooled: Tooled, method: str, asked: str | None
) -> None:
    llm = _chat_openai(url).with_structured_output(Weather, method=method)
    assert llm.invoke("The weather in Paris as JSON?") == Weather(city="Paris", celsius=21)
    request = tooled.requests[-1]
    assert (request.output.name if request.output else None) == asked
    assert request.tool_choice == (None if asked else "Weather")
