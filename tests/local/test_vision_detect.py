"""Object detection in the transformers backend: a folder with a ``*ForObjectDetection`` head
(YOLOS, DETR, RT-DETR) finds objects with boxes in pixels of each input image, through its own
image processor and ``post_process_object_detection``; threshold and order as documented; a
batch gives what one image at a time gives; one record per call counts images and pixels."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from PIL import Image as PILImage  # noqa: E402

import fmgate  # noqa: E402
from fmgate import Detection, MemorySink  # noqa: E402
from fmgate._local.tiny_vision import DETECT_LABELS  # noqa: E402

from .conftest import TinyFactory  # noqa: E402

ARCHES = ("yolos", "detr", "rt_detr")


def _noise(seed: int, size: tuple[int, int]) -> PILImage.Image:
    rng = np.random.default_rng(seed)
    return PILImage.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _smooth(seed: int, size: tuple[int, int]) -> PILImage.Image:
    """A few colour blobs blown up bicubically: resizing it again keeps its content, so a
    detector sees nearly the same pixels at any size."""
    rng = np.random.default_rng(seed)
    blobs = PILImage.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    return blobs.resize(size, PILImage.Resampling.BICUBIC)


def _same(row: list[Detection], other: list[Detection]) -> bool:
    """The same labels in the same order, scores and boxes equal to float32 rounding."""
    if len(row) != len(other):
        return False
    return all(
        a.label == b.label
        and math.isclose(a.score, b.score, abs_tol=1e-5)
        and all(math.isclose(x, y, abs_tol=1e-3) for x, y in zip(a.box, b.box, strict=True))
        for a, b in zip(row, other, strict=True)
    )


def _direct(folder: Path, image: PILImage.Image, threshold: float) -> list[Detection]:
    """What a user would run without fmgate: the folder's processor and model, the processor's
    post-processing at the image's size; boxes clipped to the image, best first."""
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    model = transformers.AutoModelForObjectDetection.from_pretrained(folder).eval()
    with torch.inference_mode():
        outputs = model(**processor(images=[image], return_tensors="pt"))
    (row,) = processor.post_process_object_detection(
        outputs, threshold=threshold, target_sizes=[(image.height, image.width)]
    )
    found = []
    for score, i, box in zip(row["scores"], row["labels"], row["boxes"].tolist(), strict=True):
        x0, x1 = (min(max(v, 0.0), image.width) for v in (box[0], box[2]))
        y0, y1 = (min(max(v, 0.0), image.height) for v in (box[1], box[3]))
        found.append(Detection(model.config.id2label[int(i)], float(score), (x0, y0, x1, y1)))
    return sorted(found, key=lambda d: -d.score)


@pytest.fixture(scope="module", params=ARCHES)
def detector(request: pytest.FixtureRequest, tiny: TinyFactory) -> tuple[fmgate.Model, Path]:
    folder = tiny(request.param)
    return fmgate.load(f"hf:{folder}", device="cpu"), folder


def test_a_detector_only_detects(detector: tuple[fmgate.Model, Path]) -> None:
    m, _ = detector
    assert m.tasks == frozenset({"detect"})
    with pytest.raises(fmgate.UnsupportedTaskError, match="its tasks are detect"):
        m.generate("hello")


def test_boxes_lie_inside_each_image_labels_named_best_first(
    detector: tuple[fmgate.Model, Path],
) -> None:
    m, _ = detector
    images = [_noise(0, (120, 80)), _noise(1, (50, 90)), _noise(2, (33, 33))]
    result = m.detect(images, threshold=0.0)
    for image, row in zip(images, result.results, strict=True):
        assert row, "a threshold of 0 keeps every query's detection"
        scores = [d.score for d in row]
        assert scores == sorted(scores, reverse=True)
        for d in row:
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
            assert d.label in DETECT_LABELS and 0.0 <= d.score <= 1.0


def test_detections_are_the_processors_own_post_processing(
    detector: tuple[fmgate.Model, Path],
) -> None:
    m, folder = detector
    for image in (_noise(3, (120, 80)), _noise(4, (40, 100))):
        assert _same(m.detect(image, threshold=0.0).results[0], _direct(folder, image, 0.0))


