"""Model.generate_image: the checks, the record and Images.save, on a fake backend that draws.

Real pipelines (diffusers, the images APIs) are tested in their own files.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

import fmgate
from fmgate import Images, MemorySink, Model
from fmgate._image_gen import ImageRequest, ImageResult
from tests.fakes import FakeBackend, Painter, fake_config


def make(backend: type[FakeBackend] = Painter) -> tuple[Model, MemorySink]:
    sink = MemorySink()
    return Model(backend(fake_config()), sinks=[sink]), sink


@pytest.mark.parametrize("run_async", [False, True])
def test_one_record_counts_the_images_and_their_pixels(run_async: bool) -> None:
    m, sink = make()
    if run_async:
        result = asyncio.run(m.agenerate_image("a red fox", size="64x32", n=3, seed=7))
    else:
        result = m.generate_image("a red fox", size="64x32", n=3, seed=7)
    assert isinstance(result, Images) and len(result.images) == 3
    assert result.images[0].size == (64, 32) and result.images[0].getpixel((0, 0)) == (7, 0, 0)
    (rec,) = sink.records
    assert (rec.task, rec.operation, rec.model_id) == ("image", "generate_content", "painter-1")
    assert (rec.usage.items, rec.usage.images_out, rec.usage.pixels_out) == (3, 3, 3 * 64 * 32)
    assert rec.params == {"size": "64x32", "n": 3, "seed": 7, "steps": 25}  # the default steps
    assert result.usage == rec.usage


def test_the_prompts_are_never_recorded() -> None:
    m, sink = make()
    m.generate_image("secret plans", negative_prompt="blurry secrets", steps=4)
    (rec,) = sink.records
    assert rec.params == {"size": "512x512", "n": 1, "steps": 4, "negative_prompt": True}
    assert "secret" not in str(rec.to_dict())
    assert Painter.seen[-1].negative_prompt == "blurry secrets"


def test_backend_settings_go_with_the_prefix() -> None:
    m, _ = make()
    m.generate_image("a fox", paint_brush="wide")
    assert Painter.seen[-1].extra == {"brush": "wide"}
    with pytest.raises(fmgate.InvalidRequestError, match="paint_quality=..."):
        m.generate_image("a fox", quality="high")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": "512"}, "WIDTHxHEIGHT"),
        ({"size": "0x512"}, "outside 1-8192"),
        ({"size": "51200x512"}, "outside 1-8192"),
        ({"n": 0}, "n must be an int from 1 to 16"),
        ({"n": True}, "n must be an int"),
        ({"steps": 0}, "steps must be an int from 1"),
        ({"seed": 2**64}, "fits in 64 bits"),
        ({"negative_prompt": 3}, "negative_prompt must be a str"),
    ],
)
def test_bad_requests_are_refused_before_drawing_and_recorded(
    kwargs: dict[str, Any], message: str
) -> None:
    m, sink = make()
    with pytest.raises(fmgate.InvalidRequestError, match=message):
        m.generate_image("a fox", **kwargs)
    assert [(r.task, r.outcome.sent) for r in sink.records] == [("image", False)]


def test_an_empty_prompt_is_refused() -> None:
    m, _ = make()
    with pytest.raises(fmgate.InvalidRequestError, match="non-empty str prompt"):
        m.generate_image("  ")


def test_a_model_that_does_not_draw_names_its_tasks() -> None:
    m, sink = make(FakeBackend)
    with pytest.raises(fmgate.UnsupportedTaskError, match="cannot generate images"):
        m.generate_image("a fox")
    assert sink.records[0].task == "image" and sink.records[0].outcome.sent is False


def test_a_backend_returning_too_few_images_fails_the_call() -> None:
    class Short(Painter):
        def generate_image(self, request: ImageRequest) -> ImageResult:
            return ImageResult([PILImage.new("RGB", (4, 4))])

    m, sink = make(Short)
    with pytest.raises(fmgate.MalformedResponseError, match="1 images for n=2"):
        m.generate_image("a fox", n=2)
    assert sink.records[0].outcome.status == "error"


def test_save_writes_pngs_that_say_where_they_came_from(tmp_path: Path) -> None:
    m, _ = make()
    result = m.generate_image("a red fox", size="16x16", n=2)
    paths = result.save(tmp_path / "out")
    assert [p.name for p in paths] == [f"{result.record.id}-0.png", f"{result.record.id}-1.png"]
    with PILImage.open(paths[1]) as saved:
        text: Any = saved.text  # type: ignore[attr-defined]
        assert text["prompt"] == "a red fox"
        assert text["fmgate_record_id"] == result.record.id
        assert text["model"] == "painter-1"
