"""Image sets: folders, CSV files, the bundled sets; each mistake named with its file and line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fmgate import InvalidRequestError, MissingExtraError
from fmgate._compare import (
    ImageItem,
    TruthBox,
    bundled_image_sets,
    check_scorer,
    get_scorer,
    image_task,
    load_images,
    load_prompts,
    load_set,
)
from fmgate._compare.images import canonical_labels

needs_skimage = pytest.mark.skipif(
    importlib.util.find_spec("skimage") is None, reason="needs scikit-image (the vision extra)"
)


def png(path: Path, size: tuple[int, int] = (8, 6)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path)
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_folder_with_a_subfolder_per_label(tmp_path: Path) -> None:
    png(tmp_path / "set" / "tabby" / "b.png")
    png(tmp_path / "set" / "tabby" / "a.jpg")
    png(tmp_path / "set" / "espresso" / "c.png")
    (tmp_path / "set" / "tabby" / "notes.txt").write_text("not an image")
    items = load_images(tmp_path / "set")
    assert [(i.id, i.label) for i in items] == [
        ("espresso/c.png", "espresso"),
        ("tabby/a.jpg", "tabby"),
        ("tabby/b.png", "tabby"),
    ]
    assert items[0].source() == (tmp_path / "set" / "espresso" / "c.png").resolve()
    assert image_task(items) == "classify"


def test_a_folder_with_a_labels_csv_reads_paths_relative_to_it(tmp_path: Path) -> None:
    png(tmp_path / "set" / "img" / "cat.png")
    write(tmp_path / "set" / "labels.csv", "path,label\nimg/cat.png,tabby|tiger cat\n")
    (item,) = load_set(tmp_path / "set")
    assert item == ImageItem(
        "img/cat.png", str((tmp_path / "set/img/cat.png").resolve()), "tabby|tiger cat"
    )


def test_a_detection_csv_groups_rows_by_image(tmp_path: Path) -> None:
    png(tmp_path / "a.png")
    png(tmp_path / "b.png")
    path = write(
        tmp_path / "boxes.csv",
        "# two images, three objects\n"
        "path,label,x0,y0,x1,y1\n"
        "a.png,cup,1,2,5,6\n"
        "b.png,cat,0,0,8,6\n"
        "a.png,spoon,4.5,0,7,3\n",
    )
    items = load_images(path)
    assert [i.id for i in items] == ["a.png", "b.png"]
    assert items[0].boxes == (TruthBox("cup", (1, 2, 5, 6)), TruthBox("spoon", (4.5, 0, 7, 3)))
    assert image_task(items) == "detect"
    assert canonical_labels(items) == ["cat", "cup", "spoon"]


def test_a_prompt_csv_is_still_a_prompt_set(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "prompt,expected\nTwo and two?,4\n")
    (item,) = load_set(path)
    assert item == load_prompts(path)[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,label\nmissing.png,cat\n", r"line 2: no image file 'missing.png' \(looked for "),
        ("path,lable\nx.png,cat\n", r"line 1: unknown column 'lable'; the columns are path, label"),
        ("path\nx.png\n", r"line 1: the header must name a 'label' column"),
        ("path,label,x0,y0,x1\nx.png,cat,1,1,2\n", r"needs all four columns .* missing y1"),
        ("path,label,x0,y0,x1,y1\nx.png,cat,5,1,2,3\n", r"line 2: bad box \(5, 1, 2, 3\): x1 must"),
        (
            "path,label,x0,y0,x1,y1\nx.png,cat,a,1,2,3\n",
            r"line 2: bad box: x0 is 'a', not a number",
        ),
        ("path,label,x0,y0,x1,y1\nx.png,cat,-1,1,2,3\n", r"bad box: x0 is -1; coordinates"),
        ("path,label,x0,y0,x1,y1\nx.png,cat,,,,\n", r"line 2: bad box: x0 is '', not a number"),
        ("path,label\nx.png,\n", r"line 2: empty 'label'"),
        (
            "path,label\nx.png,cat\nx.png,dog\n",
            r"line 3: duplicate image 'x.png' \(first on line 2\)",
        ),
        ("path,label\nhttps://a.b/c.png,cat\n", r"line 2: 'https://a.b/c.png' is a URL"),
        ("path,label\n", r"no images; add at least one row"),
    ],
)
def test_each_mistake_is_named_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    png(tmp_path / "x.png")
    path = write(tmp_path / "set.csv", text)
    with pytest.raises(InvalidRequestError, match=message) as caught:
        load_images(path)
    assert str(path) in str(caught.value)


def test_a_folder_of_loose_images_says_how_to_label_them(tmp_path: Path) -> None:
    png(tmp_path / "set" / "cat.png")
    with pytest.raises(InvalidRequestError, match="one subfolder per label .* labels.csv"):
        load_images(tmp_path / "set")


def test_an_image_beside_the_label_subfolders_is_refused_not_dropped(tmp_path: Path) -> None:
    png(tmp_path / "set" / "tabby" / "a.png")
    png(tmp_path / "set" / "stray.png")
    with pytest.raises(InvalidRequestError, match="stray.png lies beside the label subfolders"):
        load_images(tmp_path / "set")


def test_an_unknown_name_lists_the_image_sets_too() -> None:
    with pytest.raises(InvalidRequestError, match="Did you mean 'skimage-photos'") as caught:
        load_set("skimage-photo")
    assert "capitals" in str(caught.value) and "skimage-objects" in str(caught.value)


def test_image_sets_need_image_scorers_and_the_other_way_round(tmp_path: Path) -> None:
    png(tmp_path / "set" / "tabby" / "a.png")
    photos = load_images(tmp_path / "set")
    with pytest.raises(InvalidRequestError, match="image set: grade it with top1 or top5"):
        check_scorer(photos, get_scorer("contains"))
    with pytest.raises(InvalidRequestError, match="labels only .* recall@0.5"):
        check_scorer(photos, get_scorer("recall@0.5"))
    with pytest.raises(InvalidRequestError, match="grades image sets"):
        check_scorer(load_prompts("capitals"), get_scorer("top-1"))
    check_scorer(photos, get_scorer("top5"))


@needs_skimage
def test_the_bundled_sets_read_scikit_images_photos_without_downloading() -> None:
    assert set(bundled_image_sets()) == {"skimage-photos", "skimage-objects"}
    photos, objects = load_images("skimage-photos"), load_images("skimage-objects")
    assert image_task(photos) == "classify" and image_task(objects) == "detect"
    assert {i.id for i in photos} == {"chelsea", "coffee", "rocket", "motorcycle"}
    chelsea = next(i for i in photos if i.id == "chelsea")
    assert chelsea.label is not None and "Egyptian cat" in chelsea.label.split("|")
    for item in [*photos, *objects]:
        source = item.source()  # the file inside the wheel: nothing fetched
        assert source.is_file() and "skimage" in source.parts
    sizes = {"astronaut": (512, 512), "coffee": (600, 400), "motorcycle": (741, 500)}
    from PIL import Image

    for item in objects:
        with Image.open(item.source()) as image:
            width, height = image.size
        assert sizes.get(item.id, (width, height)) == (width, height)
        assert all(b.box[2] <= width and b.box[3] <= height for b in item.boxes), item.id
    for name in bundled_image_sets().values():
        head = name.read_text("utf-8").splitlines()[:4]
        assert head[0].startswith(f"# {name.stem}:") and "written for fmgate" in " ".join(head)


@needs_skimage
def test_a_skimage_name_not_in_the_wheel_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "path,label\nskimage:brain,brain\n")
    with pytest.raises(
        InvalidRequestError, match="line 2: skimage:brain is not a photo .* chelsea"
    ):
        load_images(path)


def test_without_scikit_image_a_skimage_path_names_the_vision_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match="scikit-image") as caught:
        load_set("skimage-photos")
    assert caught.value.extra == "vision"


def test_the_docs_and_the_help_name_every_bundled_image_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fmgate.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--help"])
    # argparse may wrap a line after a hyphen: "skimage-\nobjects"
    help_text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")
    docs = (Path(__file__).resolve().parents[2] / "docs" / "compare.md").read_text("utf-8")
    for name in bundled_image_sets():
        assert name in help_text and f"`{name}`" in docs, name
