"""fmgate's extension of the wire (docs/serve.md, "Cost and access for clients"): each answer
carries the served call's cost from its own record, in ``usage.fmgate`` and headers, and
``/v1/models`` the model's access facts; OpenAI's SDK keeps them as extra fields."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal

import openai
import pytest

import fmgate
from fmgate._record import Access, CallRecord
from fmgate.backends._base import EmbeddingResult, Meter
from fmgate.serve import serving
from tests.fakes import FakeBackend, FakeMeter, Painter, fake_config

from .conftest import chat_body, request

ACCESS = Access(
    open_weights=True,
    license="Apache-2.0",
    parameters=135_000_000,
    dtype="bfloat16",
    quantization=None,
    weights_bytes=269_060_552,
    peak_memory_bytes=512_000_000,
    context_window=2048,
    data_leaves_machine=False,
    requires_network=False,
    requires_api_key=False,
    offline_capable=True,
    hardware="cpu",
)


class Metered(FakeBackend):
    """The echo model, metered at a dollar per busy second (tests.fakes.FakeMeter), with a
    full access profile."""

    def start_meter(self) -> Meter | None:
        return FakeMeter()

    def access(self) -> Access:
        return ACCESS

    async def aembed(self, texts: Sequence[str]) -> EmbeddingResult:
        return self.embed(texts)


@pytest.fixture
def url() -> Iterator[str]:
    metered = fmgate.Model(Metered(fake_config()))
    unpriced = fmgate.Model(FakeBackend(fake_config()))
    painter = fmgate.Model(Painter(fake_config()))
    with serving({"echo": metered, "unpriced": unpriced, "painter": painter}) as base_url:
        yield base_url


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0)


def served(memory: fmgate.MemorySink, record_id: str) -> CallRecord:
    fmgate.flush()
    (record,) = [r for r in memory.records if r.id == record_id]
    return record


def expected(record: CallRecord) -> dict[str, object]:
    assert record.cost.amount is not None
    return {
        "cost_usd": format(record.cost.amount, "f"),
        "cost_basis": "energy_estimated",
        "cost_source": "fake meter",
        "energy_j": None,
        "record_id": record.id,
    }


def test_the_sdk_keeps_the_cost_of_a_completion(url: str, memory: fmgate.MemorySink) -> None:
    with sdk(url) as client:
        reply = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "say hi"}]
        )
    assert reply.usage is not None and reply.usage.completion_tokens == 2
    extra = reply.usage.model_extra
    assert extra is not None
    record = served(memory, extra["fmgate"]["record_id"])
    assert extra["fmgate"] == expected(record)
    assert record.cost.amount is not None and record.cost.amount > 0
    assert Decimal(extra["fmgate"]["cost_usd"]) == record.cost.amount


def test_the_headers_say_the_cost_and_its_basis(url: str, memory: fmgate.MemorySink) -> None:
    answer = request(url, "POST", "/chat/completions", chat_body())
    assert answer.status == 200
    ours = answer.json()["usage"]["fmgate"]
    record = served(memory, ours["record_id"])
    assert answer.headers["x-fmgate-cost-usd"] == ours["cost_usd"] == expected(record)["cost_usd"]
    assert answer.headers["x-fmgate-cost-basis"] == "energy_estimated"


def test_the_last_chunk_of_a_stream_carries_the_cost(url: str, memory: fmgate.MemorySink) -> None:
    with sdk(url) as client:
        chunks = list(
            client.chat.completions.create(
                model="echo",
                messages=[{"role": "user", "content": "one two three"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.model_extra is not None
    ours = last.usage.model_extra["fmgate"]
    assert ours == expected(served(memory, ours["record_id"]))
    assert all(c.usage is None for c in chunks[:-1])  # only the usage chunk has it


def test_a_stream_has_no_cost_headers(url: str) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    answer = request(url, "POST", "/chat/completions", body)
    assert answer.status == 200 and "x-fmgate-cost-basis" not in answer.headers
    assert b'"fmgate":{"cost_usd":"' in answer.body


def test_an_unpriced_call_says_unknown_not_zero(url: str) -> None:
    answer = request(url, "POST", "/chat/completions", chat_body(model="unpriced"))
    ours = answer.json()["usage"]["fmgate"]
    assert ours["cost_usd"] is None and ours["cost_basis"] == "unknown"
    assert "x-fmgate-cost-usd" not in answer.headers
    assert answer.headers["x-fmgate-cost-basis"] == "unknown"


def test_embeddings_carry_the_cost_too(url: str, memory: fmgate.MemorySink) -> None:
    with sdk(url) as client:
        result = client.embeddings.create(model="echo", input=["ab", "abcd"])
    assert result.usage.prompt_tokens == 2 and result.usage.model_extra is not None
    ours = result.usage.model_extra["fmgate"]
    assert ours == expected(served(memory, ours["record_id"]))


def test_images_carry_the_cost_in_headers(url: str) -> None:
    body = {"model": "painter", "prompt": "a red square", "size": "64x64"}
    answer = request(url, "POST", "/images/generations", body)
    assert answer.status == 200 and answer.headers["x-fmgate-cost-basis"] == "unknown"
    assert "usage" not in answer.json()  # the Images API's answer has no usage object here


def test_models_carry_the_access_facts(url: str) -> None:
    with sdk(url) as client:
        model = client.models.retrieve("echo")
        listed = {m.id: m for m in client.models.list()}
    assert model.owned_by == "fmgate" and model.model_extra is not None
    assert model.model_extra["max_model_len"] == 2048
    assert model.model_extra["fmgate"] == {
        "open_weights": True,
        "license": "Apache-2.0",
        "parameters": 135_000_000,
        "dtype": "bfloat16",
        "quantization": None,
        "weights_bytes": 269_060_552,
        "context_window": 2048,
        "hardware": "cpu",
        "distribution": "local",
    }
    assert listed["echo"].model_extra == model.model_extra
    unknown = listed["unpriced"].model_extra
    assert unknown is not None and unknown["max_model_len"] is None  # unknown, not guessed


def test_models_show_no_server_side_facts(url: str) -> None:
    """Peak memory and the network facts describe this server, not the model: not sent."""
    body = request(url, "GET", "/models/echo").body.decode()
    for hidden in ("peak_memory", "data_leaves_machine", "requires_api_key", "512000000"):
        assert hidden not in body
