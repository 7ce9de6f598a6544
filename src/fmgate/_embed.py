"""The embedding task: ``Model.embed`` and ``Model.aembed``, on the model's recording path."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._errors import InvalidRequestError
from ._recording import CallTimer
from ._types import Embeddings
from .backends._base import EmbeddingResult

if TYPE_CHECKING:
    from ._model import Model


def embed(model: Model, texts: str | Sequence[str]) -> Embeddings:
    with model.recording("embed") as timer:
        result = model.backend.embed(_texts(model, texts))
    return _embeddings(timer, result)


async def aembed(model: Model, texts: str | Sequence[str]) -> Embeddings:
    with model.recording("embed") as timer:
        result = await model.backend.aembed(_texts(model, texts))
    return _embeddings(timer, result)


def _texts(model: Model, texts: str | Sequence[str]) -> list[str]:
    if "embed" not in model.tasks:
        raise model.backend.unsupported("embed")
    batch = [texts] if isinstance(texts, str) else list(texts)
    if not batch or not all(isinstance(t, str) for t in batch):
        raise InvalidRequestError("embed() takes a str or a non-empty list of str.")
    return batch


def _embeddings(timer: CallTimer, result: EmbeddingResult) -> Embeddings:
    usage = dataclasses.replace(result.usage, items=len(result.vectors))
    record = timer.succeed(usage=usage, model_id=result.model_id, finish_reason=None)
    return Embeddings(result.vectors, usage, record)
