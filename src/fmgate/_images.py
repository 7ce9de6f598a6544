"""Images as fmgate takes them: a path, bytes, a PIL image or an HxWx3 uint8 array.

Two forms, for two uses:

- :class:`Image`, an encoded image (PNG, JPEG, GIF or WebP bytes) with its size: what a chat
  message carries and what every wire takes (OpenAI's data URLs, Anthropic's base64 blocks). A
  file in another format (BMP, TIFF, ...), a PIL image or an array is encoded as PNG, lossless.
- a PIL image in RGB (:func:`to_pil`): what a local vision model reads; nothing is encoded on
  the way, so a local classifier pays no PNG round trip.

Pillow is imported on first use, never by ``import fmgate``.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import InvalidRequestError, shown

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["Image", "is_image", "names_an_image", "to_image", "to_images", "to_pil"]

# The formats every provider takes (OpenAI, Anthropic, Gemini): others are re-encoded as PNG.
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
_DATA_URL = re.compile(r"^data:(image/[\w.+-]+)?(;[\w=.-]+)*?;base64,", re.IGNORECASE)
WHAT = "an image is a path, bytes, a PIL image or an HxWx3 uint8 array"


@dataclass(frozen=True, slots=True, repr=False)
class Image:
    """An encoded image and its size in pixels. ``repr`` shows the size, never the bytes."""

    data: bytes
    media_type: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        """``data:image/png;base64,...``: how OpenAI-style wires carry an image."""
        return f"data:{self.media_type};base64,{self.base64()}"

    def pil(self) -> PILImage:
        """The image decoded, in RGB."""
        return _rgb(_open(self.data))

    def __repr__(self) -> str:
        return f"Image({self.media_type}, {self.width}x{self.height}, {len(self.data)} bytes)"


def is_image(value: object) -> bool:
    """Whether ``value`` is one of the image forms (a str is text, never a path, here)."""
    return (
        isinstance(value, Image | bytes | bytearray | memoryview | os.PathLike)
        or _is_array(value)
        or _is_pil(value)
    )


def to_image(value: object) -> Image:
    """``value`` as an encoded :class:`Image`. A str is a file path or a ``data:`` URL."""
    if isinstance(value, Image):
        return value
    if isinstance(value, str):
        if value[:5].lower() == "data:":  # never a path, even when not an image's data URL
            return _from_bytes(_decode_data_url(value))
        if value.startswith(("http://", "https://")):
            raise InvalidRequestError(
                "fmgate sends images inline and does not fetch URLs: download the image and "
                f"pass its path or bytes ({value[:80]!r})."
            )
        return _from_bytes(_read(Path(value)))
    if isinstance(value, os.PathLike):
        return _from_bytes(_read(Path(os.fspath(value))))
    if isinstance(value, bytes | bytearray | memoryview):
        return _from_bytes(bytes(value))
    if _is_pil(value) or _is_array(value):
        return _encoded(to_pil(value))
    raise InvalidRequestError(f"Not an image: {WHAT}, not {shown(value)}.")


def to_pil(value: object) -> PILImage:
    """``value`` as a PIL image in RGB, decoded or converted, never re-encoded."""
    if _is_pil(value):
        return _rgb(value)
    if _is_array(value):
        return _from_array(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _rgb(_open(bytes(value)))
    if isinstance(value, os.PathLike):
        return _rgb(_open(_read(Path(os.fspath(value)))))
    if isinstance(value, str) and value[:5].lower() != "data:" and "://" not in value:
        return _rgb(_open(_read(Path(value))))
    return to_image(value).pil()  # an Image, a data URL; a URL is refused there


def names_an_image(text: str) -> bool:
    """Whether a str given where text or an image may go is an image: a ``data:image`` URL, or
    an existing file with an image suffix (``"cat.jpg"``)."""
    if _DATA_URL.match(text):
        return True
    if Path(text).suffix.lower() not in _SUFFIXES or len(text) > 4096:
        return False
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):
        return False


def to_images(inputs: object, what: str) -> list[object]:
    """One image or a list of them, as a list (not yet converted), for a task that takes only
    images (a str is a path or a data URL); refuses anything else."""
    if is_image(inputs) or isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, Sequence) and inputs:
        batch = list(inputs)
        if all(is_image(x) or isinstance(x, str) for x in batch):
            return batch
    raise InvalidRequestError(
        f"{what} takes an image or a non-empty list of them ({WHAT}), not {shown(inputs)}."
    )


_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}
)


# -- helpers -----------------------------------------------------------------------------------


def _pil_module() -> Any:
    try:
        from PIL import Image as pil
    except ImportError as exc:  # pragma: no cover - pillow is a dependency of fmgate
        from ._errors import MissingExtraError

        raise MissingExtraError("Images need Pillow: pip install pillow.", extra="vision") from exc
    return pil


def _is_pil(value: object) -> bool:
    module = type(value).__module__
    return module.startswith("PIL.") and hasattr(value, "mode") and hasattr(value, "size")


def _is_array(value: object) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "__array__")


def _read(path: Path) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except FileNotFoundError:
        raise InvalidRequestError(f"No such image file: {path}.") from None
    except IsADirectoryError:
        raise InvalidRequestError(f"{path} is a folder, not an image file.") from None
    except OSError as exc:
        raise InvalidRequestError(f"Could not read the image {path}: {exc}.") from exc


def _decode_data_url(url: str) -> bytes:
    if not _DATA_URL.match(url):
        raise InvalidRequestError(
            f"Not a base64 image data URL (it starts {url.partition(',')[0][:40]!r}): one "
            "reads 'data:image/png;base64,<the bytes in base64>'."
        )
    payload = url.partition(",")[2]
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError(f"The data URL's base64 does not decode: {exc}.") from exc


def _open(data: bytes) -> Any:
    pil = _pil_module()
    try:
        image = pil.open(io.BytesIO(data))
        image.load()
    except pil.DecompressionBombError as exc:
        raise _too_large(exc) from exc
    except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise InvalidRequestError(
            f"These {len(data)} bytes are not an image Pillow can read ({exc})."
        ) from exc
    return image


def _from_bytes(data: bytes) -> Image:
    """Encoded bytes as an Image: kept as they are in a format every provider takes, else PNG."""
    pil = _pil_module()
    try:
        header = pil.open(io.BytesIO(data))  # reads the header only
    except pil.DecompressionBombError as exc:
        raise _too_large(exc) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidRequestError(
            f"These {len(data)} bytes are not an image Pillow can read ({exc})."
        ) from exc
    media_type = MEDIA_TYPES.get(str(header.format))
    if media_type is None:
        return _encoded(_rgb(_open(data)))
    width, height = header.size
    return Image(data, media_type, int(width), int(height))


def _too_large(exc: Exception) -> InvalidRequestError:
    """A header that claims more pixels than Pillow decodes safely (a decompression bomb, or a
    huge scan): refused like any unreadable image, not raised as Pillow's own error."""
    return InvalidRequestError(
        f"The image is too large to decode safely ({exc}): resize it before sending."
    )


def _encoded(image: Any) -> Image:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    width, height = image.size
    return Image(buffer.getvalue(), "image/png", int(width), int(height))


def _rgb(image: Any) -> PILImage:
    rgb: PILImage = image if image.mode == "RGB" else image.convert("RGB")
    return rgb


def _from_array(array: Any) -> PILImage:
    import numpy as np

    values = np.asarray(array)
    if values.dtype != np.uint8:
        raise InvalidRequestError(
            f"An image array must be uint8 (0-255), not {values.dtype}: convert it with "
            "(array * 255).clip(0, 255).astype('uint8') if it holds values in [0, 1]."
        )
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[:, :, 0]
    if not (values.ndim == 2 or (values.ndim == 3 and values.shape[2] in (3, 4))):
        raise InvalidRequestError(
            f"An image array must be HxWx3 (RGB), HxWx4 (RGBA) or HxW (grey), not shape "
            f"{tuple(values.shape)}."
        )
    if 0 in values.shape:
        raise InvalidRequestError(f"The image array is empty (shape {tuple(values.shape)}).")
    return _rgb(_pil_module().fromarray(np.ascontiguousarray(values)))
