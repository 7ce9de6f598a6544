"""Images APIs over the OpenAI wire: OpenAI's Images API (gpt-image and DALL-E) and Together's
``/v1/images/generations``, mocked with respx in the shapes their API references document."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import genai_prices
import httpx
import pytest
import respx
from PIL import Image

import fmgate

OPENAI_URL = "https://api.openai.com/v1/images/generations"
TOGETHER_URL = "https://api.together.xyz/v1/images/generations"


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-canary0123456789abcdefABCDEF")
    monkeypatch.setenv("TOGETHER_API_KEY", "tg-test-key")


def _png(width: int, height: int, color: str = "red") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _gpt_image_body(n: int = 1, size: int = 64) -> dict[str, Any]:
    """OpenAI's ImagesResponse for a gpt-image model: base64 images and token usage."""
    return {
        "created": 1713833628,
        "data": [{"b64_json": _png(size, size)} for _ in range(n)],
        "usage": {
            "total_tokens": 4210,
            "input_tokens": 50,
            "output_tokens": 4160,
            "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
        },
    }


def _sent(route: respx.Route) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls.last.request.content)
    return body


def _reply(route: respx.Route, body: Any, status: int = 200) -> respx.Route:
    return route.mock(return_value=httpx.Response(status, json=body))


def test_gpt_image_sends_openai_body_decodes_and_prices_tokens(
    httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    route = _reply(httpx2_mock.post(OPENAI_URL), _gpt_image_body(n=2))
    model = fmgate.load("openai:gpt-image-1")
    assert model.tasks == frozenset({"image"})
    result = model.generate_image("a red square", size="1024x1024", n=2, openai_quality="low")
    # gpt-image models always answer base64 and refuse response_format: none is sent.
    assert _sent(route) == {
        "model": "gpt-image-1",
        "prompt": "a red square",
        "n": 2,
        "size": "1024x1024",
        "quality": "low",
    }
    assert route.calls.last.request.headers["authorization"].startswith("Bearer sk-test")
    assert [image.size for image in result.images] == [(64, 64), (64, 64)]
    assert result.images[0].getpixel((0, 0)) == (255, 0, 0)
    record = result.record
    assert memory.records == [record]
    assert (record.task, record.usage.images_out, record.usage.items) == ("image", 2, 2)
    assert (record.usage.input_tokens, record.usage.output_tokens) == (50, 4160)
    assert record.usage.source == "provider"
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=50, output_tokens=4160, output_image_tokens=4160),
        "gpt-image-1",
        provider_id="openai",
    )
    assert record.cost.basis == "list_price"
    assert record.cost.amount == Decimal(expected.total_price)
    assert "prompt" not in json.dumps(record.params)
    assert record.access.open_weights is False and record.access.data_leaves_machine


def test_gpt_image_1_5_prices_image_output_tokens_apart(httpx2_mock: respx.Router) -> None:
    """gpt-image-1.5 prices image output at $32/MTok, text output at $10: the image tokens the
    usage reports must reach genai-prices as image tokens."""
    body = _gpt_image_body()
    body["usage"]["output_tokens_details"] = {"text_tokens": 160, "image_tokens": 4000}
    _reply(httpx2_mock.post(OPENAI_URL), body)
    record = fmgate.load("openai:gpt-image-1.5").generate_image("a cat").record
    plain = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=50, output_tokens=4160),
        "gpt-image-1.5",
        provider_id="openai",
    )
    split = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=50, output_tokens=4160, output_image_tokens=4000),
        "gpt-image-1.5",
        provider_id="openai",
    )
    assert record.cost.amount == Decimal(split.total_price) > Decimal(plain.total_price)


@pytest.mark.parametrize(
    ("model", "size", "quality", "price"),
    [
        ("dall-e-3", "1024x1024", None, "0.04"),
        ("dall-e-3", "1792x1024", "hd", "0.12"),
        ("dall-e-2", "256x256", None, "0.016"),
    ],
)
def test_dall_e_is_priced_per_image_from_the_table(
    httpx2_mock: respx.Router, model: str, size: str, quality: str | None, price: str
) -> None:
    n = 1 if model == "dall-e-3" else 3  # DALL-E 3 draws one image per request
    body = {"created": 1, "data": [{"b64_json": _png(8, 8)} for _ in range(n)]}
    route = _reply(httpx2_mock.post(OPENAI_URL), body)
    result = fmgate.load(f"openai:{model}").generate_image(
        "a lighthouse", size=size, n=n, openai_quality=quality
    )
    sent = _sent(route)
    assert sent["response_format"] == "b64_json" and sent["size"] == size
    assert sent.get("quality") == quality
    record = result.record
    assert record.cost.amount == Decimal(price) * n
    assert record.cost.basis == "list_price"
    assert record.cost.source is not None and "image_prices.toml" in record.cost.source
    assert record.usage.input_tokens is None


