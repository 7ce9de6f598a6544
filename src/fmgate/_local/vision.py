"""Image classification and object detection with transformers' vision heads.

Preprocessing is the model's own: its image processor (``preprocessor_config.json``: resize,
crop, rescale, normalise) turns PIL images into ``pixel_values``; without torchvision,
transformers uses its PIL processors. Classification scores are a softmax over the config's
``id2label`` classes, as transformers' ``image-classification`` pipeline computes them;
detection boxes come from the processor's own ``post_process_object_detection``, in pixels of
each input image.

:class:`Classifier` is the same forward pass for any torch image classifier (the
``efficientnet_lite`` and ``torchvision`` backends: their own preprocessing, ImageNet's class
names from :func:`imagenet_labels`), so every backend ranks and batches alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import ConfigurationError
from .._types import Box, Detection, Ranked
from .classification import label_names

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image as PILImage

    from .loading import LoadedModel

M = TypeVar("M")

__all__ = [
    "Classifier",
    "channels_last",
    "classify_batch_size",
    "classify_images",
    "detect_images",
    "imagenet_labels",
    "rank",
]

BATCH_SIZE = 16
# Images a forward pass of a classifier on a CPU. Measured on 2 cores at 224x224 (EfficientNet-
# Lite0 and MobileNetV2, ms an image at 1/2/4/8/16 a pass: 21/17/15/23/29 and 16/12/12/16/23):
# four images' activations stay in cache, sixteen's do not, and a convolutional net's batch
# norms, padding and activations are bound by memory. A GPU takes BATCH_SIZE.
CPU_BATCH_SIZE = 4
IMAGENET_CLASSES = 1000
_LABELS = "image-classifier labels"  # the key of a model's class names in LoadedModel.memo


def classify_batch_size(device: str) -> int:
    """Images a classifier's forward pass takes on ``device`` (see :data:`CPU_BATCH_SIZE`)."""
    return CPU_BATCH_SIZE if device == "cpu" else BATCH_SIZE


