"""Images as input (``fmgate._images``) and image parts in chat messages: every form a user
passes (path, bytes, PIL, arrays, data URLs) becomes the same encoded image, what cannot be sent
is refused before anything is, and the record counts the images and their pixels on every path
(generate, stream, generate_many, async)."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

import fmgate
from fmgate import InvalidRequestError, UnsupportedFeatureError
from fmgate._images import Image, is_image, names_an_image, to_image, to_images, to_pil
from fmgate._record import Usage
from fmgate._types import ChatRequest, Completion, normalize_messages
from tests.fakes import FakeBackend, fake_config


def png(width: int = 4, height: int = 3, color: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def encoded(image: Any, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def colors(image: Any) -> set[tuple[int, ...]]:
    """The distinct RGB colours of a PIL image."""
    return {tuple(int(v) for v in rgb) for rgb in np.asarray(image).reshape(-1, 3)}


class Seeing(FakeBackend):
    """A backend that reads images: answers how many it got and the last message's text."""

    features = frozenset({"images"})

    def _reply(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        last = request.messages[-1]
        text = f"{len(last.images)} images: {last.content}"
        return Completion(text, "stop", Usage(20, 3, source="provider"), "seeing-1")


def seeing() -> tuple[fmgate.Model, Seeing, fmgate.MemorySink]:
    backend = Seeing(fake_config("seeing"))
    sink = fmgate.MemorySink()
    return fmgate.Model(backend, sinks=[sink]), backend, sink


def ask(*images: Any, text: str = "What is this?") -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image", "image": image} for image in images]
    return [{"role": "user", "content": parts}]


# -- the forms an image comes in -----------------------------------------------------------------


def test_a_png_path_str_pathlike_and_bytes_are_kept_as_they_are(tmp_path: Path) -> None:
    data = png(5, 2)
    path = tmp_path / "red.png"
    path.write_bytes(data)
    for value in (str(path), path, data, bytearray(data), memoryview(data)):
        image = to_image(value)
        assert (image.data, image.media_type) == (data, "image/png")
        assert (image.width, image.height, image.pixels) == (5, 2, 10)


def test_jpeg_gif_and_webp_keep_their_bytes_and_media_type() -> None:
    picture = PILImage.new("RGB", (6, 4), (0, 128, 255))
    for fmt, media_type in (("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")):
        data = encoded(picture, fmt)
        image = to_image(data)
        assert (image.data, image.media_type, image.width, image.height) == (
            data,
            media_type,
            6,
            4,
        )


def test_a_bmp_is_re_encoded_as_png_with_the_same_pixels() -> None:
    picture = PILImage.new("RGB", (3, 2), (10, 20, 30))
    image = to_image(encoded(picture, "BMP"))
    assert image.media_type == "image/png" and image.data.startswith(b"\x89PNG")
    assert colors(image.pil()) == {(10, 20, 30)}


def test_a_pil_image_in_any_mode_is_encoded_as_rgb_png() -> None:
    for mode in ("RGB", "RGBA", "L", "P"):
        image = to_image(PILImage.new(mode, (7, 5)))
        assert (image.media_type, image.width, image.height) == ("image/png", 7, 5)
        assert image.pil().mode == "RGB"


@pytest.mark.parametrize(
    ("shape", "pixel"),
    [((2, 3, 3), (1, 2, 3)), ((2, 3), (9, 9, 9)), ((2, 3, 4), (1, 2, 3)), ((2, 3, 1), (9, 9, 9))],
)
def test_uint8_arrays_hxwx3_hxw_hxwx4_and_hxwx1(shape: tuple[int, ...], pixel: Any) -> None:
    array = np.zeros(shape, dtype=np.uint8)
    if len(shape) == 3 and shape[2] >= 3:
        array[..., :3] = (1, 2, 3)
        if shape[2] == 4:
            array[..., 3] = 255
    else:
        array[...] = 9
    image = to_image(array)
    assert (image.width, image.height) == (3, 2)  # H x W in, width x height out
    assert colors(image.pil()) == {pixel}
    assert to_pil(array).size == (3, 2)


def test_an_array_that_is_not_uint8_is_refused_with_the_fix() -> None:
    with pytest.raises(InvalidRequestError, match=r"uint8.*astype\('uint8'\)"):
        to_image(np.zeros((2, 2, 3), dtype=np.float32))


@pytest.mark.parametrize("shape", [(2, 2, 2), (2, 2, 3, 1), (0, 2, 3)])
def test_an_array_of_another_shape_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidRequestError, match="image array"):
        to_image(np.zeros(shape, dtype=np.uint8))


