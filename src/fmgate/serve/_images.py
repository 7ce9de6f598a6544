"""``POST /v1/images/generations``: OpenAI's Images API request and response, over models whose
tasks include ``image``.

The body is OpenAI's (``model``, ``prompt``, ``n``, ``size``, ``response_format``) with the
extensions Together's API documents for open pipelines: ``seed``, ``steps`` and
``negative_prompt``. Images are answered as base64 PNGs (``b64_json``); this server keeps no
files, so ``response_format="url"`` is refused. fmgate checks the values (size, n, seed, steps)
as for any ``generate_image`` call, and its refusals are 400s.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import invalid, unrecognized
from ._wire import model_name, now

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from .._image_gen import Images

DEFAULT_SIZE = "512x512"  # fmgate's default; OpenAI's "auto" means the same here
_OPTIONS = ("n", "size", "seed", "steps", "negative_prompt")
_IGNORED = frozenset({"user"})


@dataclass(frozen=True, slots=True)
class ImageCall:
    model: str
    prompt: str
    options: dict[str, Any]


def read_images_call(body: Mapping[str, Any]) -> ImageCall:
    given = {k: v for k, v in body.items() if v is not None}
    for field in given:
        if field not in _OPTIONS and field not in _IGNORED and field not in _OWN:
            raise unrecognized(field)
    fmt = given.get("response_format", "b64_json")
    if fmt != "b64_json":
        raise invalid(
            f"response_format {fmt!r} is not supported by this server (fmgate serve): it keeps "
            "no files to link to. Ask for 'b64_json'.",
            "response_format",
        )
    prompt = given.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("prompt must be a non-empty string.", "prompt")
    options = {name: given[name] for name in _OPTIONS if name in given}
    if options.get("size") == "auto":
        del options["size"]
    options.setdefault("size", DEFAULT_SIZE)
    return ImageCall(model_name(given), prompt, options)


_OWN = frozenset({"model", "prompt", "response_format"})


def images_response(images: Images) -> dict[str, Any]:
    """OpenAI's ImagesResponse: the creation time and one base64 PNG per image."""
    data = [{"b64_json": _png(image)} for image in images.images]
    return {"created": now(), "data": data}


def _png(image: PILImage) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
