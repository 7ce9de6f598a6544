"""Image sets for ``fmgate compare``: a folder or a CSV of images with their labels or boxes.

Three ways to give one:

- a folder with one subfolder per label (``cats/tabby/1.jpg`` is labelled ``tabby``);
- a folder with the images and a ``labels.csv`` beside them;
- a CSV file with the columns ``path,label`` (classification) or ``path,label,x0,y0,x1,y1``
  (detection: one row per object, several rows per image, the box in the image's pixels).

Paths are relative to the CSV's folder; ``skimage:<name>`` names a sample photo shipped inside
scikit-image's wheel (``skimage:chelsea``), read as is and never downloaded. An optional ``id``
column names each image (by default its path as written). A line starting with ``#`` is a
comment. A label may list alternatives separated by ``|`` (``tabby|tiger cat|Egyptian cat``): a
prediction naming any of them is right, since a classifier's own label names rarely match a
set's word for word (ImageNet calls a cat photo ``tabby, tabby cat`` or ``Egyptian cat``).

Every problem (a missing image file, a bad box, an unknown column) is an
:class:`fmgate.InvalidRequestError` naming the file and line, raised before any model runs.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .._errors import InvalidRequestError, shown
from .prompts import PromptItem, bundled_prompt_sets, load_prompts

__all__ = [
    "IMAGE_FIELDS",
    "SKIMAGE",
    "ImageItem",
    "TruthBox",
    "bundled_image_sets",
    "canonical_labels",
    "image_items",
    "image_task",
    "load_images",
    "load_set",
    "skimage_names",
]

IMAGE_FIELDS = ("id", "path", "label", "x0", "y0", "x1", "y1")
BOX_FIELDS = ("x0", "y0", "x1", "y1")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
LABELS_CSV = "labels.csv"
SKIMAGE = "skimage:"
ImageTask = Literal["classify", "detect"]
Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class TruthBox:
    """One object a detection set expects: its label (alternatives separated by ``|``) and its
    box ``(x0, y0, x1, y1)`` in the image's pixels."""

    label: str
    box: Box


@dataclass(frozen=True, slots=True)
class ImageItem:
    """One image of a set: its ``id``, where it is (an absolute path, or ``skimage:<name>``),
    and its true ``label`` (classification) or the ``boxes`` it holds (detection)."""

    id: str
    path: str
    label: str | None = None
    boxes: tuple[TruthBox, ...] = ()

    def source(self) -> Path:
        """The image file, for ``Model.classify`` and ``Model.detect``: a path to read, never
        a download (a ``skimage:`` image is the file inside scikit-image's wheel)."""
        if self.path.startswith(SKIMAGE):
            return _skimage_file(self.path.removeprefix(SKIMAGE), where=self.id)
        return Path(self.path)


def alternatives(label: str) -> list[str]:
    """A set's label as its alternatives: ``"tabby|tiger cat"`` -> ``["tabby", "tiger cat"]``."""
    return [part.strip() for part in label.split("|") if part.strip()]


def image_items(items: Sequence[object]) -> list[ImageItem] | None:
    """``items`` as image items when they all are (an image set), else ``None``."""
    if items and all(isinstance(item, ImageItem) for item in items):
        return [item for item in items if isinstance(item, ImageItem)]
    return None


def image_task(items: Sequence[ImageItem]) -> ImageTask:
    """``detect`` for a set whose images carry boxes, else ``classify``."""
    return "detect" if any(item.boxes for item in items) else "classify"


def canonical_labels(items: Sequence[ImageItem]) -> list[str]:
    """The first alternative of every label of the set, sorted: the ``labels=`` offered to a
    chat model that classifies or detects zero-shot."""
    labels = [item.label for item in items if item.label is not None]
    labels += [box.label for item in items for box in item.boxes]
    return sorted({alternatives(label)[0] for label in labels})


# -- loading --------------------------------------------------------------------------------------


def bundled_image_sets() -> dict[str, Path]:
    """The image sets shipped with fmgate, by name (``skimage-photos`` -> its ``.csv`` file)."""
    from importlib import resources

    folder = resources.files("fmgate._data").joinpath("images")
    files = (Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".csv"))
    return {path.stem: path for path in sorted(files)}


