"""Image classification in the transformers backend: a folder with a ``*ForImageClassification``
head classifies images (and only that), preprocessed by its own image processor config, with the
config's label names and softmax scores, batched without changing them, on one record per call."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from PIL import Image as PILImage  # noqa: E402

import fmgate  # noqa: E402
from fmgate._local.tiny_vision import IMAGE_LABELS  # noqa: E402

from .conftest import TinyFactory  # noqa: E402

ARCHES = ("efficientnet", "mobilenet_v2", "vit")
Ranked = list[tuple[str, float]]


def _photo(seed: int, size: tuple[int, int] = (48, 40)) -> PILImage.Image:
    """Noise with a seeded colour cast: images the random heads score differently."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    pixels[..., seed % 3] //= 2
    return PILImage.fromarray(pixels)


def _same(row: Ranked, other: Ranked) -> bool:
    """The same labels in the same order, with scores equal to float32 rounding."""
    pairs = zip(row, other, strict=True)
    return all(a == b and math.isclose(x, y, abs_tol=1e-5) for (a, x), (b, y) in pairs)


def _direct(folder: Path, image: PILImage.Image) -> dict[str, float]:
    """What a user would run without fmgate: the folder's processor, its model, a softmax."""
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    model = transformers.AutoModelForImageClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        logits = model(**processor(images=[image], return_tensors="pt")).logits
    scores = logits.softmax(-1)[0].tolist()
    return {model.config.id2label[i]: s for i, s in enumerate(scores)}


@pytest.fixture(scope="module")
def vit(tiny: TinyFactory) -> fmgate.Model:
    return fmgate.load(f"hf:{tiny('vit')}", device="cpu")


@pytest.mark.parametrize("arch", ARCHES)
def test_an_image_classifier_ranks_its_named_labels(arch: str, tiny: TinyFactory) -> None:
    m = fmgate.load(f"hf:{tiny(arch)}", device="cpu")
    assert m.backend.tasks == frozenset({"classify"}) and m.backend.classifies == "image"
    result = m.classify([_photo(1), _photo(2)], top_k=10)
    for ranked in result.results:
        assert {label for label, _ in ranked} == set(IMAGE_LABELS)
        scores = [score for _, score in ranked]
        assert scores == sorted(scores, reverse=True)  # best first
        assert math.isclose(sum(scores), 1.0, rel_tol=1e-5)  # a softmax over the classes
    assert result.labels == [ranked[0][0] for ranked in result.results]


@pytest.mark.parametrize("arch", ARCHES)
def test_scores_are_the_models_own_through_its_processor(arch: str, tiny: TinyFactory) -> None:
    image = _photo(3, (61, 47))
    got = dict(fmgate.load(f"hf:{tiny(arch)}", device="cpu").classify(image, top_k=4).results[0])
    want = _direct(tiny(arch), image)
    assert got.keys() == want.keys()
    assert all(math.isclose(got[k], want[k], abs_tol=1e-5) for k in got)


def test_preprocessing_is_read_from_the_processor_config(tiny: TinyFactory, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny("vit"), tmp_path / "vit")
    config_file = folder / "preprocessor_config.json"
    config = json.loads(config_file.read_text())
    config["image_mean"] = [0.1, 0.2, 0.3]
    config_file.write_text(json.dumps(config))
    image = _photo(4)
    own = fmgate.load(f"hf:{tiny('vit')}", device="cpu").classify(image, top_k=4).results[0]
    changed = fmgate.load(f"hf:{folder}", device="cpu").classify(image, top_k=4).results[0]
    assert not _same(own, changed)
    assert _same(changed, sorted(_direct(folder, image).items(), key=lambda p: -p[1]))