def test_dall_e_size_not_in_the_table_is_unknown_not_zero(httpx2_mock: respx.Router) -> None:
    _reply(httpx2_mock.post(OPENAI_URL), {"created": 1, "data": [{"b64_json": _png(8, 8)}]})
    record = fmgate.load("openai:dall-e-3").generate_image("x", size="512x512").record
    assert (record.cost.amount, record.cost.basis) == (None, "unknown")


@pytest.mark.httpx2(assert_all_called=False)
@pytest.mark.parametrize(
    "option", [{"seed": 7}, {"steps": 4}, {"negative_prompt": "blurry"}], ids=str
)
def test_openai_refuses_seed_steps_negative_before_sending(
    httpx2_mock: respx.Router, memory: fmgate.MemorySink, option: dict[str, Any]
) -> None:
    route = httpx2_mock.post(OPENAI_URL)
    model = fmgate.load("openai:gpt-image-1")
    with pytest.raises(fmgate.InvalidRequestError, match=next(iter(option))):
        model.generate_image("a cat", **option)
    assert not route.called
    assert memory.records[-1].outcome.status == "error"


def test_chat_models_of_openai_do_not_draw() -> None:
    model = fmgate.load("openai:gpt-4o-mini")
    assert "image" not in model.tasks
    with pytest.raises(fmgate.UnsupportedTaskError):
        model.generate_image("a cat")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, fmgate.BadRequestError),
        (401, fmgate.AuthenticationError),
        (429, fmgate.RateLimitError),
        (500, fmgate.ServerError),
    ],
)
def test_errors_are_mapped(httpx2_mock: respx.Router, status: int, error: type[Exception]) -> None:
    body = {"error": {"message": "Your request was rejected", "type": "x", "code": None}}
    _reply(httpx2_mock.post(OPENAI_URL), body, status)
    with pytest.raises(error, match="rejected"):
        fmgate.load("openai:gpt-image-1").generate_image("a cat")


@pytest.mark.parametrize(
    "body",
    [
        {"created": 1, "data": [{"url": "https://example.com/a.png"}]},
        {"created": 1, "data": [{"b64_json": "not base64!"}]},
        {"created": 1, "data": [{"b64_json": base64.b64encode(b"not an image").decode()}]},
        {"created": 1},
    ],
)
def test_malformed_bodies(httpx2_mock: respx.Router, body: dict[str, Any]) -> None:
    _reply(httpx2_mock.post(OPENAI_URL), body)
    with pytest.raises(fmgate.MalformedResponseError):
        fmgate.load("openai:dall-e-2").generate_image("a cat")


def test_fewer_images_than_asked_is_malformed(httpx2_mock: respx.Router) -> None:
    _reply(httpx2_mock.post(OPENAI_URL), _gpt_image_body(n=1))
    with pytest.raises(fmgate.MalformedResponseError, match="1 images for n=2"):
        fmgate.load("openai:gpt-image-1").generate_image("a cat", n=2)


def test_reserved_keys_cannot_be_passed_through() -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="'size'"):
        fmgate.load("openai:gpt-image-1").generate_image("a cat", openai_size="1x1")


async def test_async_sends_the_same_body(httpx2_mock: respx.Router) -> None:
    route = _reply(httpx2_mock.post(OPENAI_URL), _gpt_image_body())
    result = await fmgate.load("openai:gpt-image-1").agenerate_image("a cat", size="64x64")
    assert _sent(route) == {"model": "gpt-image-1", "prompt": "a cat", "n": 1, "size": "64x64"}
    assert result.images[0].size == (64, 64)
    assert result.record.cost.basis == "list_price"


# -- Together ------------------------------------------------------------------------------------