def test_boxes_are_in_pixels_of_the_image_as_given(detector: tuple[fmgate.Model, Path]) -> None:
    m, _ = detector
    for seed in range(3):
        small = _smooth(seed, (120, 80))
        large = small.resize((240, 160), PILImage.Resampling.BICUBIC)
        found_small, found_large = m.detect([small, large], threshold=0.0).results
        best, twice = found_small[0], found_large[0]
        assert best.label == twice.label
        # the same object, its box twice as large in the image twice as large (within 2 pixels)
        assert all(abs(2 * a - b) < 2.0 for a, b in zip(best.box, twice.box, strict=True))


def test_threshold_keeps_the_detections_scoring_at_least_it(
    detector: tuple[fmgate.Model, Path],
) -> None:
    m, _ = detector
    image = _noise(5, (96, 64))
    everything = m.detect(image, threshold=0.0).results[0]
    cut = sorted(d.score for d in everything)[len(everything) // 2]
    kept = m.detect(image, threshold=cut).results[0]
    assert 0 < len(kept) < len(everything)
    assert _same(kept, [d for d in everything if d.score >= cut])
    assert m.detect(image, threshold=1.0).results == [[]]


def test_a_batch_finds_what_one_image_at_a_time_finds(
    detector: tuple[fmgate.Model, Path],
) -> None:
    m, _ = detector
    # two shapes interleaved: each image is detected as if alone, whatever else is in the call
    sizes = [(120, 80), (50, 90), (120, 80), (64, 64), (50, 90), (120, 80)]
    images = [_noise(10 + i, size) for i, size in enumerate(sizes)]
    batch = m.detect(images, threshold=0.2).results
    alone = [m.detect(image, threshold=0.2).results[0] for image in images]
    assert all(_same(a, b) for a, b in zip(batch, alone, strict=True))
    assert asyncio.run(m.adetect(images, threshold=0.2)).results == batch


def test_a_window_smaller_than_the_call_gives_the_same_detections(tiny: TinyFactory) -> None:
    from fmgate._local.vision import detect_images

    m = fmgate.load(f"hf:{tiny('detr')}", device="cpu")
    loaded = m.backend.loaded  # type: ignore[attr-defined]
    images = [_noise(20 + i, (60 + 10 * (i % 2), 50)) for i in range(5)]
    whole = detect_images(loaded, images, threshold=0.0)
    windows = detect_images(loaded, images, threshold=0.0, batch_size=2)
    assert all(_same(a, b) for a, b in zip(whole, windows, strict=True))


def test_one_record_per_call_counts_images_and_pixels_and_prices_them(
    tiny: TinyFactory,
) -> None:
    sink = MemorySink()
    m = fmgate.load(f"hf:{tiny('yolos')}", device="cpu", sinks=[sink])
    m.detect([_noise(0, (120, 80)), _noise(1, (50, 90))], threshold=0.3)
    (rec,) = sink.records
    assert (rec.task, rec.operation, rec.params) == ("detect", "detect", {"threshold": 0.3})
    assert (rec.usage.items, rec.usage.images_in, rec.usage.pixels_in) == (2, 2, 120 * 80 + 50 * 90)
    assert rec.distribution == "local" and rec.outcome.status == "ok"
    assert rec.cost.basis != "unknown" and rec.cost.amount is not None and rec.cost.amount > 0


def test_refusals_name_what_to_do(tiny: TinyFactory) -> None:
    sink = MemorySink()
    text = fmgate.load(f"hf:{tiny('bert-classifier')}", device="cpu", sinks=[sink])
    with pytest.raises(fmgate.UnsupportedTaskError, match="cannot detect objects.*classify"):
        text.detect(_noise(0, (8, 8)))
    m = fmgate.load(f"hf:{tiny('detr')}", device="cpu", sinks=[sink])
    with pytest.raises(fmgate.InvalidRequestError, match=r"threshold must lie in \[0, 1\]"):
        m.detect(_noise(0, (8, 8)), threshold=-0.1)
    with pytest.raises(fmgate.InvalidRequestError):
        m.detect("not an image, nor a file")
    assert [(r.task, r.outcome.status, r.outcome.sent) for r in sink.records] == [
        ("detect", "error", False)
    ] * 3