def is_image_source(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names an image set: a folder, a bundled image set, or a CSV whose
    header names a ``path`` column (a prompt set's CSV names ``prompt`` or ``text``)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return True
    if path.is_file():
        return path.suffix.lower() == ".csv" and "path" in _header(path)
    return str(source) in bundled_image_sets()


def load_set(source: str | os.PathLike[str]) -> list[PromptItem] | list[ImageItem]:
    """A prompt set (:func:`load_prompts`) or an image set (:func:`load_images`), as ``source``
    names: ``fmgate compare --prompts`` takes either."""
    if is_image_source(source):
        return load_images(source)
    path = Path(source).expanduser()
    if not path.exists() and str(source) not in bundled_prompt_sets():
        from .prompts import _no_such_set

        names = [*bundled_prompt_sets(), *bundled_image_sets()]
        raise InvalidRequestError(_no_such_set(str(source), names))
    return load_prompts(source)


def load_images(source: str | os.PathLike[str]) -> list[ImageItem]:
    """The images of a folder, a CSV file, or a bundled image set named ``source``."""
    path = Path(source).expanduser()
    if path.is_dir():
        return _from_folder(path)
    if not path.is_file():
        bundled = bundled_image_sets()
        if str(source) not in bundled:
            raise InvalidRequestError(f"{source}: no such image folder or CSV file.")
        path = bundled[str(source)]
    if path.suffix.lower() != ".csv":
        raise InvalidRequestError(f"{path}: an image set is a folder or a .csv file.")
    return _from_csv(path)


def _from_folder(folder: Path) -> list[ImageItem]:
    """A folder with a ``labels.csv``, or one subfolder per label."""
    if (folder / LABELS_CSV).is_file():
        return _from_csv(folder / LABELS_CSV)
    loose = sorted(p.name for p in folder.iterdir() if _is_image_file(p))
    if loose and any(p.is_dir() for p in folder.iterdir()):
        raise InvalidRequestError(
            f"{folder}: {loose[0]} lies beside the label subfolders, so it has no label; move "
            f"it into its label's subfolder, or list every image in a {LABELS_CSV}."
        )
    items = [
        ImageItem(f"{sub.name}/{image.name}", str(image.resolve()), sub.name)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not _hidden(p))
        for image in sorted(sub.iterdir())
        if _is_image_file(image)
    ]
    if not items:
        raise InvalidRequestError(
            f"{folder}: no images found; put them in one subfolder per label "
            f"(tabby/1.jpg), or add a {LABELS_CSV} with the columns path,label."
        )
    return items


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _is_image_file(path: Path) -> bool:
    return path.is_file() and not _hidden(path) and path.suffix.lower() in IMAGE_SUFFIXES


def _header(path: Path) -> list[str]:
    try:
        return _first_row(csv.reader(io.StringIO(_text(path), newline="")))
    except (csv.Error, InvalidRequestError):
        return []


def _text(path: Path) -> str:
    """The file's text with comment lines blanked (line numbers stay right)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(
            f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8."
        ) from None
    except OSError as exc:
        raise InvalidRequestError(f"{path}: cannot be read ({exc.strerror}).") from exc
    lines = text.splitlines(keepends=True)
    return "".join("\n" if line.lstrip().startswith("#") else line for line in lines)


def _from_csv(path: Path) -> list[ImageItem]:
    try:
        rows = list(_csv_rows(path))
    except csv.Error as exc:
        raise InvalidRequestError(f"{path}: not readable as CSV ({exc}).") from None
    if not rows:
        raise InvalidRequestError(f"{path}: no images; add at least one row.")
    if any(row.box is not None for row in rows):
        return _detection(path, rows)
    return _classification(path, rows)


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    id: str
    path: str
    label: str
    box: Box | None


def _csv_rows(path: Path) -> Iterator[_Row]:
    reader = csv.reader(io.StringIO(_text(path), newline=""))
    header = _first_row(reader)
    _check_header(f"{path}, line {reader.line_num}", header)
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        where = f"{path}, line {reader.line_num}"
        if len(cells) != len(header):
            raise InvalidRequestError(
                f"{where}: {len(cells)} fields for {len(header)} columns; quote a field that "
                "holds a comma."
            )
        row = {k: v.strip() for k, v in zip(header, cells, strict=True)}
        yield _row(path, where, reader.line_num, row)


def _first_row(reader: Iterator[list[str]]) -> list[str]:
    """The header: the first row that is not blank (comments above it are blanked)."""
    for row in reader:
        if any(cell.strip() for cell in row):
            return [name.strip() for name in row]
    return []


def _check_header(where: str, header: list[str]) -> None:
    unknown = [name for name in header if name not in IMAGE_FIELDS]
    if unknown:
        raise InvalidRequestError(
            f"{where}: unknown column {unknown[0]!r}; the columns are path, label, and x0, y0, "
            "x1, y1 for a detection set's boxes (and an optional id)."
        )
    for name in ("path", "label"):
        if name not in header:
            raise InvalidRequestError(
                f"{where}: the header must name a {name!r} column (path,label to classify; "
                f"path,label,x0,y0,x1,y1 to detect); found {header}."
            )
    boxed = [name in header for name in BOX_FIELDS]
    if any(boxed) and not all(boxed):
        missing = [n for n, present in zip(BOX_FIELDS, boxed, strict=True) if not present]
        raise InvalidRequestError(
            f"{where}: a box needs all four columns x0, y0, x1, y1; missing {', '.join(missing)}."
        )


def _row(csv_path: Path, where: str, line: int, row: dict[str, str]) -> _Row:
    written = row["path"]
    if not written:
        raise InvalidRequestError(f"{where}: empty 'path'; every row names its image.")
    label = row["label"]
    if not alternatives(label):
        raise InvalidRequestError(f"{where}: empty 'label'; every row needs its label.")
    image = _image_path(csv_path, where, written)
    box = _box(where, row) if "x0" in row else None
    return _Row(line, row.get("id") or _default_id(written), image, label, box)


def _default_id(written: str) -> str:
    return written.removeprefix(SKIMAGE)


def _image_path(csv_path: Path, where: str, written: str) -> str:
    """``skimage:<name>`` checked against scikit-image's wheel, else a file that exists,
    relative to the CSV's folder."""
    if written.startswith(SKIMAGE):
        _skimage_file(written.removeprefix(SKIMAGE), where=where)
        return written
    if written.startswith(("http://", "https://")):
        raise InvalidRequestError(
            f"{where}: {written!r} is a URL; fmgate reads images from files: download it and "
            "give its path."
        )
    image = (csv_path.parent / written).expanduser().resolve()
    if not image.is_file():
        raise InvalidRequestError(
            f"{where}: no image file {written!r} (looked for {image}); paths are relative to "
            "the CSV's folder."
        )
    return str(image)


def _box(where: str, row: dict[str, str]) -> Box:
    values = []
    for name in BOX_FIELDS:
        cell = row[name]
        try:
            value = float(cell)
        except ValueError:
            raise InvalidRequestError(
                f"{where}: bad box: {name} is {shown(cell, 30)}, not a number; a detection row "
                "gives its box as x0, y0, x1, y1 in the image's pixels."
            ) from None
        if not math.isfinite(value) or value < 0:
            raise InvalidRequestError(
                f"{where}: bad box: {name} is {cell}; coordinates are pixels, 0 or more."
            )
        values.append(value)
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise InvalidRequestError(
            f"{where}: bad box ({x0:g}, {y0:g}, {x1:g}, {y1:g}): x1 must be greater than x0 "
            "and y1 greater than y0 (x0, y0 is the top-left corner)."
        )
    return (x0, y0, x1, y1)


def _classification(path: Path, rows: list[_Row]) -> list[ImageItem]:
    seen: dict[str, int] = {}
    for row in rows:
        if row.id in seen:
            raise InvalidRequestError(
                f"{path}, line {row.line}: duplicate image {row.id!r} (first on line "
                f"{seen[row.id]}); a classification set lists each image once."
            )
        seen[row.id] = row.line
    return [ImageItem(row.id, row.path, row.label) for row in rows]


def _detection(path: Path, rows: list[_Row]) -> list[ImageItem]:
    """Rows grouped by image (first appearance first): one item per image, a box per row."""
    grouped: dict[str, list[_Row]] = {}
    for row in rows:
        if row.box is None:
            raise InvalidRequestError(
                f"{path}, line {row.line}: no box, where other rows have one; in a detection "
                "set every row is one object with its box."
            )
        first = grouped.setdefault(row.id, [row])[0]
        if first.path != row.path:
            raise InvalidRequestError(
                f"{path}, line {row.line}: id {row.id!r} names another image than on line "
                f"{first.line}; give each image its own id."
            )
        if first is not row:
            grouped[row.id].append(row)
    return [
        ImageItem(ident, group[0].path, None, tuple(_truth(r) for r in group))
        for ident, group in grouped.items()
    ]


def _truth(row: _Row) -> TruthBox:
    assert row.box is not None
    return TruthBox(row.label, row.box)


# -- scikit-image's sample photos ------------------------------------------------------------


def skimage_names() -> list[str]:
    """The photos inside the installed scikit-image wheel that ``skimage:<name>`` can name."""
    return sorted(p.stem for p in _skimage_data().iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _skimage_data() -> Path:
    """scikit-image's ``data`` folder, found without importing scikit-image."""
    from .._extras import missing_extra

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise missing_extra("the bundled image sets (skimage: images)", "vision", "scikit-image")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _skimage_file(name: str, *, where: str) -> Path:
    folder = _skimage_data()
    found = [p for p in folder.glob(f"{name}.*") if p.suffix.lower() in IMAGE_SUFFIXES]
    if not name or "/" in name or not found:
        raise InvalidRequestError(
            f"{where}: skimage:{name} is not a photo shipped with scikit-image (fmgate never "
            f"downloads one); choose one of {', '.join(skimage_names())}."
        )
    return found[0]
