"""The torchvision and timm backends (``torchvision:``, ``timm:``): their ImageNet classifiers,
for machines where torchvision works beside torch.

    m = load("torchvision:mobilenet_v2")            # weights from torch's hub cache
    m = load("torchvision:squeezenet1_1", file="weights/squeezenet1_1-b8a52dc0.pth")
    m = load("timm:efficientnet_b0", file="weights/efficientnet_b0.safetensors")
    m.classify("cat.jpg", top_k=3)

The model is torchvision's builder of that name (``torchvision.models.get_model``) or
``timm.create_model``; its preprocessing is its weights' own: torchvision's
``weights.transforms()`` (for mobilenet_v2: shortest side 256, centre 224, ImageNet's mean and
std), timm's ``resolve_data_config`` and ``create_transform``. Weights come from the ``file``
setting, else for torchvision from torch's hub cache (``torch.hub.get_dir()/checkpoints``, where
``weights.get_state_dict()`` keeps them; fmgate does not download them), for timm from the
Hugging Face Hub through its cache, as transformers models do (``HF_HUB_OFFLINE=1``: the cache
only). ImageNet-1k's classes are named as WordNet names them, as the
other backends name them. Settings: ``file``, ``weights`` (a torchvision weights name, default
``DEFAULT``), ``device``, ``dtype``, ``batch_size``, ``license`` and the cost settings.

Where pip's torchvision wheel is CUDA-linked beside a CPU-only torch (``operator torchvision::nms
does not exist``), torchvision cannot load at all, and timm needs it: install the build that
matches torch from PyTorch's own index (``--index-url https://download.pytorch.org/whl/cpu``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .._errors import ConfigurationError, MissingExtraError
from .._local.vision import IMAGENET_CLASSES, imagenet_labels
from ._torch_image import Built, TorchImageBackend, load_state_dict

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image as PILImage

__all__ = ["TorchvisionBackend", "import_torchvision"]

INSTALL = (
    "install the torchvision build that matches your torch (CPU: pip install torchvision "
    "--index-url https://download.pytorch.org/whl/cpu)"
)


class TorchvisionBackend(TorchImageBackend):
    """A torchvision (``torchvision:``) or timm (``timm:``) image classifier."""

    wire = "torchvision"
    library = "torchvision"
    settings: ClassVar[dict[str, tuple[type, ...]]] = {
        **TorchImageBackend.settings,
        "file": (str,),
        "weights": (str,),
    }

    def build(self) -> Built:
        file = self.config.options.get("file")
        path = Path(file).expanduser() if file is not None else None
        if self.config.name == "timm":
            return _timm(self.config.model, path)
        return _torchvision(
            self.config.model, path, str(self.config.options.get("weights", "DEFAULT"))
        )


def import_torchvision(name: str = "torchvision") -> Any:
    """``torchvision`` (or ``timm``), or a MissingExtraError saying why it cannot load here."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingExtraError(
            f"The {name} backend needs {name}, which is not installed: {INSTALL}"
            f"{' and pip install timm' if name == 'timm' else ''}.",
            extra="local",
        ) from exc
    except RuntimeError as exc:  # a CUDA-linked wheel beside a CPU torch: its operators fail
        raise MissingExtraError(
            f"{name} is installed but cannot load beside this torch ({exc}): {INSTALL}.",
            extra="local",
        ) from exc


def _torchvision(name: str, path: Path | None, weights_name: str) -> Built:
    tv = import_torchvision()
    try:
        weights = tv.models.get_model_weights(name)[weights_name]  # DEFAULT is a member too
    except (ValueError, KeyError) as exc:
        raise ConfigurationError(f"torchvision:{name}: no such model or weights ({exc}).") from exc
    path = path or _hub_file(weights.url)
    module = tv.models.get_model(name, weights=None, num_classes=len(weights.meta["categories"]))
    try:
        module.load_state_dict(load_state_dict(path))
    except RuntimeError as exc:  # missing or misshapen tensors
        raise ConfigurationError(
            f"{path} does not hold torchvision:{name}'s weights ({exc})."
        ) from exc
    transform = weights.transforms()
    return Built(module, _stacked(transform), _labels(weights.meta["categories"]), path, name)


def _hub_file(url: str) -> Path:
    """The file torchvision keeps in torch's hub cache for ``url``; never downloaded here."""
    import torch

    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rpartition("/")[2]
    if not path.is_file():
        raise ConfigurationError(
            f"{path.name} is not in torch's hub cache ({path.parent}) and fmgate does not "
            f"download weights: fetch it once ({url}) or pass file='<path to the .pth>'."
        )
    return path


def _timm(name: str, path: Path | None) -> Built:
    import_torchvision()  # timm's transforms are torchvision's
    timm = import_torchvision("timm")
    overlay = {"file": str(path)} if path is not None else None
    try:
        module = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ConfigurationError(
            f"timm:{name} did not load ({exc}): pass file='<weights file>', or put its weights "
            "in the Hugging Face cache once."
        ) from exc
    config = timm.data.resolve_data_config({}, model=module)
    labels = [f"LABEL_{i}" for i in range(module.num_classes)]
    return Built(
        module, _stacked(timm.data.create_transform(**config)), _labels(labels), path, name
    )


def _labels(categories: list[str]) -> list[str]:
    """ImageNet's WordNet names for a 1000-class head (torchvision's own are shortened)."""
    return list(imagenet_labels()) if len(categories) == IMAGENET_CLASSES else list(categories)


def _stacked(transform: Any) -> Any:
    """The batch of a list of images, each through the model's own transform."""

    def pixels(images: list[PILImage]) -> torch.Tensor:
        import torch

        return torch.stack([transform(image.convert("RGB")) for image in images])

    return pixels
