"""``POST /v1/images/generations`` through ``fmgate serve``, as the official openai SDK sends it
(https://platform.openai.com/docs/api-reference/images/create), with the ``seed``, ``steps`` and
``negative_prompt`` extensions Together's API takes (sent as the SDK's ``extra_body``)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from PIL import Image as PILImage

import fmgate
from fmgate.serve import serving
from tests.fakes import FakeBackend, Painter, fake_config

from .conftest import request


@pytest.fixture
def memory() -> Iterator[fmgate.MemorySink]:
    sink = fmgate.MemorySink()
    fmgate.add_sink(sink)
    yield sink
    fmgate.remove_sink(sink)


@pytest.fixture
def url() -> Iterator[str]:
    Painter.seen.clear()
    painter = fmgate.Model(Painter(fake_config()))
    echo = fmgate.Model(FakeBackend(fake_config()))
    with serving({"painter": painter, "echo": echo}) as base_url:
        yield base_url


@pytest.fixture
def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="-", max_retries=0)


def _image(b64: str | None) -> PILImage.Image:
    assert b64 is not None
    return PILImage.open(io.BytesIO(base64.b64decode(b64)))


def test_the_sdk_gets_base64_pngs(sdk: openai.OpenAI, memory: fmgate.MemorySink) -> None:
    result = sdk.images.generate(
        model="painter",
        prompt="a red fox",
        n=2,
        size="256x256",
        response_format="b64_json",
        extra_body={"seed": 7, "steps": 4, "negative_prompt": "blur"},
    )
    assert result.created > 0 and result.data is not None and len(result.data) == 2
    image = _image(result.data[0].b64_json)
    assert (image.format, image.size, image.getpixel((0, 0))) == ("PNG", (256, 256), (7, 0, 0))
    (seen,) = Painter.seen
    assert (seen.prompt, seen.n, seen.seed, seen.steps) == ("a red fox", 2, 7, 4)
    assert seen.negative_prompt == "blur"
    (record,) = [r for r in memory.records if r.task == "image"]
    assert record.tags["fmgate.served"] == "true"
    assert record.usage.images_out == 2


def test_defaults_b64_json_and_512(sdk: openai.OpenAI) -> None:
    result = sdk.images.generate(model="painter", prompt="a cat")
    assert result.data is not None and len(result.data) == 1
    assert _image(result.data[0].b64_json).size == (512, 512)


async def test_async_sdk(url: str) -> None:
    async with openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0) as sdk:
        result = await sdk.images.generate(model="painter", prompt="a cat", size="64x32")
    assert result.data is not None
    assert _image(result.data[0].b64_json).size == (64, 32)


def test_url_is_refused_with_a_clear_message(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model="painter", prompt="a cat", response_format="url")
    body: Any = caught.value.body
    assert body["param"] == "response_format" and "b64_json" in body["message"]
    assert not Painter.seen


def test_a_model_that_does_not_draw_is_a_400(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="does not generate images") as caught:
        sdk.images.generate(model="echo", prompt="a cat")
    body: Any = caught.value.body
    assert body["param"] == "model" and body["type"] == "invalid_request_error"


def test_unknown_model_is_a_404(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk.images.generate(model="nobody", prompt="a cat")


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"prompt": ""}, "prompt", "prompt"),
        ({"size": "big"}, None, "size"),
        ({"n": 99}, None, "n must be"),
        ({"seed": "x"}, None, "seed"),
        ({"quality": "hd"}, "quality", "quality"),
    ],
)
def test_bad_requests_are_400s_in_openai_shape(
    url: str, body: dict[str, Any], param: str | None, says: str
) -> None:
    answer = request(
        url, "POST", "/images/generations", {"model": "painter", "prompt": "x", **body}
    )
    assert answer.status == 400
    assert answer.error["type"] == "invalid_request_error"
    assert says in answer.error["message"]
    assert answer.error["param"] == param
    assert not Painter.seen


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[openai.OpenAI]:
    """fmgate serve in front of OpenAI's Images API (answered by fmgate's stub server)."""
    from fmgate.testing import stub_server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with stub_server() as stub:
        model = fmgate.load("openai:gpt-image-1", base_url=f"{stub}/v1")
        with serving({"drawer": model}) as base_url:
            yield openai.OpenAI(base_url=base_url, api_key="-", max_retries=0)


def test_an_images_api_behind_the_server(gateway: openai.OpenAI, memory: fmgate.MemorySink) -> None:
    result = gateway.images.generate(model="drawer", prompt="a cat", size="64x64")
    assert result.data is not None and _image(result.data[0].b64_json).size == (64, 64)
    (record,) = [r for r in memory.records if r.task == "image"]
    assert (record.cost.basis, record.usage.output_tokens) == ("list_price", 272)


def test_a_setting_the_api_behind_refuses_is_a_400_not_dropped(gateway: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="takes no seed") as caught:
        gateway.images.generate(model="drawer", prompt="a cat", extra_body={"seed": 1})
    body: Any = caught.value.body
    assert "gpt-image-1" not in body["message"]  # the served name, not the model behind


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> fmgate.Model:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from fmgate.testing import make_tiny_model

    folder = make_tiny_model("stable-diffusion", tmp_path_factory.mktemp("serve-sd") / "sd")
    return fmgate.load(f"diffusers:{folder}", device="cpu")


def test_a_pipeline_in_process_draws_the_same_pixels_served(tiny_sd: fmgate.Model) -> None:
    """The same seed gives the same image through the server as in process."""
    with serving({"tiny-sd": tiny_sd}) as base_url:
        sdk = openai.OpenAI(base_url=base_url, api_key="-", max_retries=0)
        served = sdk.images.generate(
            model="tiny-sd",
            prompt="a lighthouse",
            size="64x64",
            n=2,
            extra_body={"seed": 42, "steps": 4},
        )
    direct = tiny_sd.generate_image("a lighthouse", size="64x64", n=2, seed=42, steps=4)
    assert served.data is not None and len(served.data) == 2
    for data, image in zip(served.data, direct.images, strict=True):
        assert _image(data.b64_json).convert("RGB").tobytes() == image.convert("RGB").tobytes()
