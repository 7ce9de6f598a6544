"""Tools and structured output in the Model interface, on a scripted backend: schemas from
functions, tool calls and results in messages, the run_tools loop and its records, structured
output validated (and recorded) centrally, and refusals where a backend cannot honour them."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import fmgate
from fmgate import (
    InvalidRequestError,
    OutputValidationError,
    UnsupportedFeatureError,
)
from fmgate._tags import TOOL_LOOP
from fmgate._tools import ToolCall, to_output, to_tools
from fmgate._types import ChatRequest, Completion, Delta, Usage
from tests.fakes import FakeBackend, fake_config


class Scripted(FakeBackend):
    """Answers with the next scripted reply: a str is text, a list of (name, arguments) is
    tool calls. Keeps every request."""

    features = frozenset({"tools", "output"})

    def __init__(self, replies: list[str | list[tuple[str, dict[str, Any]]]]) -> None:
        super().__init__(fake_config("scripted"))
        self.replies = list(replies)

    def _reply(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        reply = self.replies.pop(0)
        usage = Usage(10, 5, source="estimate")
        if isinstance(reply, str):
            return Completion(reply, "stop", usage, "scripted-1")
        calls = tuple(ToolCall(f"call_{i}", n, a) for i, (n, a) in enumerate(reply))
        return Completion("", "tool_calls", usage, "scripted-1", tool_calls=calls)

    def _deltas(self, request: ChatRequest) -> list[Delta]:
        done = self._reply(request)
        pieces = [Delta(text=done.text[i : i + 3]) for i in range(0, len(done.text), 3)]
        end = Delta(finish_reason=done.finish_reason, usage=done.usage, tool_calls=done.tool_calls)
        return [*pieces, end]


def model(*replies: str | list[tuple[str, dict[str, Any]]]) -> tuple[fmgate.Model, Scripted]:
    backend = Scripted(list(replies))
    sink = fmgate.MemorySink()
    return fmgate.Model(backend, alias="m", sinks=[sink]), backend


def records(m: fmgate.Model) -> list[fmgate.CallRecord]:
    (sink,) = m.sinks
    assert isinstance(sink, fmgate.MemorySink)
    return sink.records


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict[str, Any]:
    """Get the current weather in a city.

    Args:
        city: The city's name, e.g. Paris.
        unit: The temperature unit.
    """
    return {"city": city, "temperature": 21, "unit": unit}


class Conversion(BaseModel):
    value: float
    unit: str


# -- schemas ------------------------------------------------------------------------------------


def test_a_functions_schema_comes_from_its_signature_and_docstring() -> None:
    (tool,) = to_tools([get_weather])
    assert tool.name == "get_weather" and tool.description == "Get the current weather in a city."
    params = tool.parameters
    assert params["required"] == ["city"]
    assert params["properties"]["city"] == {
        "type": "string",
        "description": "The city's name, e.g. Paris.",
    }
    assert params["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]
    assert tool.to_openai()["function"]["name"] == "get_weather"


def test_a_schema_dict_in_openais_function_form_or_bare_is_a_tool() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    wrapped = {"type": "function", "function": {"name": "search", "parameters": schema}}
    bare = {"name": "search", "description": "Search.", "parameters": schema}
    assert to_tools([wrapped])[0].parameters == to_tools([bare])[0].parameters == schema
    assert to_tools([wrapped])[0].func is None


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ("get_weather", "must be a list"),
        ([42], "Tool 0 is 42"),
        ([lambda city: city], "a lambda has no usable name"),
        ([get_weather, get_weather], "Two tools are named 'get_weather'"),
        ([{"name": "x", "parameters": {"type": "array"}}], "type object"),
    ],
)
def test_bad_tools_are_refused_before_sending_and_recorded(tools: Any, message: str) -> None:
    m, backend = model("hi")
    with pytest.raises(InvalidRequestError, match=message):
        m.generate("weather?", tools=tools)
    assert backend.requests == []
    (rec,) = records(m)
    assert rec.outcome.sent is False and rec.outcome.error_type == "InvalidRequestError"


def test_tool_choice_names_a_tool_or_a_mode() -> None:
    m, backend = model("a", "b", "c")
    m.generate("x", tools=[get_weather], tool_choice="required")
    m.generate(
        "x",
        tools=[get_weather],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert [r.tool_choice for r in backend.requests] == ["required", "get_weather"]
    with pytest.raises(InvalidRequestError, match="names no tool"):
        m.generate("x", tools=[get_weather], tool_choice="get_time")
    with pytest.raises(InvalidRequestError, match="needs tools"):
        m.generate("x", tool_choice="required")


# -- calls ----------------------------------------------------------------------------------------


def test_tool_calls_come_back_parsed_and_the_record_counts_them() -> None:
    m, backend = model([("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})])
    r = m.generate("Weather in Paris and Rome?", tools=[get_weather])
    assert r.finish_reason == "tool_calls" and [c.arguments["city"] for c in r.tool_calls] == [
        "Paris",
        "Rome",
    ]
    (request,) = backend.requests
    assert [t.name for t in request.tools] == ["get_weather"] and request.tool_choice is None
    (rec,) = records(m)
    assert (rec.tools.offered, rec.tools.choice, rec.tools.called) == (1, "auto", 2)
    assert rec.output.schema is None


def test_a_conversation_carries_tool_calls_and_results_in_openais_message_form() -> None:
    m, backend = model("It is 21 degrees in Paris.")
    call = {
        "id": "call_0",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    m.generate(
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_0", "content": '{"temperature": 21}'},
        ],
        tools=[get_weather],
    )
    (request,) = backend.requests
    assistant, result = request.messages[1], request.messages[2]
    assert assistant.tool_calls == (ToolCall("call_0", "get_weather", {"city": "Paris"}),)
    assert (result.role, result.tool_call_id, result.content) == (
        "tool",
        "call_0",
        '{"temperature": 21}',
    )


def test_a_tool_result_without_its_call_id_is_refused() -> None:
    m, _ = model("x")
    with pytest.raises(InvalidRequestError, match="tool_call_id"):
        m.generate(
            [{"role": "user", "content": "q"}, {"role": "tool", "content": "21"}],
            tools=[get_weather],
        )


def test_a_backend_without_tools_refuses_them_instead_of_dropping_them() -> None:
    backend = FakeBackend(fake_config())
    sink = fmgate.MemorySink()
    m = fmgate.Model(backend, sinks=[sink])
    with pytest.raises(UnsupportedFeatureError, match="cannot take tools") as caught:
        m.generate("Weather?", tools=[get_weather])
    assert caught.value.feature == "tools" and backend.requests == []
    with pytest.raises(UnsupportedFeatureError, match="structured output"):
        m.generate("Convert", output=Conversion)
    assert [r.outcome.sent for r in sink.records] == [False, False]
    assert sink.records[0].outcome.error_type == "UnsupportedFeatureError"


# -- the loop -------------------------------------------------------------------------------------


def test_run_tools_runs_the_functions_and_records_each_model_call_with_the_loops_id() -> None:
    m, backend = model([("get_weather", {"city": "Paris"})], "21 degrees in Paris.")
    r = m.generate("Weather in Paris?", tools=[get_weather], run_tools=True)
    assert r.text == "21 degrees in Paris." and r.tool_calls == ()
    second = backend.requests[1].messages
    assert [msg.role for msg in second] == ["user", "assistant", "tool"]
    assert json.loads(second[2].content) == {"city": "Paris", "temperature": 21, "unit": "celsius"}
    assert [msg.role for msg in r.messages] == ["user", "assistant", "tool", "assistant"]
    first, last = records(m)
    assert first.tags[TOOL_LOOP] == last.tags[TOOL_LOOP]
    assert (first.tools.called, last.tools.called) == (1, 0)


def test_a_tool_that_raises_tells_the_model_which_may_try_again() -> None:
    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        return a / b

    m, backend = model([("divide", {"a": 1, "b": 0})], [("divide", {"a": 1, "b": 2})], "0.5")
    assert m.generate("1/0, then 1/2", tools=[divide], run_tools=True).text == "0.5"
    assert backend.requests[1].messages[-1].content == "Error: ZeroDivisionError: division by zero"
    assert backend.requests[2].messages[-1].content == "0.5"


def test_a_forced_choice_applies_to_the_first_round_and_the_limit_ends_in_text() -> None:
    m, backend = model(*[[("get_weather", {"city": "Oslo"})]] * 2, "done")
    r = m.generate(
        "w", tools=[get_weather], tool_choice="required", run_tools=True, max_tool_rounds=2
    )
    assert r.text == "done"
    assert [q.tool_choice for q in backend.requests] == ["required", "auto", "none"]


def test_run_tools_needs_functions_not_schemas() -> None:
    m, _ = model("x")
    schema = {"name": "search", "parameters": {"type": "object", "properties": {}}}
    with pytest.raises(InvalidRequestError, match="schema only"):
        m.generate("q", tools=[schema], run_tools=True)


def test_the_async_loop_awaits_async_tools() -> None:
    async def lookup(city: str) -> str:
        """Look a city up."""
        await asyncio.sleep(0)
        return f"{city}: 21C"

    m, backend = model([("lookup", {"city": "Lima"})], "21C in Lima")

    async def main() -> fmgate.Response:
        return await m.agenerate("w", tools=[lookup], run_tools=True)

    assert asyncio.run(main()).text == "21C in Lima"
    assert backend.requests[1].messages[-1].content == "Lima: 21C"


# -- structured output -------------------------------------------------------------------------


def test_structured_output_is_validated_into_the_pydantic_model() -> None:
    m, backend = model('{"value": 1.609, "unit": "km"}')
    r = m.generate("1 mile in km?", output=Conversion)
    assert r.parsed == Conversion(value=1.609, unit="km")
    (request,) = backend.requests
    assert request.output is not None and request.output.name == "Conversion"
    assert request.output.schema["additionalProperties"] is False  # closed, as strict mode needs
    (rec,) = records(m)
    assert (rec.output.schema, rec.output.valid, rec.output.mode) == ("Conversion", True, "native")
    assert rec.output.schema_hash == to_output(Conversion).digest  # type: ignore[union-attr]


def test_a_reply_that_does_not_validate_is_a_recorded_failure_that_keeps_the_text() -> None:
    m, _ = model('{"value": "far", "unit": "km"}')
    with pytest.raises(OutputValidationError, match="value") as caught:
        m.generate("1 mile in km?", output=Conversion)
    assert caught.value.text == '{"value": "far", "unit": "km"}'
    rec = caught.value.record
    assert rec is not None and rec.outcome.status == "error" and rec.output.valid is False
    assert rec.usage.output_tokens == 5  # the reply came back: its tokens and cost are real
    assert rec.outcome.error_type == "OutputValidationError"


def test_a_json_schema_dict_gives_the_decoded_json_and_a_fenced_reply_is_read() -> None:
    schema = {
        "title": "point",
        "type": "object",
        "properties": {"x": {"type": "integer"}},
        "required": ["x"],
    }
    m, _ = model('```json\n{"x": 3}\n```', '{"x": "3"}')
    assert m.generate("p", output=schema).parsed == {"x": 3}
    with pytest.raises(OutputValidationError, match="point schema: x"):
        m.generate("p", output=schema)


def test_a_bad_output_is_refused_before_sending() -> None:
    m, backend = model("x")
    with pytest.raises(InvalidRequestError, match="Pydantic model class or a JSON schema"):
        m.generate("p", output=int)
    with pytest.raises(InvalidRequestError, match="not a valid JSON schema"):
        m.generate("p", output={"type": "objekt"})
    assert backend.requests == []


def test_a_stream_assembles_tool_calls_and_parses_the_output_at_the_end() -> None:
    m, _ = model([("get_weather", {"city": "Paris"})], '{"value": 2, "unit": "m"}')
    stream = m.stream("w", tools=[get_weather])
    assert "".join(c.text for c in stream) == ""
    assert stream.response.tool_calls[0].arguments == {"city": "Paris"}
    stream = m.stream("c", output=Conversion)
    assert "".join(c.text for c in stream) == '{"value": 2, "unit": "m"}'
    assert stream.response.parsed == Conversion(value=2, unit="m")
    assert records(m)[-1].output.valid is True


def test_generate_many_takes_tools_and_output_for_every_prompt() -> None:
    m, backend = model('{"value": 1, "unit": "a"}', '{"value": 2, "unit": "b"}')
    rows = m.generate_many(["p1", "p2"], output=Conversion, concurrency=1)
    assert [r.parsed.unit for r in rows] == ["a", "b"]
    assert all(q.output is not None for q in backend.requests)


def test_records_with_tools_and_output_round_trip_through_the_store(tmp_path: Any) -> None:
    store = fmgate.SqliteStore(tmp_path / "r.sqlite3")
    backend = Scripted([[("get_weather", {"city": "Paris"})], '{"value": 1, "unit": "km"}'])
    m = fmgate.Model(backend, sinks=[store])
    m.generate("w", tools=[get_weather], tool_choice="get_weather")
    m.generate("c", output=Conversion)
    first, second = store.records()
    assert (first.tools.offered, first.tools.choice, first.tools.called) == (1, "get_weather", 1)
    assert (second.output.schema, second.output.valid) == ("Conversion", True)
    store.close()
