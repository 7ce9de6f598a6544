"""Image-generation sets for ``fmgate compare``: rows that ask a model to draw.

A row is an image prompt when it says ``"task": "image"`` or gives any of the drawing settings
``size`` (``"512x512"``), ``seed``, ``steps`` or ``negative_prompt``; a set is an image-generation
set when every row is one (a set that mixes them is refused, naming the line). Such a row has no
``expected`` or ``label``: no quality score is computed (no CLIP model ships with fmgate).

Each model whose tasks include ``image`` runs ``Model.generate_image`` once per row and pass (API
and self-hosted models ``concurrency`` at a time, local pipelines one at a time). The images never
go to the record store: when the run is given a folder, each is written there as
``images/<model>/<row>-r<repeat>-<i>.png`` with a 128 px thumbnail under ``thumbs/``, and
``images/index.json`` lists, per model (and the run that drew), every row in the set's order
with its first drawn thumbnail, so the report's strips line up.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import InvalidRequestError, shown
from .._tags import PROMPT, REPEAT, ROLE, RUN, WARMUP

if TYPE_CHECKING:
    from .._image_gen import Images
    from .._model import Model
    from .prompts import PromptItem

__all__ = [
    "DRAW_FIELDS",
    "INDEX",
    "THUMB_PX",
    "DrawCall",
    "ImageFolder",
    "check_drawers",
    "draw",
    "draw_fields",
    "is_image_generation",
    "read_index",
]

DRAW_FIELDS = ("task", "size", "seed", "steps", "negative_prompt")
THUMB_PX = 128  # the longer side of a report thumbnail
INDEX = "index.json"  # under images/: the strips' rows, per model
_SIZE = re.compile(r"^\d{1,5}x\d{1,5}$")


def draw_fields(where: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The row's drawing settings as :class:`PromptItem` fields (``task``, ``size``, ``seed``,
    ``steps``, ``negative_prompt``), each checked; ``{}`` for a row that draws nothing."""
    if not any(row.get(name) is not None for name in DRAW_FIELDS):
        return {}
    task = row.get("task")
    if task is not None and task != "image":
        raise InvalidRequestError(
            f"{where}: 'task' is {shown(task, 30)}; the only task a row can name is 'image' "
            "(a prompt to draw)."
        )
    for name in ("expected", "label", "schema", "tools"):
        if row.get(name) is not None:
            raise InvalidRequestError(
                f"{where}: a row that draws an image cannot carry {name!r} (no answer is graded)."
            )
    fields: dict[str, Any] = {"task": "image"}
    size = row.get("size")
    if size is not None:
        if not isinstance(size, str) or not _SIZE.match(size.strip()):
            raise InvalidRequestError(
                f"{where}: 'size' is {shown(size, 30)}; write it as WIDTHxHEIGHT, such as 512x512."
            )
        fields["size"] = size.strip()
    for name in ("seed", "steps"):
        value = row.get(name)
        if value is not None:
            fields[name] = _whole(where, name, value)
    negative = row.get("negative_prompt")
    if negative is not None:
        if not isinstance(negative, str):
            raise InvalidRequestError(f"{where}: 'negative_prompt' must be text.")
        fields["negative_prompt"] = negative
    return fields