def test_a_centre_cropping_processor_ignores_what_lies_outside_the_crop(
    tiny: TinyFactory,
) -> None:
    # mobilenet_v2's processor: shortest side to 36, then the centre 32x32, as torchvision's
    # eval transform does at full size; a 36x72 image keeps only its middle 36x36 region
    m = fmgate.load(f"hf:{tiny('mobilenet_v2')}", device="cpu")
    image = np.asarray(_photo(5, (72, 36))).copy()
    edited = image.copy()
    edited[:, :10] = 255  # the left edge, cut away by the crop
    plain, changed = m.classify([image, edited], top_k=4).results
    assert _same(plain, changed)
    edited[:, 30:40] = 255  # the middle: inside the crop
    assert not _same(plain, m.classify(edited, top_k=4).results[0])


def test_a_batch_scores_each_image_as_it_would_score_alone(vit: fmgate.Model) -> None:
    images = [_photo(i, (40 + i, 30 + 2 * i)) for i in range(20)]  # 4 a pass on a CPU, 16 on GPU
    together = vit.classify(images, top_k=4).results
    for image, row in zip(images, together, strict=True):
        assert _same(row, vit.classify(image, top_k=4).results[0])


def test_paths_bytes_pil_and_arrays_classify_alike(vit: fmgate.Model, tmp_path: Path) -> None:
    image = _photo(6)
    path = tmp_path / "photo.png"
    image.save(path)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    inputs: list[Any] = [str(path), path, buffer.getvalue(), image, np.asarray(image)]
    results = vit.classify(inputs, top_k=4).results
    assert all(_same(results[0], row) for row in results)


def test_top_k_bounds_the_pairs_and_past_the_labels_gives_them_all(vit: fmgate.Model) -> None:
    images = [_photo(7), _photo(8)]
    assert [len(r) for r in vit.classify(images, top_k=1).results] == [1, 1]
    assert [len(r) for r in vit.classify(images, top_k=9).results] == [4, 4]


def test_the_record_counts_images_pixels_and_prices_the_call(vit: fmgate.Model) -> None:
    result = vit.classify([_photo(9, (48, 40)), _photo(10, (20, 10))], top_k=2)
    record = result.record
    assert (record.task, record.outcome.status, record.distribution) == ("classify", "ok", "local")
    assert record.usage.items == 2 and record.usage.images_in == 2
    assert record.usage.pixels_in == 48 * 40 + 20 * 10
    assert record.params == {"top_k": 2}
    assert record.latency.total_s is not None and record.latency.total_s > 0
    assert record.cost.basis in ("energy_measured", "energy_estimated", "hardware_time")
    assert record.cost.amount is not None and record.cost.amount > 0


def test_the_access_profile_reads_the_folder(vit: fmgate.Model, tiny: TinyFactory) -> None:
    model = transformers.AutoModelForImageClassification.from_pretrained(tiny("vit"))
    access = vit.access
    assert access.parameters == model.num_parameters()
    assert (access.license, access.dtype, access.open_weights) == ("Apache-2.0", "float32", True)
    assert access.weights_bytes == (tiny("vit") / "model.safetensors").stat().st_size
    assert access.data_leaves_machine is False and access.hardware == "cpu"


def test_a_half_precision_model_classifies_and_says_so(tiny: TinyFactory) -> None:
    m = fmgate.load(f"hf:{tiny('mobilenet_v2')}", device="cpu", dtype="bfloat16")
    full = fmgate.load(f"hf:{tiny('mobilenet_v2')}", device="cpu")
    image = _photo(11)
    half, exact = m.classify(image, top_k=4).results[0], full.classify(image, top_k=4).results[0]
    assert m.access.dtype == "bfloat16" and m.classify(image).record.access.dtype == "bfloat16"
    assert {label for label, _ in half} == set(IMAGE_LABELS)
    assert half[0][0] == exact[0][0]  # bfloat16 keeps 8 bits of mantissa: close, not equal
    assert all(math.isclose(dict(half)[k], v, abs_tol=0.1) for k, v in exact)


def test_an_image_classifier_refuses_text_and_chat(vit: fmgate.Model) -> None:
    with pytest.raises(fmgate.InvalidRequestError):
        vit.classify(["a sentence, not an image"])
    with pytest.raises(fmgate.UnsupportedTaskError):
        vit.generate("hello")
