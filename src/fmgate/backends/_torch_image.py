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
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .._errors import ConfigurationError
from .._local.energy import SETTINGS as COST_SETTINGS
from .._local.energy import CostSettings, make_meter
from .._local.loading import dtype_name, hardware_name, peak_memory_bytes, pick_device, pick_dtype
from .._local.vision import Classifier, channels_last, classify_batch_size
from .._record import Access, Task, Usage
from .._types import ChatRequest, ClassifyResult, Completion, Delta
from ._base import Backend, BackendConfig, Meter

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


class TorchImageBackend(Backend):
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
        super().__init__(config)
        options = config.options
        self._cost = CostSettings.from_options(options)
        self._device = pick_device(str(options.get("device", "auto")))
        self._dtype = pick_dtype(str(options.get("dtype", "auto")), self._device)
        self._batch = _batch_size(options.get("batch_size", classify_batch_size(self._device)))
        built = self.build()
        module = channels_last(built.module.to(self._device, self._dtype).eval())
        self._built = built
        self._parameters = sum(p.numel() for p in module.parameters())
        self._classifier = Classifier(module, built.pixels, built.labels, self._device, self._dtype)
        self._lock = threading.Lock()  # one forward pass at a time: each call's energy its own
        self._tasks: frozenset[Task] = frozenset({"classify"})

    @abstractmethod
    def build(self) -> Built:
        """The module, its preprocessing and class names, for ``self.config.model``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.config.name}:{self.model}>"

    @property
    def tasks(self) -> frozenset[Task]:
        return self._tasks

    @property
    def classifies(self) -> Literal["text", "image"]:
        return "image"

    @property
    def endpoint(self) -> str:
        return "in-process"

    def access(self) -> Access:
        weights = self._built.weights
        return Access(
            open_weights=True,  # the weights are a file on this machine
            license=self.config.options.get("license", self.default_license),
            parameters=self._parameters,
            dtype=dtype_name(self._dtype),
            weights_bytes=weights.stat().st_size if weights is not None else None,
            peak_memory_bytes=peak_memory_bytes(self._device),
            data_leaves_machine=False,
            requires_network=False,
            requires_api_key=False,
            offline_capable=True,
            hardware=hardware_name(self._device),
        )

    def start_meter(self) -> Meter:
        return make_meter(self._device, self._cost)

    def classify_images(self, images: Sequence[PILImage], *, top_k: int) -> ClassifyResult:
        """Per image, the ``top_k`` classes with their softmax scores, best first."""
        with self._lock:
            ranked = self._classifier.rank_images(images, top_k=top_k, batch_size=self._batch)
        return ClassifyResult(ranked, Usage(), self._built.name)

    # image classifiers do not chat: Model refuses these before calling them
    def complete(self, request: ChatRequest) -> Completion:
        raise self.unsupported("chat")

    async def acomplete(self, request: ChatRequest) -> Completion:
        raise self.unsupported("chat")

    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        raise self.unsupported("chat")

    def astream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        raise self.unsupported("chat")


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
