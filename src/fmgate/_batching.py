"""The prompts of one ``generate_many`` batch, and the per-prompt tags that label them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import FmgateError, InvalidRequestError, MalformedResponseError
from ._recording import CallTimer
from ._types import ChatRequest, Completion, Response

if TYPE_CHECKING:
    from ._model import Model


def per_prompt(tags: Sequence[Mapping[str, str]] | None, n: int) -> list[Mapping[str, str]]:
    if tags is None:
        return [{}] * n
    if (
        isinstance(tags, Mapping)
        or len(tags) != n
        or not all(isinstance(t, Mapping) and _all_str(t) for t in tags)
    ):
        raise InvalidRequestError(
            f"tags must be a sequence of one mapping per prompt ({n}), e.g. "
            '[{"item": "1"}, {"item": "2"}]; use fmgate.tagged() to tag every prompt alike.'
        )
    return list(tags)


def _all_str(tags: Mapping[Any, Any]) -> bool:
    return all(isinstance(k, str) and k and isinstance(v, str) for k, v in tags.items())


class Batch:
    """The prompts of one batch: their timers and requests, then their results in order."""

    def __init__(self, model: Model, size: int) -> None:
        self._model = model
        self.slots: list[Response | FmgateError | None] = [None] * size
        self._index: list[int] = []
        self.timers: list[CallTimer] = []
        self.requests: list[ChatRequest] = []

    def add(self, index: int, timer: CallTimer, request: ChatRequest) -> None:
        self._index.append(index)
        self.timers.append(timer)
        self.requests.append(request)

    def settle(self, outcome: list[Completion | FmgateError] | FmgateError) -> None:
        """Record each prompt: a whole-batch error fails them all, a row error fails its row."""
        if not isinstance(outcome, FmgateError) and len(outcome) != len(self.requests):
            outcome = MalformedResponseError(
                f"the backend returned {len(outcome)} completions for {len(self.requests)} prompts"
            )
        for n, (index, timer) in enumerate(zip(self._index, self.timers, strict=True)):
            result = outcome if isinstance(outcome, FmgateError) else outcome[n]
            if isinstance(result, FmgateError):
                timer.fail(result)
                self.slots[index] = result
            else:
                self.slots[index] = self._model._finish(timer, result)

    def results(self, return_exceptions: bool) -> list[Response | FmgateError]:
        done = [slot for slot in self.slots if slot is not None]
        if not return_exceptions:
            for slot in done:
                if isinstance(slot, FmgateError):
                    raise slot
        return done
