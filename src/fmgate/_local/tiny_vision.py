"""Tiny random-weight image classifiers and object detectors for tests.

Each is a transformers vision head of a real architecture, with seeded random weights and its
own image processor config (``preprocessor_config.json``), saved with ``save_pretrained`` so the
folder loads with ``AutoModelFor*`` and ``AutoImageProcessor`` exactly like a Hub download. The
processors are transformers' PIL ones (no torchvision), and each classifier's preprocessing
differs from the others' (size, crop, mean, std), so a test can tell that the model's own
processor config was read. Nothing touches the network; the same architecture gives
byte-identical files each time (with the same torch and transformers versions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tiny_text import _no_progress_bars

__all__ = ["ARCHES", "DETECT_LABELS", "IMAGE_LABELS", "make"]

_SEED = 1234


# -- image classifiers ----------------------------------------------------------------------------

# The classes of every tiny image classifier's head: named, so tests can assert label names.
IMAGE_LABELS = ("cat", "dog", "espresso", "teapot")


@dataclass(frozen=True, slots=True)
class _Classifier:
    model_type: str
    config: dict[str, Any]
    processor: str  # the PIL image processor class, as transformers names it without "Pil"
    preprocess: dict[str, Any] = field(default_factory=dict)


# Inputs are 32x32 after preprocessing: a forward pass takes a millisecond or two on a CPU.
_CLASSIFIERS: dict[str, _Classifier] = {
    "efficientnet": _Classifier(
        "efficientnet",
        dict(
            image_size=32,
            width_coefficient=0.25,
            depth_coefficient=0.5,
            hidden_dim=320,  # round_filters(1280): the head conv's width
            dropout_rate=0.0,
            drop_connect_rate=0.0,
            initializer_range=0.2,
        ),
        "EfficientNetImageProcessor",
        # EfficientNet's own processor: resize to a square, [0, 1] then ImageNet mean/std
        dict(size={"height": 32, "width": 32}, do_center_crop=False),
    ),
    "mobilenet_v2": _Classifier(
        "mobilenet_v2",
        dict(
            image_size=32,
            depth_multiplier=0.25,
            finegrained_output=False,
            tf_padding=False,
            initializer_range=0.1,
        ),
        "MobileNetV2ImageProcessor",
        # torchvision's eval transform, scaled down: shortest side 36, centre crop 32
        dict(
            size={"shortest_edge": 36},
            crop_size={"height": 32, "width": 32},
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        ),
    ),
    "vit": _Classifier(
        "vit",
        dict(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            initializer_range=0.2,
        ),
        "ViTImageProcessor",
        dict(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3),
    ),
}

# -- object detectors -----------------------------------------------------------------------------

# The classes of every tiny detector's head.
DETECT_LABELS = ("cat", "dog", "cup")


@dataclass(frozen=True, slots=True)
class _Detector:
    model_type: str
    config: dict[str, Any]
    backbone: tuple[str, dict[str, Any]] | None  # a transformers backbone: model type, config
    processor: str  # the PIL image processor class, as transformers names it without "Pil"
    preprocess: dict[str, Any]


# Small ResNets as transformers' own backbones: DETR's default is a timm ResNet-50, and RT-DETR
# would fetch pretrained backbone weights; neither may happen here.
_DETECTORS: dict[str, _Detector] = {
    "yolos": _Detector(
        "yolos",
        dict(
            image_size=[64, 96],
            patch_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_detection_tokens=10,
        ),
        None,
        "YolosImageProcessor",
        # shortest side 64, longest at most 96, padded to the batch's largest (no mask: YOLOS
        # sees the padding, so fmgate batches images of one shape together)
        dict(size={"shortest_edge": 64, "longest_edge": 96}),
    ),
    "detr": _Detector(
        "detr",
        dict(
            use_timm_backbone=False,
            use_pretrained_backbone=False,
            backbone=None,
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            num_queries=10,
        ),
        (
            "resnet",
            dict(
                embedding_size=8,
                hidden_sizes=[8, 16],
                depths=[1, 1],
                layer_type="basic",
                out_features=["stage2"],
            ),
        ),
        "DetrImageProcessor",
        dict(size={"shortest_edge": 64, "longest_edge": 96}),
    ),
    "rt_detr": _Detector(
        "rt_detr",
        dict(
            use_timm_backbone=False,
            use_pretrained_backbone=False,
            backbone=None,
            encoder_hidden_dim=16,
            encoder_in_channels=[16, 24, 32],
            feat_strides=[8, 16, 32],
            encoder_layers=1,
            encoder_ffn_dim=32,
            encoder_attention_heads=2,
            d_model=16,
            num_queries=10,
            decoder_in_channels=[16, 16, 16],
            decoder_ffn_dim=32,
            num_feature_levels=3,
            decoder_n_points=2,
            decoder_layers=1,
            decoder_attention_heads=2,
            num_denoising=0,
            anchor_image_size=None,  # anchors from each input's own feature maps
        ),
        (
            "rt_detr_resnet",
            dict(
                embedding_size=8,
                hidden_sizes=[8, 16, 24, 32],
                depths=[1, 1, 1, 1],
                layer_type="basic",
                out_features=["stage2", "stage3", "stage4"],
            ),
        ),
        "RTDetrImageProcessor",
        # RT-DETR's own: a fixed square, [0, 1] without mean/std
        dict(size={"height": 64, "width": 64}),
    ),
}
# The default init of a model this small gives every query nearly the same box and a score near
# 0.25: weights redrawn wider give boxes and scores that differ, which tests can sort and filter.
_DETECTOR_WEIGHT_STD = 0.2


def _make_detector(arch: str, spec: _Detector, path: Path) -> Path:
    import torch
    import transformers

    tf: Any = transformers
    labels = dict(enumerate(DETECT_LABELS))
    extra: dict[str, Any] = {}
    if spec.backbone is not None:
        extra["backbone_config"] = tf.AutoConfig.for_model(spec.backbone[0], **spec.backbone[1])
    config = tf.AutoConfig.for_model(
        spec.model_type,
        **spec.config,
        **extra,
        id2label=labels,
        label2id={name: i for i, name in labels.items()},
    )
    # fork_rng: seeding must not disturb the caller's own random state
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(_SEED)
        model = tf.AutoModelForObjectDetection.from_config(config).eval()
        for weight in model.parameters():
            if weight.dim() >= 2:
                weight.normal_(0.0, _DETECTOR_WEIGHT_STD)
    path.mkdir(parents=True, exist_ok=True)
    with _no_progress_bars():
        model.save_pretrained(path)
    processor: Any = getattr(tf, f"{spec.processor}Pil")
    processor(**spec.preprocess).save_pretrained(path)
    (path / "README.md").write_text(
        _model_card(arch, "object-detection", DETECT_LABELS, ", boxes and scores"), encoding="utf-8"
    )
    return path


ARCHES: tuple[str, ...] = (*_CLASSIFIERS, *_DETECTORS)


def make(arch: str, path: Path) -> Path:
    """Build the tiny ``arch`` model into ``path`` and return the folder."""
    if arch in _DETECTORS:
        return _make_detector(arch, _DETECTORS[arch], path)
    spec = _CLASSIFIERS.get(arch)
    if spec is None:
        raise NotImplementedError(arch)
    return _make_classifier(arch, spec, path)


def _make_classifier(arch: str, spec: _Classifier, path: Path) -> Path:
    import torch
    import transformers

    tf: Any = transformers
    labels = dict(enumerate(IMAGE_LABELS))
    config = tf.AutoConfig.for_model(
        spec.model_type,
        **spec.config,
        id2label=labels,
        label2id={name: i for i, name in labels.items()},
    )
    # fork_rng: seeding must not disturb the caller's own random state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = tf.AutoModelForImageClassification.from_config(config)
        _calibrate(model, config.image_size)
    path.mkdir(parents=True, exist_ok=True)
    with _no_progress_bars():
        model.save_pretrained(path)
    _processor(spec).save_pretrained(path)
    (path / "README.md").write_text(
        _model_card(arch, "image-classification", IMAGE_LABELS, " and their scores"),
        encoding="utf-8",
    )
    return path


def _calibrate(model: Any, size: int) -> None:
    """Batch norm statistics measured on one seeded batch, as training would leave them.

    Fresh batch norms hold mean 0 and variance 1 whatever their inputs, and through a deep
    convolutional stack the signal then fades to nothing: every image would score the same.
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the batch
    if norms:
        model.train()
        with torch.no_grad():
            model(pixel_values=torch.randn(16, 3, size, size))
    model.eval()


def _processor(spec: _Classifier) -> Any:
    """The architecture's PIL image processor (transformers' torchvision-free one); it saves
    under the architecture's plain processor name, as a Hub model's config names it."""
    import transformers

    cls: Any = getattr(transformers, f"{spec.processor}Pil")
    return cls(**spec.preprocess)


def _model_card(arch: str, pipeline: str, classes: Sequence[str], outputs: str) -> str:
    return (
        "---\n"
        "license: apache-2.0\n"
        "library_name: transformers\n"
        f"pipeline_tag: {pipeline}\n"
        "tags:\n- fmgate-tiny\n- random-weights\n"
        "---\n\n"
        f"# tiny-{arch}\n\n"
        "The weights are random: made by `fmgate.testing.make_tiny_model` for tests and examples.\n"
        f"Its {len(classes)} classes ({', '.join(classes)}){outputs} are "
        "meaningless; its shapes, image processor and files are those of a real model.\n"
    )
