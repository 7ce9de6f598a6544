"""Opt-in fallback: when a model fails, the next model of a configured chain serves the call.

The record of the call that served says which model it stands in for (``fallback_from``) and
why (``fallback_reason``), since a fallback changes what a comparison measures; the failed
call has its own record.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeGuard

from ._errors import BackendError, FmgateError
from ._secrets import redact

if TYPE_CHECKING:
    from ._model import Model
    from ._types import Prompt, Response

_SERVING: ContextVar[tuple[str, str] | None] = ContextVar("fmgate_fallback", default=None)


@contextmanager
def serving_for(failed_spec: str, reason: str) -> Iterator[None]:
    """Calls started inside are fallbacks for ``failed_spec``, which failed with ``reason``."""
    token = _SERVING.set((failed_spec, reason))
    try:
        yield
    finally:
        _SERVING.reset(token)


def serving_fallback() -> tuple[str, str] | None:
    """(the model that failed, why) while a fallback call runs, else None."""
    return _SERVING.get()


COMMON_PARAMS = ("max_tokens", "temperature", "top_p", "stop", "seed")


class Fallbacks:
    """The models a failed call falls back to, in order; specs and aliases load on first need.

    Only a backend failure (after the failing model's own retries) falls back, and a fallback
    never falls back again: the chain is the one the caller configured.
    """

    def __init__(self, chain: Sequence[str | Model], config: Any = None) -> None:
        self._chain = list(chain)
        self._config = config
        self._models: list[Model] | None = None
        self._lock = threading.Lock()

    def applies(self, error: FmgateError) -> TypeGuard[BackendError]:
        return isinstance(error, BackendError) and serving_fallback() is None

    def models(self) -> list[Model]:
        with self._lock:
            if self._models is None:
                from ._load import load
                from ._model import Model

                self._models = [
                    m if isinstance(m, Model) else load(m, config=self._config) for m in self._chain
                ]
            return self._models

    def generate(
        self,
        failed: Model,
        error: BackendError,
        prompt: Prompt,
        system: str | None,
        params: dict[str, Any],
    ) -> Response:
        last: BackendError = error
        for model in self.models():
            with serving_for(failed.alias or failed.spec, _reason(error)):
                try:
                    return model.generate(prompt, **_portable(params, system, model))
                except BackendError as exc:
                    last = exc
        raise last

    async def agenerate(
        self,
        failed: Model,
        error: BackendError,
        prompt: Prompt,
        system: str | None,
        params: dict[str, Any],
    ) -> Response:
        last: BackendError = error
        for model in self.models():
            with serving_for(failed.alias or failed.spec, _reason(error)):
                try:
                    return await model.agenerate(prompt, **_portable(params, system, model))
                except BackendError as exc:
                    last = exc
        raise last


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {redact(str(error))}"[:300]


def _portable(params: dict[str, Any], system: str | None, model: Model) -> dict[str, Any]:
    """The call's parameters that ``model`` takes: the common ones and its own prefixed ones
    (``openai_logprobs`` does not follow a call to a local model)."""
    prefixes = tuple(f"{p}_" for p in (model.backend.wire, model.backend.config.name))
    kept = {
        k: v
        for k, v in params.items()
        if v is not None and (k in COMMON_PARAMS or k.startswith(prefixes))
    }
    if system is not None:
        kept["system"] = system
    return kept
