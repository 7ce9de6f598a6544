"""Image classification and object detection with transformers' vision heads.

Preprocessing is the model's own: its image processor (``preprocessor_config.json``: resize,
crop, rescale, normalise) turns PIL images into ``pixel_values``; without torchvision,
transformers uses its PIL processors. Classification scores are a softmax over the config's
``id2label`` classes, as transformers' ``image-classification`` pipeline computes them;
detection boxes come from the processor's own ``post_process_object_detection``, in pixels of
each input image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._types import Detection, Ranked
from .classification import label_names

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from .loading import LoadedModel

__all__ = ["classify_images", "detect_images"]

BATCH_SIZE = 16


def classify_images(
    loaded: LoadedModel, images: Sequence[PILImage], *, top_k: int, batch_size: int = BATCH_SIZE
) -> list[Ranked]:
    """Per image, its ``top_k`` labels and softmax scores, best first, in input order."""
    import torch

    labels = label_names(loaded.model.config)
    ranked: list[Ranked] = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = list(images[start : start + batch_size])
            pixels = loaded.processor(images=chunk, return_tensors="pt")["pixel_values"]
            logits = loaded.model(pixel_values=pixels.to(loaded.device, loaded.dtype)).logits
            best = logits.float().softmax(dim=-1).topk(min(top_k, logits.shape[-1]), dim=-1)
            for values, indices in zip(best.values.tolist(), best.indices.tolist(), strict=True):
                ranked.append([(labels[j], float(v)) for v, j in zip(values, indices, strict=True)])
    return ranked


def detect_images(
    loaded: LoadedModel,
    images: Sequence[PILImage],
    *,
    threshold: float,
    batch_size: int = BATCH_SIZE,
) -> list[list[Detection]]:
    """Per image, the objects scoring at least ``threshold``, best first, boxes in pixels."""
    import torch

    labels = label_names(loaded.model.config)
    found: list[list[Detection]] = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = list(images[start : start + batch_size])
            inputs = loaded.processor(images=chunk, return_tensors="pt")
            pixels = inputs["pixel_values"].to(loaded.device, loaded.dtype)
            extra = {k: v.to(loaded.device) for k, v in inputs.items() if k == "pixel_mask"}
            outputs = loaded.model(pixel_values=pixels, **extra)
            sizes = [(image.height, image.width) for image in chunk]
            processed = loaded.processor.post_process_object_detection(
                outputs, threshold=threshold, target_sizes=sizes
            )
            found.extend(_detections(row, labels) for row in processed)
    return found


def _detections(row: dict[str, Any], labels: list[str]) -> list[Detection]:
    scores, ids, boxes = row["scores"].tolist(), row["labels"].tolist(), row["boxes"].tolist()
    out = [
        Detection(labels[i] if 0 <= i < len(labels) else f"LABEL_{i}", float(s), _box(b))
        for s, i, b in zip(scores, ids, boxes, strict=True)
    ]
    return sorted(out, key=lambda d: -d.score)


def _box(values: Sequence[float]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in values)
    return (x0, y0, x1, y1)
