"""How ``fmgate compare`` runs an image set: which models see the images how, in what calls.

An image classifier (EfficientNet, MobileNetV2) runs ``Model.classify(images, top_k=5)`` with its
own labels; an object detector (SSD, DETR) runs ``Model.detect(images)`` (threshold 0.5). A chat
model that reads images does either zero-shot, offered the set's labels (the first alternative of
each). Local models take a batch of images per call (one record each); API and self-hosted models
one image per call, run concurrently, as their chat calls are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import InvalidRequestError
from .._tags import PROMPT, REPEAT, ROLE, RUN, WARMUP
from .image_scorers import TOP_K
from .images import ImageItem, ImageTask

if TYPE_CHECKING:
    from .._model import Model
    from .._types import Classifications, Detections

__all__ = [
    "IMAGE_BATCH",
    "ImageCall",
    "can_see",
    "check_image_models",
    "image_batch",
    "image_calls",
    "planned_image_calls",
    "see",
]

IMAGE_BATCH = 16  # images per call for a local classifier or detector: one record per batch


@dataclass(frozen=True, slots=True)
class ImageCall:
    """The images one call sends: one for an API model or a warm-up, a batch locally."""

    items: tuple[ImageItem, ...]
    repeat: int
    warmup: bool = False

    def tags(self, run_id: str) -> dict[str, str]:
        tags = {RUN: run_id, REPEAT: str(self.repeat), ROLE: "candidate"}
        if len(self.items) == 1:  # a batch's record covers many images: its score names them
            tags[PROMPT] = self.items[0].id
        return {**tags, WARMUP: "true"} if self.warmup else tags


def natively(model: Model, task: ImageTask) -> bool:
    """Whether ``model`` does ``task`` with a head of its own (an image classifier's labels, a
    detector's classes), rather than zero-shot as a chat model."""
    if task == "detect":
        return "detect" in model.tasks
    return "classify" in model.tasks and model.backend.classifies == "image"


def _zero_shot(model: Model, task: ImageTask) -> bool:
    """Whether a chat model can do ``task`` zero-shot: it reads images (and, to detect, honours
    structured output, which carries the boxes)."""
    needs = {"images", "output"} if task == "detect" else {"images"}
    return "chat" in model.tasks and needs <= model.backend.features


def can_see(model: Model, task: ImageTask) -> bool:
    """Whether ``model`` can do ``task`` on images, natively or zero-shot."""
    return natively(model, task) or _zero_shot(model, task)


def check_image_models(models: Sequence[Model], task: ImageTask) -> None:
    """Refuse, before any call, a model that can do ``task`` neither natively nor zero-shot
    (a text classifier, a chat model that reads no images)."""
    for model in models:
        if not can_see(model, task):
            doing = "classify images" if task == "classify" else "detect objects"
            raise InvalidRequestError(
                f"{model.alias or model.spec} cannot {doing}: give an image classifier, an "
                "object detector or a chat model that reads images"
                + (" and honours structured output" if task == "detect" else "")
                + f" (its tasks are {', '.join(sorted(model.tasks))})."
            )


def image_batch(model: Model, task: ImageTask) -> int:
    """Images per call: one for API and self-hosted models (they run concurrently); locally
    :data:`IMAGE_BATCH` for a classifier or detector, one generation batch for a chat model."""
    if model.backend.distribution != "local":
        return 1
    if natively(model, task):
        return max(IMAGE_BATCH, model.backend.default_batch_size)
    return max(1, model.backend.default_batch_size)


def image_calls(
    items: Sequence[ImageItem], repeat: int, warmup: int, size: int
) -> tuple[list[ImageCall], list[ImageCall]]:
    """The warm-up calls (one image each), then each pass over the set in calls of ``size``
    images; a batch never spans two passes, so its ``repeat`` tag is its own."""
    n = len(items)
    warm = [ImageCall((items[i % n],), i // n, warmup=True) for i in range(warmup)]
    measured = [
        ImageCall(tuple(items[start : start + size]), r)
        for r in range(repeat)
        for start in range(0, n, size)
    ]
    return warm, measured


def planned_image_calls(
    model: Model, items: Sequence[ImageItem], task: ImageTask, repeat: int, warmup: int
) -> int:
    return warmup + repeat * math.ceil(len(items) / image_batch(model, task))


def see(
    model: Model,
    call: ImageCall,
    task: ImageTask,
    labels: list[str],
    max_tokens: int | None,
) -> Classifications | Detections:
    """One call: ``classify(images, top_k=5)`` or ``detect(images)``; a chat model is offered
    ``labels`` (the set's) and bounded by ``max_tokens``."""
    images = [item.source() for item in call.items]
    own = natively(model, task)
    if task == "detect":
        if own:
            return model.detect(images)
        return model.detect(images, labels=labels, max_tokens=max_tokens)
    if own:
        return model.classify(images, top_k=TOP_K)
    return model.classify(images, labels=labels, max_tokens=max_tokens)