def test_a_data_url_is_decoded_and_an_image_gives_it_back() -> None:
    data = png()
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    image = to_image(url)
    assert image.data == data and image.data_url() == url
    assert image.base64() == base64.b64encode(data).decode()
    assert names_an_image(url)


def test_a_data_url_whose_base64_is_broken_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="base64"):
        to_image("data:image/png;base64,not*base64")


def test_bytes_that_are_no_image_are_refused_without_echoing_them() -> None:
    with pytest.raises(InvalidRequestError, match="14 bytes are not an image") as caught:
        to_image(b"secret-not-png")
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "http://example.com/cat.png"])
def test_an_http_url_is_refused_fmgate_never_fetches(url: str) -> None:
    with pytest.raises(InvalidRequestError, match="does not fetch URLs"):
        to_image(url)


def test_a_missing_file_and_a_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="No such image file"):
        to_image(tmp_path / "none.png")
    with pytest.raises(InvalidRequestError, match="is a folder"):
        to_image(tmp_path)


def test_repr_shows_the_size_never_the_bytes() -> None:
    image = to_image(png(4, 3))
    assert repr(image) == f"Image(image/png, 4x3, {len(image.data)} bytes)"
    assert "PNG" not in repr(image) and image.base64()[:12] not in repr(image)


def test_what_counts_as_an_image(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(png())
    assert is_image(png()) and is_image(path) and is_image(np.zeros((1, 1, 3), np.uint8))
    assert not is_image("x.png")  # a str is text where text or an image may go
    assert names_an_image(str(path)) and not names_an_image(str(tmp_path / "no.png"))
    assert not names_an_image("a cat.png is a file name in a sentence")
    assert to_images(png(), "classify") == [png()]
    with pytest.raises(InvalidRequestError, match="classify takes an image"):
        to_images([png(), 3], "classify")


# -- image parts in messages ---------------------------------------------------------------------


def test_parts_keep_their_order_and_content_is_the_text_joined() -> None:
    url = "data:image/png;base64," + base64.b64encode(png(2, 2)).decode()
    (message,) = normalize_messages(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "first"},
                    {"type": "image", "image": png(4, 3)},
                    {"type": "text", "text": "second"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ]
    )
    kinds = [type(p).__name__ for p in message.parts]
    assert kinds == ["str", "Image", "str", "Image"]
    assert message.content == "first\nsecond"
    assert [(i.width, i.height) for i in message.images] == [(4, 3), (2, 2)]


def test_text_parts_alone_make_a_plain_text_message() -> None:
    (message,) = normalize_messages(
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ]
    )
    assert message.parts == () and message.content == "a\nb"


def test_an_image_alone_is_a_prompt() -> None:
    (message,) = normalize_messages(
        [{"role": "user", "content": [{"type": "image", "image": png()}]}]
    )
    assert message.content == "" and len(message.images) == 1