def _whole(where: str, name: str, value: Any) -> int:
    """A whole number, from JSON or from a CSV cell's text."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidRequestError(f"{where}: {name!r} is {shown(value, 30)}, not a whole number.")


def is_image_generation(items: Sequence[object]) -> bool:
    """Whether ``items`` is an image-generation set: every row asks to draw."""
    return bool(items) and all(getattr(item, "task", None) == "image" for item in items)


def check_drawers(models: Sequence[Model]) -> None:
    """Refuse, before any call, a model that cannot draw."""
    for model in models:
        if "image" not in model.tasks:
            raise InvalidRequestError(
                f"{model.alias or model.spec} cannot generate images: the set is an "
                "image-generation set; give a diffusers pipeline or an images API "
                f"(its tasks are {', '.join(sorted(model.tasks))})."
            )


@dataclass(frozen=True, slots=True)
class DrawCall:
    """One ``generate_image`` call: a row, in one pass (or a warm-up)."""

    item: PromptItem
    repeat: int
    warmup: bool = False

    def tags(self, run_id: str) -> dict[str, str]:
        tags = {RUN: run_id, PROMPT: self.item.id, REPEAT: str(self.repeat), ROLE: "candidate"}
        return {**tags, WARMUP: "true"} if self.warmup else tags


def draw(model: Model, item: PromptItem, params: Mapping[str, Any]) -> Images:
    """The row's image: its own size, seed, steps and negative prompt over the run's."""
    own = {
        "size": item.size,
        "seed": item.seed,
        "steps": item.steps,
        "negative_prompt": item.negative_prompt,
    }
    options = {**params, **{k: v for k, v in own.items() if v is not None}}
    return model.generate_image(item.prompt, **options)


def _safe(name: str) -> str:
    """A file or folder name from a label or id: ``openai:gpt-image-1`` becomes
    ``openai_gpt-image-1``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "model"


class ImageFolder:
    """Where a run's drawn images go: ``<root>/images/<model>/``, full size and as thumbnails,
    and ``<root>/images/index.json`` listing each model's rows in the set's order."""

    def __init__(self, root: str | os.PathLike[str], run_id: str) -> None:
        self.root = Path(root) / "images"
        self.run_id = run_id
        self._lock = threading.Lock()
        self._models: list[dict[str, Any]] = []
        self._folders: set[str] = set()

    def folder(self, label: str) -> str:
        """A folder name of the model's own (two labels that clean alike get a suffix)."""
        base = name = _safe(label)
        n = 2
        while name in self._folders:
            name, n = f"{base}-{n}", n + 1
        self._folders.add(name)
        return name

    def save(self, folder: str, call: DrawCall, images: Images) -> list[tuple[str, str]]:
        """Each image of the call in full and as a thumbnail; their paths relative to the root
        of the report (the folder above ``images/``)."""
        out = self.root / folder
        (out / "thumbs").mkdir(parents=True, exist_ok=True)
        saved = []
        for i, image in enumerate(images.images):
            name = f"{_safe(call.item.id)}-r{call.repeat}-{i}.png"
            image.save(out / name, format="PNG")
            thumb = image.copy()
            thumb.thumbnail((THUMB_PX, THUMB_PX))
            thumb.save(out / "thumbs" / name, format="PNG")
            saved.append((f"images/{folder}/{name}", f"images/{folder}/thumbs/{name}"))
        return saved

    def add_model(
        self,
        label: str,
        items: Sequence[PromptItem],
        drawn: Mapping[str, list[tuple[str, str]]],
    ) -> None:
        """The model's strip: every row in order, its first image (``None`` where every call
        for the row failed), and rewrite the index."""
        rows = []
        for item in items:
            first = drawn.get(item.id, [])
            rows.append(
                {
                    "id": item.id,
                    "prompt": item.prompt,
                    "image": first[0][0] if first else None,
                    "thumb": first[0][1] if first else None,
                }
            )
        with self._lock:
            self._models.append({"model": label, "run": self.run_id, "rows": rows})
            self.root.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"models": self._models}, indent=1, ensure_ascii=False)
            (self.root / INDEX).write_text(text + "\n", "utf-8")


def read_index(report_dir: str | Path) -> list[dict[str, Any]]:
    """The strips of a report folder (``images/index.json``), ``[]`` when it has none."""
    path = Path(report_dir) / "images" / INDEX
    if not path.is_file():
        return []
    try:
        models = json.loads(path.read_text("utf-8")).get("models", [])
    except (ValueError, AttributeError):
        return []
    return [m for m in models if isinstance(m, dict) and isinstance(m.get("rows"), list)]
