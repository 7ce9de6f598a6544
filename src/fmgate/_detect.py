"""The detect task: ``Model.detect`` and ``Model.adetect``, on the model's recording path.

A model with a detector of its own (``Backend.detect``: transformers' object-detection heads,
SSD through OpenCV) finds the objects scoring at least ``threshold`` in each image. A chat model
that reads images and honours structured output detects zero-shot: fmgate asks it, in a prompt of
its own (:data:`DETECT_PROMPT`, versioned in the record's ``params``), for the objects' labels and
boxes in pixels, as JSON that a schema checks; its boxes score 1.0, which is not a probability.
Either way a call is one record, ``task == "detect"``, with ``usage.items`` the number of images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._classify import Pictures, finish_items, image_prompt, pictures, sum_usage, to_label
from ._errors import (
    FmgateError,
    InvalidRequestError,
    UnsupportedFeatureError,
    shown,
)
from ._images import Image, to_image, to_images
from ._recording import CallTimer, parts_of_one_call
from ._types import Box, Detection, Detections, DetectResult, Response

if TYPE_CHECKING:
    from ._model import Model

DETECT_VERSION = "zero-shot-detect-v1"
DETECT_PROMPT = (
    "Find the objects in this image{among}. The image is {width} pixels wide and {height} pixels "
    "high. For each object give its label and its box in pixels: x0, y0 (top-left corner) and "
    "x1, y1 (bottom-right corner). Answer with an empty list if there is none."
)
DETECT_MAX_TOKENS = 512
BOX_SCHEMA: dict[str, Any] = {
    "title": "objects",
    "type": "object",
    "properties": {
        "objects": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "x0": {"type": "number"},
                    "y0": {"type": "number"},
                    "x1": {"type": "number"},
                    "y1": {"type": "number"},
                },
                "required": ["label", "x0", "y0", "x1", "y1"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["objects"],
    "additionalProperties": False,
}


def detect(
    model: Model,
    images: object,
    threshold: float,
    labels: Sequence[str] | None,
    max_tokens: int | None,
) -> Detections:
    if _own(model):
        with model.recording("detect", params={"threshold": threshold}) as timer:
            batch = _own_detector(model, images, threshold, labels)
            timer.read_images(batch.sizes)
            result = model.backend.detect(batch.images, threshold=threshold)
        return _done(timer, result, len(batch))
    params = _zero_shot_params(model, labels, max_tokens)
    with model.recording("detect", params=params) as timer:
        encoded, prompts = _zero_shot(model, images, params, timer)
        with parts_of_one_call():
            rows = model.generate_many(prompts, return_exceptions=True, **_sent(params))
        result = _boxes(rows, encoded, params.get("labels"))
    return _done(timer, result, len(encoded))


async def adetect(
    model: Model,
    images: object,
    threshold: float,
    labels: Sequence[str] | None,
    max_tokens: int | None,
) -> Detections:
    if _own(model):
        with model.recording("detect", params={"threshold": threshold}) as timer:
            batch = _own_detector(model, images, threshold, labels)
            timer.read_images(batch.sizes)
            result = await model.backend.adetect(batch.images, threshold=threshold)
        return _done(timer, result, len(batch))
    params = _zero_shot_params(model, labels, max_tokens)
    with model.recording("detect", params=params) as timer:
        encoded, prompts = _zero_shot(model, images, params, timer)
        with parts_of_one_call():
            rows = await model.agenerate_many(prompts, return_exceptions=True, **_sent(params))
        result = _boxes(rows, encoded, params.get("labels"))
    return _done(timer, result, len(encoded))


# -- checks ---------------------------------------------------------------------------------------


def _own(model: Model) -> bool:
    """Whether the model detects with a detector of its own (else: zero-shot, or refused)."""
    return "detect" in model.tasks or "chat" not in model.tasks


def _own_detector(
    model: Model, images: object, threshold: float, labels: Sequence[str] | None
) -> Pictures:
    batch = pictures(images, "detect()")
    _check_threshold(threshold)
    if "detect" not in model.tasks:
        raise model.backend.unsupported("detect")
    if labels is not None:
        raise InvalidRequestError(
            f"{model.spec} detects with its own labels: drop labels= (it asks a vision chat "
            "model to look for those labels), and filter the detections by label instead."
        )
    return batch


def _zero_shot(
    model: Model, images: object, params: dict[str, Any], timer: CallTimer
) -> tuple[list[Image], list[Any]]:
    encoded = [to_image(x) for x in to_images(images, "detect()")]
    features = model.backend.features
    missing = [f for f in ("images", "output") if f not in features]
    if missing:
        raise UnsupportedFeatureError(
            f"{model.spec} has no detector of its own, and a chat model detects zero-shot only "
            f"if it reads images and honours structured output; its backend lacks "
            f"{' and '.join(missing)}. Load an object detector, or a vision chat model.",
            feature=missing[0],
        )
    timer.read_images([(image.width, image.height) for image in encoded])
    labels = params.get("labels")
    among = f" among these labels: {', '.join(labels)}" if labels else ""
    prompts = [
        image_prompt(
            image, DETECT_PROMPT.format(among=among, width=image.width, height=image.height)
        )
        for image in encoded
    ]
    return encoded, prompts


def _check_threshold(threshold: float) -> None:
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not 0 <= threshold <= 1
    ):
        raise InvalidRequestError(f"threshold must lie in [0, 1], not {shown(threshold)}.")


def _zero_shot_params(
    model: Model, labels: Sequence[str] | None, max_tokens: int | None
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "detect_prompt": DETECT_VERSION,
        "max_tokens": DETECT_MAX_TOKENS if max_tokens is None else max_tokens,
        "temperature": 0.0,
    }
    if labels is None:
        return params
    try:
        if isinstance(labels, str) or not isinstance(labels, Sequence):
            raise InvalidRequestError(f"labels must be a list of str, not {shown(labels)}.")
        listed = list(dict.fromkeys(labels))
        if not listed or not all(isinstance(label, str) and label.strip() for label in listed):
            raise InvalidRequestError(
                f"labels must be a non-empty list of non-blank str, not {shown(labels)}."
            )
    except InvalidRequestError:
        with model.recording("detect"):
            raise
    return {**params, "labels": [label.strip() for label in listed]}


def _sent(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "max_tokens": params["max_tokens"],
        "temperature": params["temperature"],
        "output": BOX_SCHEMA,
    }


# -- answers --------------------------------------------------------------------------------------


def _boxes(
    rows: Sequence[Response | FmgateError], images: Sequence[Image], labels: list[str] | None
) -> DetectResult:
    """The rows' objects as detections in each image's pixels (boxes clipped to the image,
    empty or reversed ones dropped; with ``labels``, objects named by none of them dropped)."""
    results: list[list[Detection]] = []
    errors: list[str | None] = []
    for i, (row, image) in enumerate(zip(rows, images, strict=True)):
        if isinstance(row, FmgateError):
            results.append([])
            errors.append(f"image {i}: {type(row).__name__}: {row}")
            continue
        results.append(_objects(row.parsed, image, labels))
        errors.append(None)
    if all(error is not None for error in errors):
        first = next(row for row in rows if isinstance(row, FmgateError))
        raise first
    responses = [row for row in rows if isinstance(row, Response)]
    usage = sum_usage([r.usage for r in responses])
    failed = tuple(errors) if any(errors) else ()
    return DetectResult(results, usage, responses[0].record.model_id, failed)


def _objects(parsed: Any, image: Image, labels: list[str] | None) -> list[Detection]:
    found: list[Detection] = []
    for item in parsed.get("objects", []) if isinstance(parsed, dict) else []:
        label = str(item.get("label", "")).strip()
        if labels is not None:
            label = to_label(label, labels) or ""
        box = _clipped(item, image.width, image.height)
        if label and box is not None:
            found.append(Detection(label, 1.0, box))
    return found


def _clipped(item: dict[str, Any], width: int, height: int) -> Box | None:
    try:
        x0, y0, x1, y1 = (float(item[k]) for k in ("x0", "y0", "x1", "y1"))
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return None
    x0, x1 = max(0.0, min(x0, width)), max(0.0, min(x1, width))
    y0, y1 = max(0.0, min(y0, height)), max(0.0, min(y1, height))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _done(timer: CallTimer, result: DetectResult, items: int) -> Detections:
    failed = None
    if result.errors:
        bad = [e for e in result.errors if e is not None]
        failed = f"{len(bad)} of {items} images failed: {'; '.join(bad[:5])}"
    record = finish_items(
        timer, result, items, "detector returned %d results for %d images", failed
    )
    return Detections(result.results, record.usage, record, result.errors)
