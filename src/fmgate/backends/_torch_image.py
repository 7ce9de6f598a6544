"""A backend for an image classifier that is a plain torch module (not a transformers folder).

The ``efficientnet_lite`` and ``torchvision`` backends differ only in how they build the module
and its preprocessing; this base class does the rest the same way for both: the ``device`` and
``dtype`` settings (as the transformers backend reads them), ``batch_size`` images a forward
pass (4 on a CPU, 16 on a GPU: see :data:`fmgate._local.vision.CPU_BATCH_SIZE`), softmax
scores (:class:`fmgate._local.vision.Classifier`), the access profile and the energy meter. The
only task is ``classify``, on images.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .._errors import ConfigurationError
from .._local.energy import SETTINGS as COST_SETTINGS
from .._local.loading import dtype_name, hardware_name, peak_memory_bytes, pick_device, pick_dtype
from .._local.vision import Classifier, channels_last, classify_batch_size
from .._record import Access, Usage
from .._types import ClassifyResult
from ._base import BackendConfig
from ._in_process import InProcessBackend

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image as PILImage

__all__ = ["Built", "TorchImageBackend"]


@dataclass(frozen=True, slots=True)
class Built:
    """What a subclass builds: the module with its weights (on the CPU, float32), the pixels
    of a list of images, the class names, the weights file and the model's name."""

    module: torch.nn.Module
    pixels: Callable[[list[PILImage]], torch.Tensor]
    labels: Sequence[str]
    weights: Path | None
    name: str


class TorchImageBackend(InProcessBackend):
    """An image classifier as a torch module in this process."""

    settings: ClassVar[dict[str, tuple[type, ...]]] = {
        "device": (str,),
        "dtype": (str,),
        "batch_size": (int,),
        "license": (str,),
        **COST_SETTINGS,
    }
    # the licence the weights carry where the user's settings do not say
    default_license: ClassVar[str | None] = None

    def __init__(self, config: BackendConfig) -> None:
        options = config.options
        super().__init__(config, {"classify"}, pick_device(str(options.get("device", "auto"))))
        self._dtype = pick_dtype(str(options.get("dtype", "auto")), self._device)
        self._batch = _batch_size(options.get("batch_size", classify_batch_size(self._device)))
        built = self.build()
        module = channels_last(built.module.to(self._device, self._dtype).eval())
        self._built = built
        self._parameters = sum(p.numel() for p in module.parameters())
        self._classifier = Classifier(module, built.pixels, built.labels, self._device, self._dtype)
        self._lock = threading.Lock()  # one forward pass at a time: each call's energy its own

    @abstractmethod
    def build(self) -> Built:
        """The module, its preprocessing and class names, for ``self.config.model``."""

    @property
    def classifies(self) -> Literal["text", "image"]:
        return "image"

    def access(self) -> Access:
        weights = self._built.weights
        return self.local_access(
            license=self.config.options.get("license", self.default_license),
            parameters=self._parameters,
            dtype=dtype_name(self._dtype),
            weights_bytes=weights.stat().st_size if weights is not None else None,
            hardware=hardware_name(self._device),
        )

    def peak_memory_bytes(self) -> int | None:
        return peak_memory_bytes(self._device)

    def classify_images(self, images: Sequence[PILImage], *, top_k: int) -> ClassifyResult:
        """Per image, the ``top_k`` classes with their softmax scores, best first."""
        with self._lock:
            ranked = self._classifier.rank_images(images, top_k=top_k, batch_size=self._batch)
        return ClassifyResult(ranked, Usage(), self._built.name)


def _batch_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"batch_size must be a positive int, not {value!r}.")
    return value


def load_state_dict(path: Path) -> dict[str, Any]:
    """A ``.pth`` file's tensors, read without running any code it holds (``weights_only``)."""
    import pickle

    import torch

    if not path.is_file():
        raise ConfigurationError(f"No such weights file: {path.resolve()}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError) as exc:
        raise ConfigurationError(f"{path} is not a torch state dict that loads ({exc}).") from exc
    if not isinstance(state, dict):
        raise ConfigurationError(f"{path} holds a {type(state).__name__}, not a state dict.")
    return state
