"""Images in chat on the OpenAI wire: fmgate.load -> the openai SDK -> mocked HTTP in the
documented format (https://platform.openai.com/docs/guides/images-vision: a user message's
``content`` is an array of ``{"type": "text", "text"}`` and ``{"type": "image_url",
"image_url": {"url": "data:image/png;base64,..."}}`` parts). The compatible rows (Gemini's
OpenAI endpoint, vLLM, ...) send the same body; DeepSeek's API reads no images and is refused
before sending. The record counts the images, and the list price covers them: providers bill
image tokens inside ``prompt_tokens``."""

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
from fmgate import BadRequestError, UnsupportedFeatureError

from . import openai_wire as wire

CHAT_URL = "https://api.openai.com/v1/chat/completions"
KEY = "sk-test-canary0123456789abcdefABCDEF"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.fixture
def model() -> Iterator[fmgate.Model]:
    with fmgate.load("openai:gpt-4o-mini") as m:
        yield m


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


CAT, DOG = png(4, 3), png(2, 5)
ASK: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Compare"},
            {"type": "image", "image": CAT},
            {"type": "text", "text": "with"},
            {"type": "image_url", "image_url": {"url": data_url(DOG)}},
        ],
    },
]
# What OpenAI's vision guide shows: the parts in the user's order, each image as a data URL.
ON_THE_WIRE = [
    {"role": "system", "content": "Be brief."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Compare"},
            {"type": "image_url", "image_url": {"url": data_url(CAT)}},
            {"type": "text", "text": "with"},
            {"type": "image_url", "image_url": {"url": data_url(DOG)}},
        ],
    },
]
PIXELS = 4 * 3 + 2 * 5


def reply(router: respx.Router, body: Any, url: str = CHAT_URL, status: int = 200) -> respx.Route:
    return router.post(url).mock(return_value=httpx.Response(status, json=body))


def stream_reply(router: respx.Router, pieces: list[str], url: str = CHAT_URL) -> respx.Route:
    headers = {"content-type": "text/event-stream"}
    body = wire.sse(wire.stream_chunks(pieces, usage_=wire.usage(850, len(pieces))))
    return router.post(url).mock(return_value=httpx.Response(200, content=body, headers=headers))


def sent(route: respx.Route, n: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[n].request.content)
    return body


def counted(record: fmgate.CallRecord) -> tuple[int | None, int | None]:
    return record.usage.images_in, record.usage.pixels_in


# -- the request ---------------------------------------------------------------------------------


