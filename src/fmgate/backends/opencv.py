"""The OpenCV backend (``opencv:``): an SSD-style object detector run by OpenCV's dnn module.

    m = load("opencv:models/frozen_inference_graph.pb", pbtxt="models/ssd_mobilenet_v2.pbtxt")
    m = load("opencv:models")      # a folder holding one .pb and its .pbtxt
    m.detect("street.jpg", threshold=0.5).results[0]   # [Detection("person", 0.81, (x0, ...)), ...]

It reads a TensorFlow frozen graph (``.pb``) with ``cv2.dnn.readNetFromTensorflow``, with the
graph text (``.pbtxt``) that OpenCV needs for the TensorFlow Object Detection API's detectors
(``tf_text_graph_ssd.py`` writes it). The net takes RGB pixels resized to ``size`` x ``size``
(300 for SSD-MobileNet) and answers DetectionOutput rows, ``(image, class id, score, x0, y0, x1,
y1)`` with corners in [0, 1]; fmgate scales them to each input image's pixels. Class ids name
COCO's classes as the Object Detection API numbers them (``_data/coco_labels.txt``) unless the
``labels`` setting names a file of ``<id> <name>`` lines. Settings: ``pbtxt``, ``labels``,
``size``, ``batch_size`` (images per forward pass, 1), ``license`` (a model file does not say its
licence) and the cost settings of :mod:`fmgate._local.energy`. The only task is ``detect``.

OpenCV runs a forward pass on its own thread pool, one thread per core as torch does; fmgate
leaves it alone, since ``cv2.setNumThreads`` is the whole process's setting (docs/tasks.md has
what it measured beside torch on 2 cores).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import numpy as np

from .._errors import ConfigurationError
from .._local.energy import SETTINGS as COST_SETTINGS
from .._record import Access, Usage
from .._types import Box, Detection, DetectResult
from ._base import BackendConfig
from ._in_process import InProcessBackend

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["OpenCVBackend", "coco_labels"]

DEFAULT_SIZE = 300
# Images per forward pass. OpenCV's CPU convolutions gain nothing from a batch: measured on 2
# cores (benchmarks/detect_overhead.py), 5.5 images/s one at a time, 4.5 to 5.0 in batches of 2
# to 8. A larger batch_size may pay on more cores, or with an accelerated OpenCV build.
DEFAULT_BATCH = 1
# A DetectionOutput row: batch index, class id, score, then the box's corners in [0, 1].
_ROW = 7


class OpenCVBackend(InProcessBackend):
    """A TensorFlow SSD detector (frozen ``.pb`` and its ``.pbtxt``) that finds objects."""

    wire = "opencv"
    library = "opencv-python-headless"
    settings: ClassVar[dict[str, tuple[type, ...]]] = {
        "pbtxt": (str,),
        "labels": (str,),
        "size": (int,),
        "batch_size": (int,),
        "license": (str,),
        **COST_SETTINGS,
    }

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config, {"detect"})
        options = config.options
        self._graph, self._text = model_files(config.model, options.get("pbtxt"))
        self._size = _positive(options, "size", DEFAULT_SIZE)
        self._batch = _positive(options, "batch_size", DEFAULT_BATCH)
        labels = options.get("labels")
        self._labels = coco_labels() if labels is None else read_labels(Path(labels))
        self._net = _load(self._graph, self._text)
        self._parameters = _parameters(self._net)
        self._lock = threading.Lock()  # a cv2.dnn.Net holds its input: one forward at a time

    def access(self) -> Access:
        return self.local_access(
            parameters=self._parameters,
            dtype="float32",
            weights_bytes=self._graph.stat().st_size,
        )

    def detect(self, images: Sequence[PILImage], *, threshold: float) -> DetectResult:
        """Per image, the objects scoring at least ``threshold``, best first, boxes in its
        pixels; ``batch_size`` images per forward pass (``cv2.dnn.blobFromImages``)."""
        found: list[list[Detection]] = []
        for start in range(0, len(images), self._batch):
            chunk = images[start : start + self._batch]
            rows = self._forward([np.asarray(image) for image in chunk])  # RGB, as Model sends
            found.extend(self._detections(rows, chunk, threshold))
        return DetectResult(found, Usage())

    def _forward(self, pixels: list[Any]) -> Any:
        """The DetectionOutput rows of a batch of RGB arrays, resized to ``size`` squared."""
        size = (self._size, self._size)
        blob = cv2.dnn.blobFromImages(pixels, size=size, swapRB=False, crop=False)
        with self._lock:
            self._net.setInput(blob)
            out = self._net.forward()
        if out.ndim != 4 or out.shape[-1] != _ROW:
            raise ConfigurationError(
                f"opencv:{self.model} answered an output of shape {tuple(out.shape)}, not "
                "DetectionOutput rows (..., 7): the opencv backend runs SSD-style detectors "
                "(the TensorFlow Object Detection API's, with their .pbtxt)."
            )
        return out.reshape(-1, _ROW)

    def _detections(
        self, rows: Any, images: Sequence[PILImage], threshold: float
    ) -> list[list[Detection]]:
        found: list[list[Detection]] = [[] for _ in images]
        for index, class_id, score, *corners in rows.tolist():
            i = int(index)
            if not 0 <= i < len(images) or not score >= threshold:  # NaN scores fail too
                continue
            box = _box(corners, images[i].width, images[i].height)
            if box is not None:
                label = self._labels.get(int(class_id), f"LABEL_{int(class_id)}")
                found[i].append(Detection(label, float(score), box))
        return [sorted(row, key=lambda d: -d.score) for row in found]


def _box(corners: Sequence[float], width: int, height: int) -> Box | None:
    """Corners in [0, 1] as pixels of the image, clipped to it; None when nothing is left."""
    w, h = float(width), float(height)
    x0, y0, x1, y1 = (min(max(float(c), 0.0), 1.0) for c in corners)  # NaN stays NaN
    box = (x0 * w, y0 * h, x1 * w, y1 * h)
    return box if box[2] > box[0] and box[3] > box[1] else None


def _positive(options: Any, key: str, default: int) -> int:
    value = options.get(key, default)
    if value < 1:
        raise ConfigurationError(f"opencv: {key!r} must be a positive int, not {value}.")
    return int(value)


def model_files(model: str, pbtxt: str | None) -> tuple[Path, Path | None]:
    """The frozen graph and its graph text that a spec names (a ``.pb`` file, with the
    ``pbtxt`` setting, or a folder holding one ``.pb`` and at most one ``.pbtxt``)."""
    path = Path(model).expanduser()
    if path.is_dir():
        graphs, texts = sorted(path.glob("*.pb")), sorted(path.glob("*.pbtxt"))
        if len(graphs) != 1 or (pbtxt is None and len(texts) > 1):
            raise ConfigurationError(
                f"opencv:{model}: a folder must hold one .pb and at most one .pbtxt; it holds "
                f"{len(graphs)} .pb and {len(texts)} .pbtxt. Name the .pb, and its .pbtxt with "
                "pbtxt=."
            )
        if pbtxt is None and texts:
            return graphs[0], texts[0]
        return graphs[0], _text(model, pbtxt)
    if path.suffix != ".pb":
        raise ConfigurationError(
            f"opencv:{model}: name a TensorFlow frozen graph (.pb) or a folder holding one, e.g. "
            "opencv:models/frozen_inference_graph.pb with pbtxt='models/graph.pbtxt'."
        )
    if not path.is_file():
        raise ConfigurationError(f"opencv:{model}: no such file ({path.resolve()}).")
    return path, _text(model, pbtxt)


def _text(model: str, pbtxt: str | None) -> Path | None:
    if pbtxt is None:
        return None
    path = Path(pbtxt).expanduser()
    if not path.is_file():
        raise ConfigurationError(f"opencv:{model}: pbtxt: no such file ({path.resolve()}).")
    return path


def _load(graph: Path, text: Path | None) -> Any:
    try:
        if text is None:
            return cv2.dnn.readNetFromTensorflow(str(graph))
        return cv2.dnn.readNetFromTensorflow(str(graph), str(text))
    except cv2.error as exc:
        with_text = f" with {text.name}" if text is not None else ""
        first = str(exc).strip().splitlines()[-1][:300]
        raise ConfigurationError(
            f"OpenCV could not read {graph}{with_text} as a TensorFlow graph: {first}"
        ) from exc


def _parameters(net: Any) -> int | None:
    """The weights the net holds (its layers' blobs), counted once at load (tens of ms)."""
    try:
        layers = [net.getLayer(name) for name in net.getLayerNames()]
        return sum(int(np.prod(blob.shape)) for layer in layers for blob in layer.blobs) or None
    except cv2.error:
        return None


def coco_labels() -> dict[int, str]:
    """COCO's class names by the TensorFlow Object Detection API's ids (1 to 90)."""
    text = resources.files("fmgate._data").joinpath("coco_labels.txt").read_text(encoding="utf-8")
    return parse_labels(text, "fmgate's coco_labels.txt")


def read_labels(path: Path) -> dict[int, str]:
    """Class names from a file of ``<id> <name>`` lines (``#`` starts a comment line)."""
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"opencv: labels: cannot read {path} ({exc}).") from exc
    return parse_labels(text, str(path))


def parse_labels(text: str, where: str) -> dict[int, str]:
    labels: dict[int, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        number, _, name = line.partition(" ")
        if not number.isdigit() or not name.strip():
            raise ConfigurationError(
                f"{where}, line {n}: expected '<id> <name>' (e.g. '1 person'), not {line[:60]!r}."
            )
        labels[int(number)] = name.strip()
    return labels