@pytest.mark.parametrize("role", ["assistant", "system"])
def test_an_image_outside_a_user_message_is_refused(role: str) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "hi"},
        {"role": role, "content": [{"type": "image", "image": png()}]},
    ]
    with pytest.raises(InvalidRequestError, match=f"image in a {role} message"):
        normalize_messages(messages)


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image"},
        {"type": "image_url", "image_url": {}},
        {"type": "audio", "audio": "x"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ],
)
def test_a_part_without_an_image_or_of_another_kind_is_refused(part: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        normalize_messages([{"role": "user", "content": [part]}])


# -- through a Model -----------------------------------------------------------------------------


def test_a_backend_without_images_refuses_them_and_the_refusal_is_recorded_unsent() -> None:
    backend = FakeBackend(fake_config())
    sink = fmgate.MemorySink()
    m = fmgate.Model(backend, sinks=[sink])
    with pytest.raises(UnsupportedFeatureError, match="cannot take images") as caught:
        m.generate(ask(png()))
    assert caught.value.feature == "images" and backend.requests == []
    (record,) = sink.records
    assert record.outcome.sent is False
    assert record.outcome.error_type == "UnsupportedFeatureError"


def test_generate_reaches_the_backend_with_the_images_and_records_them() -> None:
    m, backend, sink = seeing()
    reply = m.generate(ask(png(4, 3), png(10, 10)))
    assert reply.text == "2 images: What is this?"
    assert [i.data for i in backend.requests[0].messages[-1].images] == [png(4, 3), png(10, 10)]
    (record,) = sink.records
    assert (record.usage.images_in, record.usage.pixels_in) == (2, 112)
    assert record.usage.input_tokens == 20 and record.outcome.sent is True


def test_a_text_call_records_no_images() -> None:
    m, _, sink = seeing()
    m.generate("hello")
    assert (sink.records[0].usage.images_in, sink.records[0].usage.pixels_in) == (None, None)


def test_stream_generate_many_and_async_record_images_and_pixels() -> None:
    m, _, sink = seeing()
    with m.stream(ask(png(4, 3))) as chunks:
        assert "".join(c.text for c in chunks).split() == "1 images: What is this?".split()
    m.generate_many([ask(png(2, 2)), ask(png(2, 2), png(3, 3)), "text only"])

    async def run() -> None:
        await m.agenerate(ask(png(5, 5)))
        async with m.astream(ask(png(1, 1))) as chunks:
            async for _ in chunks:
                pass
        await m.agenerate_many([ask(png(6, 1))])

    asyncio.run(run())
    counted = sorted(
        (r.usage.images_in, r.usage.pixels_in) for r in sink.records if r.usage.images_in
    )
    assert counted == sorted([(1, 12), (1, 4), (2, 13), (1, 25), (1, 1), (1, 6)])
    assert sum(1 for r in sink.records if r.usage.images_in is None) == 1  # "text only"


def test_an_image_value_is_taken_as_is_in_a_part() -> None:
    m, backend, _ = seeing()
    image = to_image(png(3, 3))
    m.generate(ask(image))
    assert backend.requests[0].messages[-1].images == (image,)
    assert isinstance(image, Image)


def test_an_image_too_large_to_decode_safely_is_refused_not_a_pillow_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pillow refuses headers claiming over twice MAX_IMAGE_PIXELS (decompression bombs); a
    small PNG stands in for one under a lowered limit."""
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10)
    for convert in (to_image, to_pil):
        with pytest.raises(InvalidRequestError, match="too large to decode safely"):
            convert(png(10, 10))


@pytest.mark.parametrize(
    "url", ["data:/../../etc/hosts.png", "data:text/plain;base64,aGk=", "data:image/png,raw"]
)
def test_a_data_url_is_never_read_as_a_path_and_must_be_a_base64_image(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data: string that is not an image's base64 data URL is refused, not opened as a file
    (fmgate serve passes clients' URLs here: a path would read the server's disk)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data:").mkdir()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hosts.png").write_bytes(png())
    for convert in (to_image, to_pil):
        with pytest.raises(InvalidRequestError, match="Not a base64 image data URL"):
            convert(url)
