"""The image task: ``Model.generate_image`` and ``Model.agenerate_image``, on the recording path.

A backend that draws (diffusers pipelines in process, an images API) receives an
:class:`ImageRequest` and returns an :class:`ImageResult` (PIL images). fmgate checks the request
before anything runs (a refusal is recorded, unsent) and records one call: ``task == "image"``,
``usage.images_out`` and ``usage.items`` the images made, ``usage.pixels_out`` their pixels,
``params`` the size, count, seed and steps (the prompt is never recorded), cost per image as
``cost.amount / usage.items``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _retry as retry
from ._errors import InvalidRequestError, MalformedResponseError, shown
from ._record import CallRecord, Cost, Usage
from ._types import SEED_RANGE, check_text

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from ._model import Model
    from ._recording import CallTimer

__all__ = ["ImageRequest", "ImageResult", "Images", "agenerate_image", "generate_image"]

_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
MAX_SIDE = 8192  # past this no pipeline or API draws; a typo (51200x512) is refused early
MAX_IMAGES = 16  # a call draws at most this many: more is a batch job, not one request
MAX_STEPS = 1000


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """What a backend receives: the prompt, the size in pixels, how many images, the seed and
    denoising steps where given, what to avoid (``negative_prompt``, for pipelines that take
    one), and backend-specific settings (``extra``, prefix removed)."""

    prompt: str
    width: int
    height: int
    n: int = 1
    seed: int | None = None
    steps: int | None = None
    negative_prompt: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What a backend returns: the images (PIL), token usage where the provider reports it,
    the model as it names itself, the steps the pipeline ran (its default where the
    request gave none), and the price where the backend knows it and token counts do not say
    it (a per-image table; image tokens priced apart); ``None``: priced from the usage."""

    images: list[PILImage]
    usage: Usage = Usage()
    model_id: str | None = None
    steps: int | None = None
    cost: Cost | None = None


@dataclass(frozen=True, slots=True)
class Images:
    """The result of ``generate_image``: the images (PIL), the usage, the call record, and the
    prompt (kept here, for :meth:`save`; never in the record)."""

    images: list[PILImage]
    usage: Usage
    record: CallRecord
    prompt: str

    def save(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write each image as ``<record id>-<i>.png`` in ``folder`` (created if needed), with
        the prompt, the model and the record id in the PNG's text chunks, so a file says where
        it came from. Returns the paths."""
        from PIL.PngImagePlugin import PngInfo

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, image in enumerate(self.images):
            info = PngInfo()
            info.add_text("prompt", self.prompt)
            info.add_text("fmgate_record_id", self.record.id)
            info.add_text("model", self.record.model_id or "")
            path = out / f"{self.record.id}-{i}.png"
            image.save(path, format="PNG", pnginfo=info)
            paths.append(path)
        return paths


def generate_image(model: Model, prompt: str, options: dict[str, Any]) -> Images:
    params = _params(options)
    with model.recording("image", params=params) as timer:
        request = _request(model, prompt, options)
        backend = model.backend  # an API's 429s and 5xx are tried again, as chat calls are
        result = retry.call(
            model.retry, timer, lambda: backend.generate_image(request), backend.provider
        )
    return _done(timer, result, request)


async def agenerate_image(model: Model, prompt: str, options: dict[str, Any]) -> Images:
    params = _params(options)
    with model.recording("image", params=params) as timer:
        request = _request(model, prompt, options)
        backend = model.backend
        result = await retry.acall(
            model.retry, timer, lambda: backend.agenerate_image(request), backend.provider
        )
    return _done(timer, result, request)


def _params(options: dict[str, Any]) -> dict[str, Any]:
    """What the record says of the request: settings, never the prompts themselves."""
    shown_options = {k: v for k, v in options.items() if v is not None and k != "negative_prompt"}
    if options.get("negative_prompt") is not None:
        shown_options["negative_prompt"] = True  # given, not what it says
    return shown_options


def _request(model: Model, prompt: str, options: dict[str, Any]) -> ImageRequest:
    """The checked request, once the model is known to draw."""
    if "image" not in model.tasks:
        raise model.backend.unsupported("image")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequestError(
            f"generate_image() takes a non-empty str prompt, not {shown(prompt)}."
        )
    options = dict(options)
    width, height = _size(options.pop("size"))
    n = _bounded("n", options.pop("n"), 1, MAX_IMAGES)
    seed = options.pop("seed")
    if seed is not None and (
        isinstance(seed, bool)
        or not isinstance(seed, int)
        or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]
    ):
        raise InvalidRequestError(f"seed must be an int that fits in 64 bits, not {shown(seed)}.")
    steps = options.pop("steps")
    if steps is not None:
        steps = _bounded("steps", steps, 1, MAX_STEPS)
    negative = options.pop("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise InvalidRequestError(f"negative_prompt must be a str, not {shown(negative)}.")
    return ImageRequest(
        check_text(prompt, "The prompt"),
        width,
        height,
        n,
        seed,
        steps,
        check_text(negative, "The negative prompt") if negative is not None else None,
        _extra(model, options),
    )


def _size(size: object) -> tuple[int, int]:
    match = _SIZE.match(size) if isinstance(size, str) else None
    if match is None:
        raise InvalidRequestError(
            f"size must be 'WIDTHxHEIGHT' in pixels (e.g. '512x512'), not {shown(size)}."
        )
    width, height = int(match[1]), int(match[2])
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise InvalidRequestError(f"size {size} is outside 1-{MAX_SIDE} pixels a side.")
    return width, height


def _bounded(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequestError(
            f"{name} must be an int from {low} to {high}, not {shown(value)}."
        )
    return value


def _extra(model: Model, options: dict[str, Any]) -> dict[str, Any]:
    """Backend-specific settings, given with the backend's prefix (``openai_quality="high"``)."""
    prefix = model.backend.wire + "_"
    extra = {}
    for key, value in options.items():
        if not key.startswith(prefix) or key == prefix:
            raise InvalidRequestError(
                f"Unknown parameter {key!r} for generate_image: the common ones are size, n, "
                f"seed, steps, negative_prompt; pass this backend's own with its prefix, e.g. "
                f"{prefix}{key}=..."
            )
        if value is not None:
            extra[key.removeprefix(prefix)] = value
    return extra


def _done(timer: CallTimer, result: ImageResult, request: ImageRequest) -> Images:
    if len(result.images) != request.n:
        error = MalformedResponseError(
            f"the model returned {len(result.images)} images for n={request.n}"
        )
        timer.fail(error)
        raise error
    if result.steps is not None and request.steps is None:
        timer.add_params({"steps": result.steps})
    pixels = sum(image.width * image.height for image in result.images)
    usage = dataclasses.replace(
        result.usage, items=request.n, images_out=request.n, pixels_out=pixels
    )
    record = timer.succeed(
        usage=usage, model_id=result.model_id, finish_reason=None, cost=result.cost
    )
    return Images(list(result.images), record.usage, record, request.prompt)