def _together_body(n: int, width: int, height: int) -> dict[str, Any]:
    """Together's ImageResponse with response_format "base64"
    (https://docs.together.ai/docs/images-overview#base64-images)."""
    return {
        "id": "oHpD53L-2kFHot-998e0de9fe14d8a1-SEA",
        "model": "black-forest-labs/FLUX.1-schnell",
        "data": [{"b64_json": _png(width, height, "blue")} for _ in range(n)],
    }


def test_together_takes_width_height_seed_steps_negative(
    httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    route = _reply(httpx2_mock.post(TOGETHER_URL), _together_body(2, 32, 16))
    model = fmgate.load("together:black-forest-labs/FLUX.1-schnell")
    assert "image" in model.tasks
    result = model.generate_image(
        "a blue sky", size="32x16", n=2, seed=42, steps=4, negative_prompt="clouds"
    )
    assert _sent(route) == {
        "model": "black-forest-labs/FLUX.1-schnell",
        "prompt": "a blue sky",
        "n": 2,
        "width": 32,
        "height": 16,
        "seed": 42,
        "steps": 4,
        "negative_prompt": "clouds",
        "response_format": "base64",  # Together's value for base64 images
    }
    assert route.calls.last.request.headers["authorization"] == "Bearer tg-test-key"
    assert [image.size for image in result.images] == [(32, 16), (32, 16)]
    record = result.record
    assert record.model_id == "black-forest-labs/FLUX.1-schnell"
    assert record.params["seed"] == 42 and record.params["negative_prompt"] is True
    assert (record.usage.images_out, record.usage.pixels_out) == (2, 2 * 32 * 16)
    # Together reports no usage and genai-prices has no per-image prices: unknown, never 0.
    assert (record.cost.amount, record.cost.basis) == (None, "unknown")
    assert record.cost.source is not None and "no per-image price" in record.cost.source
    # The same open model as in process: its published facts, from models.toml.
    assert (record.access.open_weights, record.access.license) == (True, "Apache-2.0")


def test_rows_without_an_images_endpoint_do_not_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    model = fmgate.load("groq:llama-3.1-8b-instant")
    assert "image" not in model.tasks


# -- the stub server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    from fmgate.testing import stub_server

    with stub_server() as base_url:
        yield f"{base_url}/v1"


def test_stub_server_draws_deterministic_pngs_and_reports_usage(stub_url: str) -> None:
    model = fmgate.load("openai:gpt-image-1", base_url=stub_url)
    first = model.generate_image("a red fox", size="64x48", n=2)
    again = model.generate_image("a red fox", size="64x48", n=2)
    other = model.generate_image("a blue fox", size="64x48")
    assert [image.size for image in first.images] == [(64, 48), (64, 48)]
    pixels = [image.getpixel((0, 0)) for image in first.images]
    assert pixels == [image.getpixel((0, 0)) for image in again.images]
    assert pixels[0] != pixels[1] != other.images[0].getpixel((0, 0))
    record = first.record
    assert (record.usage.output_tokens, record.cost.basis) == (544, "list_price")


def test_stub_server_takes_together_width_height_and_seed(stub_url: str) -> None:
    model = fmgate.load("together:black-forest-labs/FLUX.1-schnell", base_url=stub_url)
    seven = model.generate_image("a fox", size="32x16", seed=7, steps=4)
    eight = model.generate_image("a fox", size="32x16", seed=8, steps=4)
    assert seven.images[0].size == (32, 16)
    assert seven.images[0].getpixel((0, 0)) != eight.images[0].getpixel((0, 0))


@pytest.mark.parametrize("run_async", [False, True])
def test_a_rate_limited_call_is_tried_again(httpx2_mock: respx.Router, run_async: bool) -> None:
    limited = httpx.Response(429, json={"error": {"message": "slow down"}})
    route = httpx2_mock.post(OPENAI_URL)
    route.side_effect = [limited, httpx.Response(200, json=_gpt_image_body())]
    model = fmgate.load("openai:gpt-image-1", max_retries=1, backoff=0.0)
    if run_async:
        result = asyncio.run(model.agenerate_image("a cat"))
    else:
        result = model.generate_image("a cat")
    assert route.call_count == 2
    assert (result.record.outcome.attempts, result.record.cost.basis) == (2, "list_price")
