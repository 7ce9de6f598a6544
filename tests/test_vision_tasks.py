"""classify() on images and detect(): the model's own head, and zero-shot with a vision chat model.

The backends here are fakes: what is checked is the core's part (inputs decoded once, refusals
before sending, one record per call counting images and pixels, zero-shot prompts and parsing).
Real heads are tested with tiny models in tests/local.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image as PILImage

import fmgate
from fmgate import Detection, Detections, MemorySink, Model
from fmgate._detect import BOX_SCHEMA, DETECT_VERSION
from fmgate._images import Image
from fmgate._record import Task, Usage
from fmgate._types import ChatRequest, ClassifyResult, Completion, DetectResult
from tests.fakes import FakeBackend, fake_config


def _png(tmp_path: Path, name: str, size: tuple[int, int], colour: str = "red") -> Path:
    path = tmp_path / name
    PILImage.new("RGB", size, colour).save(path)
    return path


class ImageClassifier(FakeBackend):
    """Labels an image by its colour (the top-left pixel): what a classification head returns."""

    seen: ClassVar[list[Any]] = []

    @property
    def tasks(self) -> frozenset[Task]:
        return frozenset({"classify"})

    @property
    def classifies(self) -> Any:
        return "image"

    def classify_images(self, images: Sequence[Any], *, top_k: int) -> ClassifyResult:
        ImageClassifier.seen = list(images)
        names = {(255, 0, 0): "red", (0, 0, 255): "blue"}
        ranked = [[(names.get(i.getpixel((0, 0)), "other"), 0.9), ("grey", 0.1)] for i in images]
        return ClassifyResult([r[:top_k] for r in ranked], Usage(), "head-1")


class Detector(FakeBackend):
    """Finds one object per image: the whole image, scored 0.8."""

    @property
    def tasks(self) -> frozenset[Task]:
        return frozenset({"detect"})

    def detect(self, images: Sequence[Any], *, threshold: float) -> DetectResult:
        found = [
            [Detection("thing", 0.8, (0.0, 0.0, float(i.width), float(i.height)))]
            if threshold <= 0.8
            else []
            for i in images
        ]
        return DetectResult(found, Usage(), "det-1")


class VisionChat(FakeBackend):
    """A chat model that reads images and honours structured output, answering from the image."""

    features: ClassVar[frozenset[str]] = frozenset({"images", "output"})

    def _reply(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        (image,) = request.messages[-1].images
        colour = image.pil().getpixel((0, 0))
        if request.output is not None:
            box = {"x0": -5, "y0": 1, "x1": image.width + 50, "y1": image.height - 1}
            objects = [{"label": "Red square" if colour == (255, 0, 0) else "blob", **box}]
            objects.append({"label": "empty", "x0": 3, "y0": 3, "x1": 3, "y1": 9})  # no area
            text = json.dumps({"objects": objects})
        else:
            text = "Red." if colour == (255, 0, 0) else "I see nothing I know."
        return Completion(text, "stop", Usage(300, 4, source="provider"), "vlm-1")


class TextChat(FakeBackend):
    supports_embeddings = False


def make(backend: type[FakeBackend]) -> tuple[Model, MemorySink]:
    sink = MemorySink()
    return Model(backend(fake_config()), sinks=[sink]), sink


# -- the model's own image classifier ---------------------------------------------------------


def test_an_image_classifier_takes_paths_bytes_pil_and_arrays(tmp_path: Path) -> None:
    m, sink = make(ImageClassifier)
    red = _png(tmp_path, "red.png", (40, 30))
    blue = PILImage.new("RGB", (20, 10), "blue")
    array = np.zeros((8, 6, 3), np.uint8)
    inputs = [red, str(red), red.read_bytes(), blue, array]
    result = m.classify(inputs, top_k=2)
    assert result.labels == ["red", "red", "red", "blue", "other"]
    assert result.results[3] == [("blue", 0.9), ("grey", 0.1)]
    assert all(i.mode == "RGB" for i in ImageClassifier.seen)
    (rec,) = sink.records
    assert (rec.task, rec.usage.items, rec.usage.images_in) == ("classify", 5, 5)
    assert rec.usage.pixels_in == 3 * 40 * 30 + 20 * 10 + 8 * 6
    assert result.usage == rec.usage


def test_one_image_is_one_input(tmp_path: Path) -> None:
    m, _ = make(ImageClassifier)
    assert m.classify(_png(tmp_path, "a.png", (4, 4))).labels == ["red"]
    assert asyncio.run(m.aclassify(PILImage.new("RGB", (4, 4), "blue"))).labels == ["blue"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (b"not an image", "not an image Pillow can read"),
        (Path("/nonexistent/cat.png"), "No such image file"),
        (np.zeros((4, 4), np.float32), "must be uint8"),
        (np.zeros((4, 4, 2), np.uint8), "HxWx3"),
        ("https://example.com/cat.png", "does not fetch URLs"),
        ([], "non-empty list"),
    ],
)
def test_bad_images_are_refused_before_classifying_and_recorded(
    inputs: object, message: str
) -> None:
    m, sink = make(ImageClassifier)
    with pytest.raises(fmgate.InvalidRequestError, match=message):
        m.classify(inputs)
    assert [(r.task, r.outcome.sent) for r in sink.records] == [("classify", False)]


def test_a_text_classifier_refuses_images_saying_what_it_reads() -> None:
    from tests.test_classify import OwnClassifier

    m, sink = make(OwnClassifier)
    with pytest.raises(fmgate.InvalidRequestError, match="classifies text, not images"):
        m.classify([PILImage.new("RGB", (4, 4))])
    assert sink.records[0].outcome.sent is False


# -- zero-shot with a vision chat model ----------------------------------------------------------


def test_a_vision_chat_model_classifies_images_zero_shot(tmp_path: Path) -> None:
    m, sink = make(VisionChat)
    red = _png(tmp_path, "red.png", (10, 10))
    green = PILImage.new("RGB", (5, 4), "green")
    result = m.classify([red, green], labels=["red", "blue"])
    assert result.results[0] == [("red", 1.0)]
    assert result.results[1] == [] and "names none of the labels" in str(result.errors[1])
    outer = sink.records[-1]
    assert outer.task == "classify" and outer.params["classify_prompt"] == "zero-shot-image-v1"
    assert (outer.usage.items, outer.usage.images_in, outer.usage.pixels_in) == (2, 2, 120)
    assert outer.usage.input_tokens == 600  # the rows' usage summed
    requests = m.backend.requests  # type: ignore[attr-defined]
    (request,) = [r for r in requests if r.messages[-1].images[0].width == 10]
    (message,) = request.messages
    assert isinstance(message.parts[0], Image) and "red, blue" in message.parts[1]
    assert len(sink.records) == 1  # the rows are parts of the one call


def test_a_chat_model_without_images_refuses_to_classify_them() -> None:
    m, sink = make(TextChat)
    with pytest.raises(fmgate.UnsupportedFeatureError, match="does not read images"):
        m.classify([PILImage.new("RGB", (4, 4))], labels=["a", "b"])
    assert sink.records[-1].outcome.sent is False


def test_texts_and_images_in_one_call_are_refused() -> None:
    m, _ = make(VisionChat)
    with pytest.raises(fmgate.InvalidRequestError, match="not both"):
        m.classify(["a text", PILImage.new("RGB", (4, 4))], labels=["a"])


# -- detect ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("run_async", [False, True])
def test_a_detector_finds_objects_one_record_per_call(tmp_path: Path, run_async: bool) -> None:
    m, sink = make(Detector)
    images = [_png(tmp_path, "a.png", (30, 20)), PILImage.new("RGB", (7, 5))]
    if run_async:
        result = asyncio.run(m.adetect(images, threshold=0.5))
    else:
        result = m.detect(images, threshold=0.5)
    assert isinstance(result, Detections)
    assert result.results == [
        [Detection("thing", 0.8, (0.0, 0.0, 30.0, 20.0))],
        [Detection("thing", 0.8, (0.0, 0.0, 7.0, 5.0))],
    ]
    (rec,) = sink.records
    assert (rec.task, rec.operation, rec.params) == ("detect", "detect", {"threshold": 0.5})
    assert (rec.usage.items, rec.usage.images_in, rec.usage.pixels_in) == (2, 2, 635)
    assert m.detect(images[1], threshold=0.9).results == [[]]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"threshold": 1.5}, fmgate.InvalidRequestError, r"threshold must lie in \[0, 1\]"),
        ({"threshold": True}, fmgate.InvalidRequestError, "threshold must lie"),
        ({"labels": ["cat"]}, fmgate.InvalidRequestError, "detects with its own labels"),
    ],
)
def test_bad_detect_arguments_are_refused_and_recorded(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    m, sink = make(Detector)
    with pytest.raises(error, match=message):
        m.detect(PILImage.new("RGB", (4, 4)), **kwargs)
    assert [(r.task, r.outcome.sent) for r in sink.records] == [("detect", False)]


def test_detect_on_a_classifier_names_its_tasks() -> None:
    m, sink = make(ImageClassifier)
    with pytest.raises(fmgate.UnsupportedTaskError, match="cannot detect objects.*classify"):
        m.detect(PILImage.new("RGB", (4, 4)))
    assert sink.records[0].task == "detect"


def test_a_vision_chat_model_detects_zero_shot_with_boxes_clipped_to_the_image() -> None:
    m, sink = make(VisionChat)
    red = PILImage.new("RGB", (64, 48), "red")
    result = m.detect([red, PILImage.new("RGB", (10, 10), "green")], labels=["red square"])
    # the box is clipped into the image; the zero-area one and the unlisted label are dropped
    assert result.results == [[Detection("red square", 1.0, (0.0, 1.0, 64.0, 47.0))], []]
    requests = m.backend.requests  # type: ignore[attr-defined]
    (request,) = [r for r in requests if r.messages[-1].images[0].width == 64]
    assert request.output is not None and request.output.schema == BOX_SCHEMA
    assert "64 pixels wide and 48 pixels high" in request.messages[-1].content
    assert "among these labels: red square" in request.messages[-1].content
    outer = sink.records[-1]
    assert outer.task == "detect" and outer.params["detect_prompt"] == DETECT_VERSION
    assert (outer.usage.items, outer.usage.images_in) == (2, 2)


def test_a_text_chat_model_cannot_detect() -> None:
    m, sink = make(TextChat)
    with pytest.raises(fmgate.UnsupportedFeatureError, match="images and output"):
        m.detect(PILImage.new("RGB", (4, 4)))
    assert sink.records[-1].outcome.sent is False