def test_image_parts_go_as_image_url_data_urls_in_the_users_order(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = reply(httpx2_mock, wire.chat_completion("A cat and a dog."))
    r = model.generate(ASK)
    assert sent(route)["messages"] == ON_THE_WIRE
    assert r.text == "A cat and a dog."
    assert counted(r.record) == (2, PIXELS) and r.record.outcome.sent is True


def test_a_jpeg_keeps_its_bytes_and_media_type(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(buffer, format="JPEG")
    route = reply(httpx2_mock, wire.chat_completion("Black."))
    model.generate([{"role": "user", "content": [{"type": "image", "image": buffer.getvalue()}]}])
    (part,) = sent(route)["messages"][0]["content"]
    assert part == {
        "type": "image_url",
        "image_url": {"url": data_url(buffer.getvalue(), "image/jpeg")},
    }


def test_text_messages_around_the_image_stay_strings(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = reply(httpx2_mock, wire.chat_completion("Red."))
    model.generate(
        [
            {"role": "user", "content": [{"type": "image", "image": CAT}]},
            {"role": "assistant", "content": "A red square."},
            {"role": "user", "content": "Which colour?"},
        ]
    )
    messages = sent(route)["messages"]
    assert isinstance(messages[0]["content"], list)
    assert messages[1:] == [
        {"role": "assistant", "content": "A red square."},
        {"role": "user", "content": "Which colour?"},
    ]


def test_stream_sends_the_same_parts_and_records_the_images(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = stream_reply(httpx2_mock, ["A cat", " and a dog."])
    with model.stream(ASK) as chunks:
        assert "".join(c.text for c in chunks) == "A cat and a dog."
    assert sent(route)["messages"] == ON_THE_WIRE and sent(route)["stream"] is True
    assert chunks.record is not None and counted(chunks.record) == (2, PIXELS)


async def test_agenerate_astream_and_agenerate_many_record_the_images(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = reply(httpx2_mock, wire.chat_completion("A cat and a dog."))
    r = await model.agenerate(ASK)
    assert sent(route)["messages"] == ON_THE_WIRE and counted(r.record) == (2, PIXELS)
    many = await model.agenerate_many([ASK, "text only"])
    assert [counted(x.record) for x in many] == [(2, PIXELS), (None, None)]
    httpx2_mock.routes.clear()
    stream_reply(httpx2_mock, ["Two."])
    async with model.astream(ASK) as chunks:
        assert [c.text async for c in chunks] == ["Two."]
    assert chunks.record is not None and counted(chunks.record) == (2, PIXELS)


def test_generate_many_records_each_rows_images(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    reply(httpx2_mock, wire.chat_completion("ok"))
    one = [{"role": "user", "content": [{"type": "image", "image": CAT}]}]
    results = model.generate_many([ASK, one, "no image"])
    assert [counted(r.record) for r in results] == [(2, PIXELS), (1, 12), (None, None)]


# -- cost ------------------------------------------------------------------------------------------


def test_a_call_with_an_image_is_list_priced_from_the_reported_usage(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    """OpenAI counts image tokens in prompt_tokens (85 per low-detail tile for gpt-4o-mini's
    base, more per high-detail tile), so the reported usage prices them."""
    reply(httpx2_mock, wire.chat_completion("A cat.", usage_=wire.usage(2868, 6)))
    r = model.generate(ASK)
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=2868, output_tokens=6),
        wire.MODEL_SNAPSHOT,
        provider_id="openai",
    )
    assert r.record.cost.basis == "list_price"
    assert r.record.cost.amount == expected.total_price
    assert r.record.usage.input_tokens == 2868 and counted(r.record) == (2, PIXELS)


# -- refusals --------------------------------------------------------------------------------------


def test_a_text_only_model_refused_by_the_server_is_a_bad_request_error(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    """OpenAI's answer when a model does not read images (a 400 invalid_request_error)."""
    error = wire.error_body(
        "Invalid content type. image_url is only supported by certain models.",
        param="messages.[1].content.[1].type",
    )
    reply(httpx2_mock, error, status=400)
    with pytest.raises(BadRequestError, match="image_url is only supported") as caught:
        model.generate(ASK)
    assert caught.value.status_code == 400
    (record,) = memory.records
    assert record.outcome.error_type == "BadRequestError" and counted(record) == (2, PIXELS)


def test_deepseeks_api_reads_no_images_and_nothing_is_sent(
    monkeypatch: pytest.MonkeyPatch, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    """No route is mocked: a request would fail as unmocked, not as UnsupportedFeatureError."""
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-test-0123456789")
    with fmgate.load("deepseek:deepseek-chat") as m:
        assert "images" not in m.backend.features and "tools" in m.backend.features
        with pytest.raises(UnsupportedFeatureError, match="cannot take images") as caught:
            m.generate(ASK)
    assert caught.value.feature == "images"
    assert [r.outcome.sent for r in memory.records] == [False]


# -- the compatible rows ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "url", "env"),
    [
        (
            "gemini:gemini-2.5-flash",
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
            "GEMINI_API_KEY",
        ),
        (
            "groq:meta-llama/llama-4-scout-17b-16e-instruct",
            "https://api.groq.com/openai/v1/chat/completions",
            "GROQ_API_KEY",
        ),
        ("vllm:Qwen/Qwen2.5-VL-3B-Instruct", "http://localhost:8000/v1/chat/completions", None),
        ("ollama:llava", "http://localhost:11434/v1/chat/completions", None),
    ],
)
def test_compatible_rows_send_the_same_parts(
    monkeypatch: pytest.MonkeyPatch,
    httpx2_mock: respx.Router,
    spec: str,
    url: str,
    env: str | None,
) -> None:
    if env is not None:
        monkeypatch.setenv(env, "test-key-0123456789abcdef")
    route = reply(httpx2_mock, wire.chat_completion("A cat.", model=spec.split(":", 1)[1]), url)
    with fmgate.load(spec) as m:
        assert "images" in m.backend.features
        r = m.generate(ASK)
    assert sent(route)["messages"] == ON_THE_WIRE and counted(r.record) == (2, PIXELS)


def test_the_stub_server_says_how_many_images_it_got() -> None:
    from fmgate.testing import stub_server

    with (
        stub_server() as base_url,
        fmgate.load("openai:gpt-4o-mini", base_url=f"{base_url}/v1") as m,
    ):
        assert m.generate(ASK).text == "I see 2 images."
        one = [{"role": "user", "content": [{"type": "image", "image": CAT}]}]
        with m.stream(one) as chunks:
            assert "".join(c.text for c in chunks) == "I see 1 image."
        assert m.generate("hello").text == "Hello! How can I help you today?"
