"""fmgate compare over rows that ask for structure: prompt sets with a schema or tools (their
columns, checks and bundled sets), the json_schema and tool_call scorers, and the runner passing
each row's structure to the model, in calls and in local batches, grading invalid replies 0."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import fmgate
from fmgate import InvalidRequestError, OutputValidationError
from fmgate._compare import (
    PromptItem,
    bundled_prompt_sets,
    check_scorer,
    get_scorer,
    load_prompts,
    run_compare,
)
from fmgate._compare.structured_scorers import JsonSchemaScorer, ToolCallScorer, same_json
from fmgate._record import Usage
from fmgate._tags import PROMPT, ROLE, WARMUP
from fmgate._tools import ToolCall
from fmgate._types import ChatRequest, Completion
from fmgate.backends._base import BackendConfig
from tests.fakes import FakeBackend, FakeBatchingBackend, fake_config

Reply = str | list[tuple[str, dict[str, Any]]]


class Structured(FakeBackend):
    """Honours tools and output: answers each prompt with its scripted reply (a str is the text,
    a list of (name, arguments) is tool calls); an unscripted prompt is answered ``{}``."""

    features = frozenset({"tools", "output"})

    def __init__(self, replies: dict[str, Reply], config: BackendConfig | None = None) -> None:
        super().__init__(config or fake_config("structured"))
        self.replies = replies

    def _reply(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        reply = self.replies.get(request.messages[-1].content, "{}")
        usage = Usage(10, 5, source="estimate")
        if isinstance(reply, str):
            return Completion(reply, "stop", usage, "structured-1")
        calls = tuple(ToolCall(f"call_{i}", n, a) for i, (n, a) in enumerate(reply))
        return Completion("", "tool_calls", usage, "structured-1", tool_calls=calls)


class StructuredBatching(Structured, FakeBatchingBackend):
    """The same, batching as a local backend does (4 prompts per pass)."""


def model(backend: FakeBackend, alias: str = "m") -> fmgate.Model:
    return fmgate.Model(backend, alias=alias)


def api(replies: dict[str, Reply]) -> fmgate.Model:
    provider = dataclasses.replace(FakeBackend.provider_info, distribution="api")
    config = BackendConfig(name="fake", model="api", provider=provider)
    return model(Structured(replies, config), "api")


def measured(run: Any) -> list[fmgate.CallRecord]:
    return [r for r in run.records if r.tags.get(ROLE) == "candidate" and WARMUP not in r.tags]


def by_prompt(run: Any) -> dict[str, float | None]:
    ids = {r.id: r.tags[PROMPT] for r in measured(run)}
    return {ids[s.record_id]: s.value for s in run.scores}


@pytest.fixture
def store(tmp_path: Path) -> fmgate.SqliteStore:
    return fmgate.SqliteStore(tmp_path / "scores.sqlite3")


def write(tmp_path: Path, name: str, rows: Sequence[dict[str, Any] | str]) -> Path:
    path = tmp_path / name
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


QUANTITY = {
    "type": "object",
    "properties": {"value": {"type": "number"}, "unit": {"type": "string"}},
    "required": ["value", "unit"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


# -- the bundled sets -----------------------------------------------------------------------------


def test_the_units_set_asks_for_a_quantity_and_expects_the_true_conversion() -> None:
    items = load_prompts("units")
    assert 10 <= len(items) <= 14 and all(item.schema == items[0].schema for item in items)
    assert items[0].schema is not None and set(items[0].schema["required"]) == {"value", "unit"}
    expected = {item.id: item.expected_output for item in items}
    # each conversion computed here from the definitions, not copied from the file
    truth = {
        "km-m": 3 * 1000,
        "h-min": 2.5 * 60,
        "c-f": 100 * 9 / 5 + 32,
        "kg-g": 5 * 1000,
        "in-cm": 12 * 2.54,
        "mi-km": 1760 * 0.9144 / 1000,
        "l-ml": 2 * 1000,
        "f-c": (32 - 32) * 5 / 9,
        "gib-mib": 2**30 / 2**20,
        "min-h": 90 / 60,
        "ms-kmh": 10 * 3600 / 1000,
        "lb-g": 453.59237,
    }
    assert set(expected) == set(truth)
    for ident, value in truth.items():
        assert expected[ident]["value"] == pytest.approx(value, rel=1e-9), ident
        assert f'"{expected[ident]["unit"]}"' in next(i.prompt for i in items if i.id == ident)


def test_the_tools_set_offers_three_tools_and_names_the_right_call() -> None:
    items = load_prompts("tools")
    assert 8 <= len(items) <= 12
    names = {t["function"]["name"] for t in items[0].tools}
    assert names == {"get_weather", "convert_currency", "search_web"}
    assert all(item.tools == items[0].tools and item.expected_tool in names for item in items)
    assert {item.expected_tool for item in items} == names  # every tool is the right one somewhere
    paris = next(item for item in items if item.id == "weather-paris")
    assert paris.expected_arguments == {"city": "Paris", "unit": "celsius"}
    assert paris.call_params() == {"tools": [dict(t) for t in paris.tools]}


def test_both_sets_say_where_they_come_from() -> None:
    for name in ("units", "tools"):
        head = bundled_prompt_sets()[name].read_text(encoding="utf-8").splitlines()[:2]
        assert head[0].startswith(f"# {name}:") and "written for fmgate" in " ".join(head)


# -- columns and their checks --------------------------------------------------------------------


def test_a_jsonl_row_with_a_schema_and_one_with_tools(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.jsonl",
        [
            {
                "id": "q",
                "prompt": "3 km?",
                "schema": QUANTITY,
                "expected": {"value": 3000, "unit": "m"},
            },
            {
                "prompt": "weather?",
                "tools": [WEATHER],
                "tool_choice": "required",
                "expected_tool": "get_weather",
                "expected_arguments": {"city": "Oslo"},
            },
            {"prompt": "plain", "expected": "4"},
        ],
    )
    q, w, plain = load_prompts(path)
    assert q.schema == QUANTITY and q.expected_output == {"value": 3000, "unit": "m"}
    assert json.loads(q.expected or "") == q.expected_output  # as text, for a judge to read
    assert q.call_params() == {"output": QUANTITY} and q.structured
    assert w.call_params() == {"tools": [WEATHER], "tool_choice": "required"}
    assert (w.expected_tool, w.expected_arguments) == ("get_weather", {"city": "Oslo"})
    assert plain == PromptItem("3", "plain", "4") and not plain.structured
    assert len({q, w, plain}) == 3  # items stay hashable


def test_a_csv_holds_json_text_in_the_structure_columns(tmp_path: Path) -> None:
    schema = json.dumps(QUANTITY).replace('"', '""')
    tools = json.dumps([WEATHER]).replace('"', '""')
    text = (
        "id,prompt,schema,expected,tools,expected_tool,expected_arguments\n"
        f'q,3 km?,"{schema}","{{""value"": 3000, ""unit"": ""m""}}",,,\n'
        f'w,weather?,,,"{tools}",get_weather,"{{""city"": ""Oslo""}}"\n'
        's,name?,"{""type"": ""string""}","""Paris""",,,\n'
    )
    path = tmp_path / "s.csv"
    path.write_text(text, encoding="utf-8")
    q, w, s = load_prompts(path)
    assert q.expected_output == {"value": 3000, "unit": "m"} and q.schema == QUANTITY
    assert w.tools == (WEATHER,) and w.expected_arguments == {"city": "Oslo"}
    assert s.expected_output == "Paris"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"schema": "number"}, r"line 2: 'schema' must be a JSON schema object"),
        ({"schema": {"type": "nope"}}, r"line 2: 'schema': output is not a valid JSON schema"),
        (
            {"schema": QUANTITY, "expected": {"value": "3000", "unit": "m"}},
            r"line 2: 'expected' does not match the row's own schema: .*value",
        ),
        ({"expected": {"value": 1}}, r"line 2: 'expected' must be text .*needs a 'schema'"),
        ({"tools": WEATHER}, r"line 2: 'tools' must be a non-empty list of function schemas"),
        ({"tools": [{"name": "a b"}]}, r"line 2: 'tools': A tool's name must be"),
        ({"tools": [WEATHER], "tool_choice": "search"}, r"line 2: 'tool_choice': .*names no tool"),
        ({"expected_tool": "get_weather"}, r"line 2: 'expected_tool' needs 'tools'"),
        (
            {"tools": [WEATHER], "expected_tool": "search"},
            r"line 2: 'expected_tool' 'search' is not one of the row's tools \(get_weather\)",
        ),
        (
            {"tools": [WEATHER], "expected_arguments": {"city": "Oslo"}},
            r"line 2: 'expected_arguments' needs 'expected_tool'",
        ),
        (
            {"tools": [WEATHER], "expected_tool": "get_weather", "expected_arguments": {}},
            r"line 2: 'expected_arguments' do not match get_weather's parameters: .*city",
        ),
        ({"schema": QUANTITY, "label": "x"}, r"line 2: a row with a 'label' .*cannot also"),
        ({"tool": [WEATHER]}, r"line 2: unknown field 'tool'"),
    ],
)
def test_a_bad_structure_column_fails_on_its_line(
    tmp_path: Path, row: dict[str, Any], message: str
) -> None:
    path = write(tmp_path, "bad.jsonl", [{"prompt": "fine"}, {"prompt": "p", **row}])
    with pytest.raises(InvalidRequestError, match=message):
        load_prompts(path)


def test_a_csv_json_cell_that_is_not_json_fails_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('prompt,schema,expected\na,"{""type"": ""string""}",Paris\n', "utf-8")
    with pytest.raises(InvalidRequestError, match=r"line 2: 'expected' is not valid JSON .*quotes"):
        load_prompts(path)


# -- the scorers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("got", "expected", "same"),
    [
        ({"value": 1.609, "unit": "km"}, {"value": 1.609344, "unit": "km"}, True),
        ({"value": 1.6, "unit": "km"}, {"value": 1.609344, "unit": "km"}, False),
        ({"value": 0.0, "unit": " °C "}, {"value": 0, "unit": "°C"}, True),
        ({"value": 1, "unit": "mm"}, {"value": 1, "unit": "Mm"}, False),
        ({"value": 1, "unit": "m", "note": "x"}, {"value": 1, "unit": "m"}, False),
        ({"value": 1}, {"value": 1, "unit": "m"}, False),
        (True, 1, False),
        ([1, 2], [1, 2.0], True),
        ([1, 2], [2, 1], False),
        (None, None, True),
    ],
)
def test_values_compare_as_json_numbers_within_a_tenth_of_a_percent(
    got: Any, expected: Any, same: bool
) -> None:
    assert same_json(got, expected) is same


def test_scorers_are_registered_by_name() -> None:
    assert isinstance(get_scorer("json_schema"), JsonSchemaScorer)
    assert isinstance(get_scorer("JSON-Schema"), JsonSchemaScorer)
    assert isinstance(get_scorer("tool_call"), ToolCallScorer)
    with pytest.raises(InvalidRequestError, match="json_schema, tool_call"):
        get_scorer("jsonschema")


def test_a_structured_scorer_refuses_a_set_it_cannot_grade_before_any_model_loads() -> None:
    with pytest.raises(InvalidRequestError, match="json_schema scorer grades rows with a 'schema'"):
        check_scorer(load_prompts("capitals"), get_scorer("json_schema"))
    with pytest.raises(InvalidRequestError, match="tool_call scorer grades rows with 'tools'"):
        check_scorer(load_prompts("units"), get_scorer("tool_call"))
    with pytest.raises(InvalidRequestError, match="classification set"):
        check_scorer(load_prompts("langid"), get_scorer("json_schema"))


def test_json_schema_grades_a_stored_text_by_validating_it() -> None:
    item = load_prompts("units")[0]
    scorer = JsonSchemaScorer()
    assert scorer.score(item, '{"value": 3000, "unit": "m"}').value == 1.0
    wrong = scorer.score(item, '{"value": 300, "unit": "m"}')
    assert wrong.value == 0.0 and "is not the expected" in (wrong.detail or "")
    assert scorer.score(item, "3000 m").value == 0.0
    assert scorer.score(PromptItem("x", "p", "e"), "{}").value is None


# -- runs ----------------------------------------------------------------------------------------


def units_replies(items: Sequence[PromptItem]) -> dict[str, Reply]:
    """Right for every row but three: a wrong value, a reply that is not JSON, and a tool call
    where a quantity was asked for."""
    replies: dict[str, Reply] = {
        item.prompt: json.dumps(item.expected_output, ensure_ascii=False) for item in items
    }
    replies[items[0].prompt] = '{"value": 30, "unit": "m"}'
    replies[items[1].prompt] = "About 150 minutes."
    replies[items[2].prompt] = [("convert", {"x": 1})]
    return replies


@pytest.mark.parametrize("batching", [False, True])
def test_a_units_run_grades_shape_and_value_and_counts_no_outage(
    store: fmgate.SqliteStore, batching: bool
) -> None:
    items = load_prompts("units")
    kind = StructuredBatching if batching else Structured
    backend = kind(units_replies(items))
    run = run_compare([model(backend)], items, scorer=get_scorer("json_schema"), store=store)
    scores = by_prompt(run)
    assert scores[items[0].id] == 0.0 and scores[items[1].id] == 0.0 and scores[items[2].id] == 0.0
    assert [scores[item.id] for item in items[3:]] == [1.0] * (len(items) - 3)
    assert run.errors == 0  # a reply of the wrong shape is a wrong answer, not an outage
    # the invalid reply is graded 0 from its failed record, with the validation message
    bad = next(r for r in measured(run) if r.tags[PROMPT] == items[1].id)
    assert bad.outcome.error_type == "OutputValidationError" and bad.output.valid is False
    detail = next(s.detail for s in run.scores if s.record_id == bad.id)
    assert detail is not None and "not JSON" in detail
    every = measured(run)
    assert sum(r.output.valid is True for r in every) == len(items) - 2  # the tool call: unchecked
    for request in backend.requests:
        assert request.output is not None and request.output.schema == items[0].schema
    if batching:
        assert isinstance(backend, StructuredBatching) and backend.batches == [1, 4, 4, 4]


def test_rows_with_different_schemas_batch_apart_and_each_call_gets_its_own(
    store: fmgate.SqliteStore,
) -> None:
    number = {"type": "number"}
    items = [
        PromptItem("a", "one", schema=QUANTITY, expected_output={"value": 1, "unit": "m"}),
        PromptItem("b", "two", schema=number, expected_output=2),
        PromptItem("c", "three", schema=QUANTITY),
        PromptItem("d", "four", schema=number, expected_output=4),
        PromptItem("e", "plain"),
    ]
    replies: dict[str, Reply] = {
        "one": '{"value": 1, "unit": "m"}',
        "two": "2",
        "three": '{"value": 3, "unit": "m"}',
        "four": "5",
        "plain": "text",
    }
    backend = StructuredBatching(replies)
    run = run_compare([model(backend)], items, warmup=0, scorer=get_scorer("json_schema"))
    assert backend.batches == [2, 2, 1]  # grouped by schema, in first-seen order
    sent = {r.messages[-1].content: r.output for r in backend.requests}
    assert sent["one"] is not None and sent["one"].schema == QUANTITY
    assert sent["two"] is not None and sent["two"].schema == number
    assert sent["plain"] is None
    assert by_prompt(run) == {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0, "e": None}
    # the records keep the calls' order: the report reads them per prompt
    assert [r.tags[PROMPT] for r in measured(run)] == ["a", "c", "b", "d", "e"]


def tools_replies(items: Sequence[PromptItem]) -> dict[str, Reply]:
    replies: dict[str, Reply] = {
        item.prompt: [(item.expected_tool or "", dict(item.expected_arguments or {"query": "q"}))]
        for item in items
    }
    replies[items[0].prompt] = [("search_web", {"query": "weather in Paris"})]  # wrong tool
    replies[items[1].prompt] = [("get_weather", {"city": "Phoenix", "unit": "celsius"})]
    replies[items[2].prompt] = "It is sunny in Tokyo."  # no call at all
    twice = [("get_weather", {"city": "London", "unit": "celsius"})] * 2
    replies[items[3].prompt] = twice  # two calls where one was needed
    return replies


def test_a_tools_run_grades_the_call_and_passes_the_tools_and_the_choice(
    store: fmgate.SqliteStore,
) -> None:
    items = load_prompts("tools")
    assert [i.id for i in items[:4]] == [
        "weather-paris",
        "weather-phoenix",
        "weather-tokyo",
        "weather-london",
    ]
    items[5] = dataclasses.replace(items[5], tool_choice="convert_currency")
    m = api(tools_replies(items))
    run = run_compare([m], items, scorer=get_scorer("tool_call"), store=store)
    scores = by_prompt(run)
    assert [scores[item.id] for item in items[:4]] == [0.0, 0.0, 0.0, 0.0]
    assert [scores[item.id] for item in items[4:]] == [1.0] * (len(items) - 4)
    details = {s.record_id: s.detail for s in run.scores}
    by_id = {r.tags[PROMPT]: details[r.id] for r in measured(run)}
    assert by_id["weather-paris"] == "called search_web, not get_weather"
    assert "celsius" in (by_id["weather-phoenix"] or "")
    assert by_id["weather-tokyo"] == "0 tool calls (none); expected one, to get_weather"
    assert by_id["weather-london"] == (
        "2 tool calls (get_weather, get_weather); expected one, to get_weather"
    )
    backend = m.backend
    assert isinstance(backend, Structured)
    for request in backend.requests:
        assert [t.name for t in request.tools] == ["get_weather", "convert_currency", "search_web"]
    choices = {r.messages[-1].content: r.tool_choice for r in backend.requests}
    assert choices[items[5].prompt] == "convert_currency" and choices[items[4].prompt] is None
    records = measured(run)
    assert all(r.tools.offered == 3 for r in records)
    assert sum(r.tools.called or 0 for r in records) == len(items)  # 0 for Tokyo, 2 for London


def test_the_rows_structure_replaces_the_runs_own(store: fmgate.SqliteStore) -> None:
    items = [PromptItem("a", "one", schema={"type": "number"}), PromptItem("b", "two")]
    backend = Structured({"one": "1", "two": '{"ok": true}'})
    params = {"output": {"type": "object"}, "max_tokens": 8}
    run_compare([model(backend)], items, warmup=0, params=params, store=store)
    sent = {r.messages[-1].content: r for r in backend.requests}
    assert sent["one"].output is not None and sent["one"].output.schema == {"type": "number"}
    assert sent["two"].output is not None and sent["two"].output.schema == {"type": "object"}
    assert sent["one"].params.max_tokens == 8


def test_a_model_that_cannot_honour_tools_fails_its_calls_and_they_count(
    store: fmgate.SqliteStore,
) -> None:
    items = load_prompts("tools")[:2]
    plain = model(FakeBackend(fake_config("plain")), "plain")
    run = run_compare([plain], items, warmup=0, scorer=get_scorer("tool_call"), store=store)
    assert run.errors == 2 and run.scores == []  # not graded: nothing was asked
    assert {r.outcome.error_type for r in run.records} == {"UnsupportedFeatureError"}


def test_both_scorers_grade_a_reply_that_did_not_validate_zero() -> None:
    item = load_prompts("units")[0]
    error = OutputValidationError("bad", text="x")
    assert JsonSchemaScorer().score_response(item, error).value == 0.0
    assert ToolCallScorer().score_response(load_prompts("tools")[0], error).value == 0.0


def test_both_sets_run_over_the_openai_wire_against_the_stub_server(
    store: fmgate.SqliteStore,
) -> None:
    """End to end through an OpenAI-compatible row: the schema goes out as response_format, the
    tools as functions, and the stub answers by them (the smallest valid instance, a call to a
    tool), so every reply validates and every call calls one tool."""
    from fmgate.testing import stub_server

    with stub_server() as url:
        m = fmgate.load("vllm:stub", base_url=url + "/v1")
        units = run_compare(
            [m], load_prompts("units"), scorer=get_scorer("json_schema"), store=store
        )
        tools = run_compare([m], load_prompts("tools"), scorer=get_scorer("tool_call"), store=store)
    assert units.errors == 0 and tools.errors == 0
    assert all(r.output.valid is True and r.output.schema == "Quantity" for r in units.records)
    assert all(s.value in (0.0, 1.0) for s in [*units.scores, *tools.scores])
    assert len(units.scores) == 12 and len(tools.scores) == 10
    assert all(r.tools.offered == 3 and r.tools.called == 1 for r in tools.records)
