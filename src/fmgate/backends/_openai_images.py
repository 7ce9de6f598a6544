"""The OpenAI wire's ``/images/generations``: request bodies, the images read back, and prices.

OpenAI's own body (``size="WxH"``, ``n``) takes no seed, steps or negative prompt: fmgate refuses
them before sending rather than drop them. A provider row that documents more (Together's
``width``/``height``, ``steps``, ``seed``, ``negative_prompt``) lists them in ``image_params``.
The ``gpt-image`` models always answer base64 and refuse ``response_format``; the DALL-E models
and compatible servers are asked for base64 (``b64_json``; Together's value is ``base64``), never
URLs, which would be a second download.

Prices: the ``gpt-image`` models report token usage, priced by genai-prices with the image tokens
apart (``gpt-image-1.5`` prices image output at 3.2x text output); the DALL-E models report none
and are priced per image from ``_data/image_prices.toml``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._cost import list_price, unknown
from .._errors import InvalidRequestError, MalformedResponseError
from .._image_gen import ImageRequest, ImageResult
from .._record import Cost, Usage

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

IMAGES_PATH = "/images/generations"
# OpenAI's image models, named by their id (an OpenAI chat model does not draw).
_IMAGE_MODEL_PREFIXES = ("gpt-image", "chatgpt-image", "dall-e")
_TOKEN_PRICED = ("gpt-image", "chatgpt-image")  # report usage; refuse response_format
# What OpenAI's body takes: the size as "WxH", and nothing of seeds or steps.
OPENAI_IMAGE_PARAMS = ("size",)
_OPTIONAL = ("seed", "steps", "negative_prompt")
# Body keys fmgate sets itself: an openai_<key> setting may not replace them.
_RESERVED = frozenset({"model", "prompt", "n", "size", "width", "height", "response_format"})


def is_image_model(model: str) -> bool:
    return model.lower().startswith(_IMAGE_MODEL_PREFIXES)


def image_body(
    model: str, request: ImageRequest, params: Sequence[str], base64_format: str = "b64_json"
) -> dict[str, Any]:
    """The JSON body for ``request``; ``params``: what the row's endpoint takes beyond
    ``model``, ``prompt``, ``n`` and ``response_format``; ``base64_format``: the
    ``response_format`` that asks it for base64. A seed, steps or negative prompt the endpoint
    does not take is refused here, before anything is sent."""
    refused = [name for name in _OPTIONAL if getattr(request, name) is not None]
    refused = [name for name in refused if name not in params]
    if refused:
        raise InvalidRequestError(
            f"{model}'s images endpoint takes no {', '.join(refused)}: fmgate refuses it rather "
            "than draw without it."
        )
    body: dict[str, Any] = {"model": model, "prompt": request.prompt, "n": request.n}
    if "width" in params:
        body["width"], body["height"] = request.width, request.height
    else:
        body["size"] = request.size
    for name in _OPTIONAL:
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if not model.lower().startswith(_TOKEN_PRICED):
        body["response_format"] = base64_format
    clash = _RESERVED.intersection(request.extra)
    if clash:
        raise InvalidRequestError(
            f"The backend parameter {sorted(clash)[0]!r} cannot be passed through: fmgate sets "
            f"{', '.join(sorted(_RESERVED))} itself."
        )
    body.update(request.extra)
    return body


def read_images(data: Any, provider: str) -> tuple[list[PILImage], Usage]:
    """The images (decoded from ``b64_json``) and the usage of an images response."""
    try:
        if isinstance(data, dict) and "error" in data and "data" not in data:
            raise ValueError(f"an error object: {str(data['error'])[:300]}")
        items = data["data"]
        if not isinstance(items, list):
            raise ValueError("data is not a list")
        images = [_decode(item) for item in items]
        return images, _usage(data.get("usage"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise MalformedResponseError(
            f"{provider}: the body is not an images response ({detail}).", provider=provider
        ) from exc


def _decode(item: Any) -> PILImage:
    from PIL import Image, UnidentifiedImageError

    b64 = item.get("b64_json")
    if not isinstance(b64, str):
        raise ValueError("an image without b64_json (fmgate asks for base64, never URLs)")
    try:
        image = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
        image.load()
    except (binascii.Error, UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"b64_json is not an image: {exc}") from exc
    return image


def _usage(raw: Any) -> Usage:
    """The ``gpt-image`` models' usage; none elsewhere (DALL-E and most compatible servers)."""
    if raw is None:
        return Usage()
    return Usage(_int(raw.get("input_tokens")), _int(raw.get("output_tokens")), source="provider")


def image_tokens(raw: Any) -> tuple[int, int]:
    """The image tokens among the input and output tokens (``gpt-image`` models). Output
    without details is all image: ``gpt-image-1`` draws and writes nothing else."""
    if not isinstance(raw, dict):
        return 0, 0
    details_in = raw.get("input_tokens_details") or {}
    details_out = raw.get("output_tokens_details")
    image_in = _int(details_in.get("image_tokens")) or 0
    if isinstance(details_out, dict):
        image_out = _int(details_out.get("image_tokens")) or 0
    else:
        image_out = _int(raw.get("output_tokens")) or 0
    return image_in, image_out


def _int(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise ValueError(f"a {type(value).__name__} where a token count belongs")


def image_cost(
    price_provider: str | None, model: str, request: ImageRequest, usage: Usage, raw: Any
) -> Cost | None:
    """The call's price where tokens alone do not say it: the ``gpt-image`` models' image
    tokens, the DALL-E models' price per image. ``None``: priced by the recording as usual."""
    if price_provider != "openai":
        if usage.input_tokens is None or usage.output_tokens is None:
            return unknown(f"no token usage reported, and no per-image price known for {model}")
        return None
    if usage.input_tokens is not None and usage.output_tokens is not None:
        try:
            tokens = image_tokens(raw.get("usage") if isinstance(raw, dict) else None)
        except ValueError:  # odd details: priced as plain tokens by the recording
            return None
        return list_price(price_provider, model, usage, image_tokens=tokens).cost
    return per_image_price(model, request)


def per_image_price(model: str, request: ImageRequest) -> Cost | None:
    """From the table of per-image prices: by model, size and quality; ``None`` if not there."""
    table = _image_prices()
    row = next((r for r in table["model"] if model.lower().startswith(r["match"])), None)
    if row is None:
        return None
    quality = str(request.extra.get("quality", row["default_quality"]))
    price = row["prices"].get(quality, {}).get(request.size)
    if price is None:
        return Cost(
            None,
            "unknown",
            source=f"{_SOURCE}: no price for {model} at {request.size}, quality {quality}",
        )
    return Cost(Decimal(price) * request.n, "list_price", source=f"{_SOURCE} ({table['as_of']})")


_SOURCE = "fmgate per-image table (image_prices.toml)"


@functools.cache
def _image_prices() -> dict[str, Any]:
    import tomllib
    from importlib import resources

    text = resources.files("fmgate._data").joinpath("image_prices.toml").read_text("utf-8")
    return tomllib.loads(text)


def images_result(
    data: Any, request: ImageRequest, provider: str, price_provider: str | None, model: str
) -> ImageResult:
    images, usage = read_images(data, provider)
    model_id = data.get("model") if isinstance(data.get("model"), str) else None
    cost = image_cost(price_provider, model_id or model, request, usage, data)
    return ImageResult(images, usage, model_id, cost=cost)
