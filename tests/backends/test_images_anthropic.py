"""Images in chat on Anthropic's Messages API: fmgate.load -> the anthropic SDK -> mocked HTTP in
the documented format (https://docs.anthropic.com/en/docs/build-with-claude/vision: a user
message's ``content`` is a list of ``{"type": "text", "text"}`` and ``{"type": "image", "source":
{"type": "base64", "media_type", "data"}}`` blocks). The blocks keep the user's order, also where
a user message joins the tool results before it; the record counts the images, and the list
price covers them (Anthropic bills image tokens as input tokens)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import genai_prices
import httpx
import pytest
import respx
from PIL import Image as PILImage

import fmgate
from fmgate import BadRequestError
from tests.backends import anthropic_wire as wire
from tests.backends.tool_fixtures import get_weather


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", wire.KEY)


@pytest.fixture
def model() -> Iterator[fmgate.Model]:
    with fmgate.load(wire.SPEC) as m:
        yield m


def encoded(width: int, height: int, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), (30, 200, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def block(data: bytes, media_type: str = "image/png") -> dict[str, Any]:
    """Anthropic's documented base64 image block."""
    source = {"type": "base64", "media_type": media_type, "data": base64.b64encode(data).decode()}
    return {"type": "image", "source": source}


CAT, DOG = encoded(4, 3), encoded(2, 5, "JPEG")
PIXELS = 4 * 3 + 2 * 5
ASK: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Compare"},
            {"type": "image", "image": CAT},
            {"type": "text", "text": "with"},
            {"type": "image", "image": DOG},
        ],
    },
]
ON_THE_WIRE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Compare"},
            block(CAT),
            {"type": "text", "text": "with"},
            block(DOG, "image/jpeg"),
        ],
    }
]


def reply(router: respx.Router, body: Any, status: int = 200) -> respx.Route:
    return router.post(wire.API_URL).mock(return_value=httpx.Response(status, json=body))


def stream_reply(router: respx.Router, texts: list[str]) -> respx.Route:
    headers = {"content-type": "text/event-stream"}
    body = b"".join(wire.stream_events(texts, start_usage=wire.usage(1560, 1)))
    response = httpx.Response(200, headers=headers, content=body)
    return router.post(wire.API_URL).mock(return_value=response)


def sent(route: respx.Route) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls.last.request.content)
    return body


def counted(record: fmgate.CallRecord) -> tuple[int | None, int | None]:
    return record.usage.images_in, record.usage.pixels_in


# -- the request -----------------------------------------------------------------------------------


def test_image_parts_become_base64_image_blocks_in_the_users_order(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    assert "images" in model.backend.features
    route = reply(httpx2_mock, wire.message("A cat and a dog."))
    r = model.generate(ASK)
    body = sent(route)
    assert body["system"] == "Be brief." and body["messages"] == ON_THE_WIRE
    assert r.text == "A cat and a dog." and counted(r.record) == (2, PIXELS)


def test_an_image_alone_is_one_image_block(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    route = reply(httpx2_mock, wire.message("Green."))
    model.generate([{"role": "user", "content": [{"type": "image", "image": CAT}]}])
    assert sent(route)["messages"] == [{"role": "user", "content": [block(CAT)]}]


def test_an_image_after_tool_results_joins_their_user_message_after_them(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    """Anthropic wants the tool results first in the user message that follows the calls; the
    user's text and image blocks come after them, in the user's order."""
    route = reply(httpx2_mock, wire.message("It is sunny, and that is a cat."))
    call = {
        "id": "toolu_01A",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    model.generate(
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "toolu_01A", "content": "18 degrees"},
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": CAT},
                    {"type": "text", "text": "And what is this?"},
                ],
            },
        ],
        tools=[get_weather],
    )
    assert sent(route)["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18 degrees"},
            block(CAT),
            {"type": "text", "text": "And what is this?"},
        ],
    }


def test_stream_sends_the_same_blocks_and_records_the_images(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = stream_reply(httpx2_mock, ["A cat", " and a dog."])
    with model.stream(ASK) as chunks:
        assert "".join(c.text for c in chunks) == "A cat and a dog."
    assert sent(route)["messages"] == ON_THE_WIRE and sent(route)["stream"] is True
    assert chunks.record is not None and counted(chunks.record) == (2, PIXELS)


async def test_async_calls_record_the_images(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = reply(httpx2_mock, wire.message("Two animals."))
    r = await model.agenerate(ASK)
    assert sent(route)["messages"] == ON_THE_WIRE and counted(r.record) == (2, PIXELS)
    many = await model.agenerate_many([ASK, "no image"])
    assert [counted(x.record) for x in many] == [(2, PIXELS), (None, None)]


def test_generate_many_records_each_rows_images(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    reply(httpx2_mock, wire.message("ok"))
    one = [{"role": "user", "content": [{"type": "image", "image": DOG}]}]
    results = model.generate_many([one, ASK])
    assert [counted(r.record) for r in results] == [(1, 10), (2, PIXELS)]


# -- cost and refusals -----------------------------------------------------------------------------


def test_a_call_with_an_image_is_list_priced_from_the_reported_usage(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    """Anthropic bills an image as about width x height / 750 input tokens, inside
    ``input_tokens``: the reported usage prices it."""
    reply(httpx2_mock, wire.message("A cat.", usage_=wire.usage(1560, 12)))
    r = model.generate(ASK)
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1560, output_tokens=12),
        wire.MODEL_ID,
        provider_id="anthropic",
    )
    assert r.record.cost.basis == "list_price"
    assert r.record.cost.amount == expected.total_price
    assert counted(r.record) == (2, PIXELS)


def test_an_image_the_api_refuses_is_a_bad_request_error(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    said = (
        "messages.0.content.1.image.source.base64: image exceeds 5 MB maximum: "
        "5316852 bytes > 5242880 bytes"
    )
    reply(httpx2_mock, wire.error_body("invalid_request_error", said), status=400)
    with pytest.raises(BadRequestError, match="image exceeds 5 MB maximum"):
        model.generate(ASK)
    (record,) = memory.records
    assert record.outcome.error_type == "BadRequestError" and counted(record) == (2, PIXELS)


def test_the_stub_server_says_how_many_images_it_got() -> None:
    from fmgate.testing import stub_server

    with stub_server() as base_url, fmgate.load(wire.SPEC, base_url=base_url) as m:
        assert m.generate(ASK).text == "I see 2 images."
        with m.stream([{"role": "user", "content": [{"type": "image", "image": CAT}]}]) as chunks:
            assert "".join(c.text for c in chunks) == "I see 1 image."
