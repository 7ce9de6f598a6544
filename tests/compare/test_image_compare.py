"""Comparing on images end to end: tiny local classifiers and detectors, a zero-shot API model that
reads images, records per call, scores per image, and the report's Images table."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import ClassVar

import pytest

import fmgate
from fmgate._compare import load_images, planned_calls, run_compare
from fmgate._compare.scorers import get_scorer
from fmgate._record import CallRecord, Usage
from fmgate._report import summarize, write_report
from fmgate._tags import WARMUP
from fmgate._types import ChatRequest, Completion
from fmgate.backends._base import BackendConfig
from tests.fakes import FakeBackend, FakeClassifierBackend, fake_config

pytest.importorskip("transformers")


def png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five images in a subfolder per label (the tiny classifiers' labels: cat, espresso)."""
    root = tmp_path_factory.mktemp("photos")
    for i, colour in enumerate([(200, 120, 40), (180, 100, 30), (90, 60, 20)]):
        png(root / "cat" / f"{i}.png", colour)
    for i, colour in enumerate([(60, 30, 10), (240, 240, 230)]):
        png(root / "espresso|cup" / f"{i}.png", colour)
    return root


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three images with boxes in a CSV: four objects."""
    root = tmp_path_factory.mktemp("scenes")
    for name in ("a", "b", "c"):
        png(root / f"{name}.png", (120, 90, 60), size=(64, 48))
    rows = "a.png,cup,0,0,32,24\na.png,cat,30,20,64,48\nb.png,cat,0,0,64,48\nc.png,dog,8,8,40,40\n"
    (root / "boxes.csv").write_text("path,label,x0,y0,x1,y1\n" + rows)
    return root / "boxes.csv"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from fmgate.testing import make_tiny_model

    root = tmp_path_factory.mktemp("tiny-vision")
    return {arch: str(make_tiny_model(arch, root / arch)) for arch in ("efficientnet", "yolos")}


def local(path: str, alias: str) -> fmgate.Model:
    return fmgate.Model(fmgate.load(f"transformers:{path}").backend, alias=alias)


class SeeingBackend(FakeBackend):
    """An API chat model that reads images: it answers every zero-shot label question with
    ``espresso``, and finds one cup in the top-left quarter of every image."""

    features: ClassVar[frozenset[str]] = frozenset({"images", "output"})

    def _reply(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        if request.output is not None:
            found = {"objects": [{"label": "cup", "x0": 0, "y0": 0, "x1": 32, "y1": 24}]}
            text = json.dumps(found)
        else:
            text = "espresso"
        return Completion(text, "stop", Usage(100, 3, source="provider"), "seeing-1")


def seeing(alias: str = "vision-api") -> fmgate.Model:
    provider = dataclasses.replace(FakeBackend.provider_info, distribution="api")
    config = BackendConfig(name="fake", model=alias, provider=provider)
    return fmgate.Model(SeeingBackend(config), alias=alias)


def measured(records: list[CallRecord], alias: str) -> list[CallRecord]:
    return [r for r in records if r.alias == alias and WARMUP not in r.tags]


def test_classifiers_batch_locally_and_an_api_model_sees_one_image_per_call(
    photos: Path, tiny: dict[str, str], tmp_path: Path
) -> None:
    items = load_images(photos)
    classifier = local(tiny["efficientnet"], "effnet")
    api = seeing()
    store = fmgate.SqliteStore(tmp_path / "s.sqlite3")
    run = run_compare([classifier, api], items, repeat=2, scorer=get_scorer("top1"), store=store)
    assert run.errors == 0
    assert planned_calls([classifier], items, repeat=2) == 1 + 2  # warm-up, then one batch a pass
    assert planned_calls([api], items, repeat=2) == 1 + 2 * 5
    calls = measured(run.records, "effnet")
    assert [r.usage.items for r in calls] == [5, 5] and {r.task for r in calls} == {"classify"}
    assert all(r.usage.images_in == 5 and r.params["top_k"] == 5 for r in calls)
    api_calls = measured(run.records, "vision-api")
    assert len(api_calls) == 10 and all(r.usage.images_in == 1 for r in api_calls)
    # the API model was offered the set's labels, first alternatives only, sorted
    assert api_calls[0].params["labels"] == ["cat", "espresso"]
    rows = {s.label: s for s in summarize(run.records, run.scores)}
    assert rows["vision-api"].top1 == rows["vision-api"].top5 == pytest.approx(2 / 5)
    assert rows["vision-api"].images == 10 and rows["vision-api"].images_graded == 10
    effnet = rows["effnet"]
    assert effnet.top5 == 1.0  # two labels in all: both are always among the five best
    assert effnet.images == 10 and effnet.images_per_s is not None and effnet.images_per_s > 0
    latencies = sorted(r.latency.total_s or 0 for r in calls)
    assert effnet.latency_per_image_p50_s == pytest.approx(sum(latencies) / 2 / 5)
    amounts = [r.cost.amount for r in calls]
    if all(a is not None for a in amounts):
        assert effnet.cost_per_image == pytest.approx(sum(a for a in amounts if a) / 10)
    # the scores went to the store with their rows: a later report recomputes the same
    stored = store.scores([r.id for r in run.records])
    again = {s.label: s for s in summarize(run.records, stored)}
    assert again["effnet"].top1 == effnet.top1


def test_detectors_and_zero_shot_detection_are_graded_by_recall(
    scenes: Path, tiny: dict[str, str], tmp_path: Path
) -> None:
    items = load_images(scenes)
    detector = local(tiny["yolos"], "yolos")
    api = seeing()
    store = fmgate.SqliteStore(tmp_path / "s.sqlite3")
    run = run_compare([detector, api], items, scorer=get_scorer("recall@0.5"), store=store)
    assert run.errors == 0
    assert [r.task for r in measured(run.records, "yolos")] == ["detect"]
    api_calls = measured(run.records, "vision-api")
    assert len(api_calls) == 3 and api_calls[0].params["labels"] == ["cat", "cup", "dog"]
    rows = {s.label: s for s in summarize(run.records, run.scores)}
    # the fake finds a cup at (0, 0, 32, 24) in each image: only a.png has one there
    assert rows["vision-api"].recall == pytest.approx(1 / 4)
    assert rows["vision-api"].precision == pytest.approx(1 / 3)
    assert rows["vision-api"].boxes == 4 and rows["vision-api"].images_graded == 3
    assert rows["yolos"].recall is not None  # random weights: graded, whatever it found


def test_a_model_that_cannot_see_is_refused_before_any_call(photos: Path) -> None:
    text_classifier = fmgate.Model(FakeClassifierBackend(fake_config("ft")), alias="ft")
    with pytest.raises(fmgate.InvalidRequestError, match="ft cannot classify images"):
        run_compare([text_classifier], load_images(photos), scorer=get_scorer("top1"), store=None)
    blind = fmgate.Model(FakeBackend(fake_config("blind")), alias="blind")
    with pytest.raises(fmgate.InvalidRequestError, match="blind cannot classify images"):
        run_compare([blind], load_images(photos), store=None)


def test_the_report_shows_an_images_table_in_every_format(
    photos: Path, scenes: Path, tiny: dict[str, str], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    effnet = local(tiny["efficientnet"], "effnet")
    api = seeing()
    runs = [
        run_compare([effnet, api], load_images(photos), scorer=get_scorer("top5"), store=None),
        run_compare([api], load_images(scenes), scorer=get_scorer("recall@0.5"), store=None),
    ]
    records = [r for run in runs for r in run.records]
    scores = [s for run in runs for s in run.scores]
    written = write_report(tmp_path / "out", records, scores, title="images")
    md = written["md"].read_text()
    assert "## Images" in md and "| model | calls | images | graded | top-1 | top-5 |" in md
    # the API model classified and detected: two rows, the image task named in each
    assert "| vision-api · classify images |" in md and "| vision-api · detect |" in md
    html = written["html"].read_text()
    assert "<h2>Images</h2>" in html and "Image classification models" in html
    assert "Object detection models" in html
    # a local call holds a batch, an API call one image: image plots are per image
    assert "Cost per 1,000 images against median latency per image" in html
    with written["csv"].open() as f:
        summary = {row["label"]: row for row in csv.DictReader(f)}
    detect = summary["vision-api · detect"]
    assert float(detect["recall"]) == pytest.approx(1 / 4) and detect["top1"] == ""
    assert summary["effnet"]["images"] == "5" and summary["effnet"]["cost_per_1k_images"]


def test_fmgate_compare_takes_an_image_folder(
    photos: Path,
    tiny: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fmgate.cli import main

    monkeypatch.setenv("FMGATE_STORE", str(tmp_path / "store.sqlite3"))
    monkeypatch.setenv("COLUMNS", "200")
    spec = f"transformers:{tiny['efficientnet']}"
    args = ["compare", "-m", spec, "--prompts", str(photos), "--scorer", "top-5"]
    assert main([*args, "--out", str(tmp_path / "out"), "--format", "md,csv"]) == 0
    out = capsys.readouterr().out
    assert "Images" in out and "top-5" in out
    assert "## Images" in (tmp_path / "out" / "report.md").read_text()
    # a text scorer on an image set is refused before any model loads (exit 2)
    assert main(["compare", "-m", spec, "--prompts", str(photos), "--scorer", "exact"]) == 2
    assert "grade it with top1 or top5, not exact" in capsys.readouterr().err
