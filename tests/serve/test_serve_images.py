"""Images through ``fmgate serve``, as the official openai SDK sends them: user messages whose
content is an array of ``text`` and ``image_url`` parts holding data URLs
(https://platform.openai.com/docs/guides/images-vision). A served model that reads images gets
them as image parts, in order (through the batcher too); one that does not answers 400 in
OpenAI's error shape; an http(s) URL is a 400 (the server fetches nothing)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from PIL import Image as PILImage

import fmgate
from fmgate._images import Image
from fmgate._record import Usage
from fmgate._types import ChatRequest, Completion
from fmgate.serve import serving
from tests.fakes import FakeBackend, FakeBatchingBackend, fake_config

from .conftest import request


def see(request: ChatRequest) -> Completion:
    """How many images the last message holds, their sizes, and its text."""
    last = request.messages[-1]
    sizes = ",".join(f"{i.width}x{i.height}" for i in last.images)
    text = f"{len(last.images)} images ({sizes}): {last.content}"
    return Completion(text, "stop", Usage(30, 4, source="estimate"), "seeing-1")


class Seeing(FakeBackend):
    """A vision chat backend by script."""

    features = frozenset({"images"})

    def _reply(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        return see(request)


class SeeingBatch(FakeBatchingBackend):
    """The same, batching as a local model does (served through the batcher)."""

    features = frozenset({"images"})

    def _reply(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        return see(request)


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), (0, 0, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def image_part(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


CAT, DOG = png(4, 3), png(2, 5)
ASK: list[Any] = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Compare"},
            image_part(data_url(CAT)),
            {"type": "text", "text": "with"},
            image_part(data_url(DOG), detail="low"),
        ],
    }
]
ANSWER = "2 images (4x3,2x5): Compare\nwith"


@pytest.fixture
def seeing() -> Seeing:
    return Seeing(fake_config("seeing"))


@pytest.fixture
def batched() -> SeeingBatch:
    return SeeingBatch(fake_config("seeing-batch"))


@pytest.fixture
def url(seeing: Seeing, batched: SeeingBatch, echo: fmgate.Model) -> Iterator[str]:
    """``seeing`` and ``batched`` read images; ``echo`` does not."""
    models = {"seeing": fmgate.Model(seeing), "batched": fmgate.Model(batched), "echo": echo}
    with serving(models) as base_url:
        yield base_url


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="-", max_retries=0)


# -- a model that reads images ---------------------------------------------------------------------


@pytest.mark.parametrize("served", ["seeing", "batched"])
def test_a_vision_model_gets_the_images_in_order_and_answers(
    url: str, served: str, seeing: Seeing, batched: SeeingBatch
) -> None:
    with client(url) as sdk:
        reply = sdk.chat.completions.create(model=served, messages=ASK)
    assert reply.choices[0].message.content == ANSWER
    backend = seeing if served == "seeing" else batched
    (message,) = backend.requests[-1].messages
    assert [p if isinstance(p, str) else p.data for p in message.parts] == [
        "Compare",
        CAT,
        "with",
        DOG,
    ]


@pytest.mark.parametrize("served", ["seeing", "batched"])
def test_a_streamed_reply_reads_the_images_too(url: str, served: str) -> None:
    with client(url) as sdk:
        chunks = list(sdk.chat.completions.create(model=served, messages=ASK, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.split() == ANSWER.split()  # the fake streams word by word


async def test_the_async_sdk_sends_images_as_well(url: str) -> None:
    async with openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0) as sdk:
        reply = await sdk.chat.completions.create(model="seeing", messages=ASK)
    assert reply.choices[0].message.content == ANSWER


def test_the_servers_record_counts_the_images(url: str, memory: fmgate.MemorySink) -> None:
    with client(url) as sdk:
        sdk.chat.completions.create(model="seeing", messages=ASK)
    (record,) = memory.records
    assert (record.usage.images_in, record.usage.pixels_in) == (2, 22)
    assert record.tags["fmgate.served"] == "true"


def test_text_parts_alone_are_still_one_text(url: str, seeing: Seeing) -> None:
    text_only = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
    with client(url) as sdk:
        reply = sdk.chat.completions.create(model="seeing", messages=text_only)
    assert reply.choices[0].message.content == "0 images (): ab"
    assert seeing.requests[-1].messages[-1].parts == ()


def test_an_image_alone_is_a_prompt(url: str, seeing: Seeing) -> None:
    only = [{"role": "user", "content": [image_part(data_url(CAT))]}]
    with client(url) as sdk:
        reply = sdk.chat.completions.create(model="seeing", messages=only)
    assert reply.choices[0].message.content == "1 images (4x3): "
    assert isinstance(seeing.requests[-1].messages[-1].parts[0], Image)


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_model_that_does_not_read_images_answers_400(url: str, stream: bool) -> None:
    with client(url) as sdk, pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="echo", messages=ASK, stream=stream)
    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": "The model `echo` does not read images: send text only, or ask a model "
        "served here that reads images.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": None,
    }
    assert caught.value.param == "messages" and caught.value.type == "invalid_request_error"


def test_a_text_only_local_model_behind_the_batcher_answers_400(llama: fmgate.Model) -> None:
    with serving({"tiny": llama}) as base_url, client(base_url) as sdk:
        with pytest.raises(openai.BadRequestError, match="does not read images"):
            sdk.chat.completions.create(model="tiny", messages=ASK, max_tokens=2)


@pytest.mark.parametrize("link", ["https://example.com/cat.png", "http://127.0.0.1/cat.png"])
def test_an_http_image_url_is_refused_the_server_fetches_nothing(
    url: str, link: str, seeing: Seeing
) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "?"}, image_part(link)]}]
    with client(url) as sdk, pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="seeing", messages=messages)
    assert "does not fetch images from URLs" in caught.value.message
    assert caught.value.param == "messages[0].content[1].image_url.url"
    assert caught.value.code == "invalid_image_url" and seeing.requests == []


def test_a_data_url_that_is_not_an_image_is_refused(url: str, seeing: Seeing) -> None:
    bad = "data:image/png;base64," + base64.b64encode(b"not an image at all").decode()
    answer = request(url, "POST", "/chat/completions", chat(image_part(bad)))
    assert answer.status == 400 and answer.error["code"] == "invalid_image"
    assert "not an image" in answer.error["message"] and seeing.requests == []


@pytest.mark.parametrize(
    ("part", "said"),
    [
        (image_part(data_url(CAT), detail="ultra"), "detail must be one of"),
        (image_part(data_url(CAT), size=3), "Unrecognized request argument"),
        ({"type": "image_url", "image_url": "data:image/png;base64,AAAA"}, "object with a url"),
        ({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}, "only text and"),
        ({"type": "text", "text": 3}, "text must be a string"),
    ],
)
def test_malformed_parts_are_refused_naming_them(url: str, part: Any, said: str) -> None:
    answer = request(url, "POST", "/chat/completions", chat(part))
    assert answer.status == 400 and said in answer.error["message"]
    assert str(answer.error["param"]).startswith("messages[0].content[1]")


@pytest.mark.parametrize("role", ["system", "assistant"])
def test_an_image_outside_a_user_message_is_refused(url: str, role: str) -> None:
    body = {
        "model": "seeing",
        "messages": [
            {"role": role, "content": [image_part(data_url(CAT))]},
            {"role": "user", "content": "hi"},
        ],
    }
    answer = request(url, "POST", "/chat/completions", body)
    assert answer.status == 400 and "images go in user messages" in answer.error["message"]


def chat(part: Any) -> dict[str, Any]:
    return {
        "model": "seeing",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, part]}],
    }


def test_an_image_too_large_to_decode_safely_is_a_400_not_a_500(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 5)  # CAT (4x3) now counts as a bomb
    answer = request(url, "POST", "/chat/completions", chat(image_part(data_url(CAT))))
    assert answer.status == 400 and answer.error["code"] == "invalid_image"
    assert "too large to decode safely" in answer.error["message"]


def test_a_data_url_naming_a_path_never_reads_the_servers_disk(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seeing: Seeing
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data:").mkdir()
    (tmp_path / "secret.png").write_bytes(CAT)
    answer = request(url, "POST", "/chat/completions", chat(image_part("data:/../secret.png")))
    assert answer.status == 400 and answer.error["code"] == "invalid_image"
    assert "Not a base64 image data URL" in answer.error["message"] and seeing.requests == []