def classify_images(
    loaded: LoadedModel,
    images: Sequence[PILImage],
    *,
    top_k: int,
    batch_size: int | None = None,
) -> list[Ranked]:
    """Per image, its ``top_k`` labels and softmax scores, best first, in input order: the
    model's own image processor makes the pixels (as transformers' pipeline does);
    ``batch_size`` images a forward pass, by default :func:`classify_batch_size`'s."""
    processor, model = loaded.processor, loaded.model

    def pixels(chunk: list[PILImage]) -> torch.Tensor:
        values: torch.Tensor = processor(images=chunk, return_tensors="pt")["pixel_values"]
        return values

    def logits(values: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = model(pixel_values=values).logits
        return out

    labels = loaded.memo.get(_LABELS)
    if labels is None:  # once per model: 1000 names from id2label take about 1 ms to list
        labels = loaded.memo[_LABELS] = label_names(model.config)
    classifier = Classifier(logits, pixels, labels, loaded.device, loaded.dtype)
    size = batch_size or classify_batch_size(loaded.device)
    return classifier.rank_images(images, top_k=top_k, batch_size=size)


@dataclass(frozen=True, slots=True)
class Classifier:
    """An image classifier as a forward pass needs it: logits of a pixel batch, the pixels of a
    list of images (the model's own preprocessing), the class names, device and dtype."""

    logits: Callable[[torch.Tensor], torch.Tensor]
    pixels: Callable[[list[PILImage]], torch.Tensor]
    labels: Sequence[str]
    device: str
    dtype: torch.dtype

    def rank_images(
        self, images: Sequence[PILImage], *, top_k: int, batch_size: int = BATCH_SIZE
    ) -> list[Ranked]:
        """Per image, its ``top_k`` labels and softmax scores, best first, in input order;
        ``batch_size`` images per forward pass (each image is preprocessed on its own, so a
        batch scores each image as it would score alone)."""
        import torch

        ranked: list[Ranked] = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                values = self.pixels(list(images[start : start + batch_size]))
                values = values.to(self.device, self.dtype, memory_format=torch.channels_last)
                ranked.extend(rank(self.logits(values), self.labels, top_k))
        return ranked


def channels_last(module: M) -> M:
    """``module`` with its 4-D weights in channels-last order, the layout oneDNN's and cuDNN's
    fastest convolutions take. On 2 CPU cores (torch 2.13) EfficientNet-Lite0's forward pass
    alone ran 49 images/s at batch 1 instead of 26, and ``classify`` with its preprocessing
    5-24% more images/s over four runs. The pixels go in the same layout
    (:meth:`Classifier.rank_images`); the scores are the same up to float rounding."""
    import torch

    layout: Any = module
    layout.to(memory_format=torch.channels_last)
    return module


def rank(logits: torch.Tensor, labels: Sequence[str], top_k: int) -> list[Ranked]:
    """Per row of logits, the ``top_k`` classes by softmax score, best first."""
    # float32 softmax: half-precision logits would round close scores together
    best = logits.float().softmax(dim=-1).topk(min(top_k, logits.shape[-1]), dim=-1)
    return [
        [(_name(labels, j), float(v)) for v, j in zip(values, indices, strict=True)]
        for values, indices in zip(best.values.tolist(), best.indices.tolist(), strict=True)
    ]


def _name(labels: Sequence[str], index: int) -> str:
    return labels[index] if 0 <= index < len(labels) else f"LABEL_{index}"


@functools.cache
def imagenet_labels() -> tuple[str, ...]:
    """ImageNet-1k's 1000 class names by class index (WordNet's names, as transformers' and
    torchvision's ImageNet models name them: ``"tabby, tabby cat"``); see the file's header."""
    from importlib import resources

    text = resources.files("fmgate._data").joinpath("imagenet_labels.txt").read_text("utf-8")
    names = tuple(line for line in text.splitlines() if line and not line.startswith("#"))
    if len(names) != IMAGENET_CLASSES:
        raise ConfigurationError(
            f"fmgate's imagenet_labels.txt holds {len(names)} names, not {IMAGENET_CLASSES}: "
            "the installation is damaged; reinstall fmgate."
        )
    return names


def detect_images(
    loaded: LoadedModel,
    images: Sequence[PILImage],
    *,
    threshold: float,
    batch_size: int = BATCH_SIZE,
) -> list[list[Detection]]:
    """Per image, the objects scoring at least ``threshold``, best first, boxes in pixels.

    Each image is preprocessed on its own, and one forward pass takes the images of a window of
    ``batch_size`` whose preprocessed shapes are equal: padding a batch to its largest image
    would change what YOLOS sees (it has no pixel mask) and, through the backbone's borders,
    DETR's boxes too, so an image's detections would depend on the others in the call. Images
    of one size (frames of a camera, a resized set) still run as one batch.
    """
    import torch

    labels = label_names(loaded.model.config)
    found: list[list[Detection]] = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            window = list(images[start : start + batch_size])
            found.extend(_detect_window(loaded, window, threshold, labels))
    return found


def _detect_window(
    loaded: LoadedModel, images: list[PILImage], threshold: float, labels: list[str]
) -> list[list[Detection]]:
    """Detections for a window of images, one forward pass per preprocessed shape."""
    inputs = [loaded.processor(images=[image], return_tensors="pt") for image in images]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, one in enumerate(inputs):
        groups.setdefault(tuple(one["pixel_values"].shape), []).append(i)
    found: list[list[Detection]] = [[] for _ in images]
    for members in groups.values():
        rows = _forward(loaded, [inputs[i] for i in members], [images[i] for i in members])
        for i, row in zip(members, rows, strict=True):
            kept = _detections(row, labels, images[i].width, images[i].height)
            found[i] = [d for d in kept if d.score >= threshold]
    return found


def _forward(
    loaded: LoadedModel, inputs: list[Any], images: list[PILImage]
) -> list[dict[str, Any]]:
    """One batch through the model and the processor's own post-processing, which scales the
    boxes to each image's size (``target_sizes`` is height, width). Its threshold keeps scores
    strictly above it; fmgate's keeps those at least equal, so it filters afterwards."""
    import torch

    pixels = torch.cat([one["pixel_values"] for one in inputs]).to(loaded.device, loaded.dtype)
    kwargs: dict[str, Any] = {"pixel_values": pixels}
    if _takes_pixel_mask(loaded) and all("pixel_mask" in one for one in inputs):
        kwargs["pixel_mask"] = torch.cat([one["pixel_mask"] for one in inputs]).to(loaded.device)
    outputs = loaded.model(**kwargs)
    sizes = [(image.height, image.width) for image in images]
    rows: list[dict[str, Any]] = loaded.processor.post_process_object_detection(
        outputs, threshold=0.0, target_sizes=sizes
    )
    return rows


def _takes_pixel_mask(loaded: LoadedModel) -> bool:
    """Whether the model's forward names ``pixel_mask`` (DETR does; YOLOS and RT-DETR do not)."""
    known = loaded.memo.get("takes-pixel-mask")
    if known is None:
        import inspect

        known = "pixel_mask" in inspect.signature(loaded.model.forward).parameters
        loaded.memo["takes-pixel-mask"] = known
    return bool(known)


def _detections(row: dict[str, Any], labels: list[str], width: int, height: int) -> list[Detection]:
    """A post-processed row as detections, best first, boxes clipped to the image (DETR's
    centre-and-size boxes can reach past its edges); a box wholly outside it is dropped."""
    scores, ids, boxes = row["scores"].tolist(), row["labels"].tolist(), row["boxes"].tolist()
    out = []
    for score, i, values in zip(scores, ids, boxes, strict=True):
        box = _clipped(values, width, height)
        if box is not None:
            label = labels[i] if 0 <= i < len(labels) else f"LABEL_{i}"
            out.append(Detection(label, float(score), box))
    return sorted(out, key=lambda d: -d.score)


def _clipped(values: Sequence[float], width: int, height: int) -> Box | None:
    x0, y0, x1, y1 = (float(v) for v in values)
    w, h = float(width), float(height)
    x0, x1 = max(0.0, min(x0, w)), max(0.0, min(x1, w))
    y0, y1 = max(0.0, min(y0, h)), max(0.0, min(y1, h))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
