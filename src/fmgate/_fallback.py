"""Opt-in fallback: a Model whose failed calls are served by the next model of a chain.

``FallbackModel`` is a :class:`Model` (as pydantic-ai's ``FallbackModel`` is a model): it makes
its own call first, and when that fails with a backend error (after its own retries) tries each
model of its chain in turn. The record of the call that served says which model it stands in for
(``fallback_from``) and why (``fallback_reason``), since a fallback changes what a comparison
measures; the failed call has its own record. Only ``generate``/``agenerate`` fall back (and so
``generate_many`` without batching); a stream that has begun cannot change models.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from ._errors import BackendError
from ._model import Model
from ._recording import serving_fallback, serving_for
from ._secrets import redact
from ._types import Prompt, Response
from .backends._base import Backend

COMMON_PARAMS = ("max_tokens", "temperature", "top_p", "stop", "seed")

Link = Model | Callable[[], Model]
"""A model of the chain, or what builds it on first need (``load`` passes these)."""


class FallbackModel(Model):
    """A Model that, when a call fails with a backend error, serves it from ``fallback``.

    A fallback never falls back again: the chain is the one the caller configured.
    """

    def __init__(self, backend: Backend, *, fallback: Sequence[Link], **options: Any) -> None:
        super().__init__(backend, **options)
        self._chain = list(fallback)
        self._built: list[Model] | None = None
        self._chain_lock = threading.Lock()

    @property
    def fallbacks(self) -> list[Model]:
        """The models of the chain, in order (built on first use)."""
        with self._chain_lock:
            if self._built is None:
                self._built = [m if isinstance(m, Model) else m() for m in self._chain]
            return self._built

    def generate(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        system: str | None = None,
        **backend_params: Any,
    ) -> Response:
        """Generate a reply to ``prompt`` (text or ``{"role", "content"}`` messages).

        Backend-specific parameters pass through with their prefix (``openai_logprobs=True``).
        """
        params: dict[str, Any] = dict(max_tokens=max_tokens, temperature=temperature, top_p=top_p)
        params.update(stop=stop, seed=seed, system=system, **backend_params)
        try:
            return super().generate(prompt, **params)
        except BackendError as error:
            if serving_fallback() is not None:
                raise
            last: BackendError = error
            for model in self.fallbacks:
                with serving_for(self.alias or self.spec, _reason(error)):
                    try:
                        return model.generate(prompt, **_portable(params, model))
                    except BackendError as exc:
                        last = exc
            if last is error:  # an empty chain
                raise
            raise last from error

    async def agenerate(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        system: str | None = None,
        **backend_params: Any,
    ) -> Response:
        """Generate a reply to ``prompt`` (text or ``{"role", "content"}`` messages).

        Backend-specific parameters pass through with their prefix (``openai_logprobs=True``).
        """
        params: dict[str, Any] = dict(max_tokens=max_tokens, temperature=temperature, top_p=top_p)
        params.update(stop=stop, seed=seed, system=system, **backend_params)
        try:
            return await super().agenerate(prompt, **params)
        except BackendError as error:
            if serving_fallback() is not None:
                raise
            last: BackendError = error
            for model in self.fallbacks:
                with serving_for(self.alias or self.spec, _reason(error)):
                    try:
                        return await model.agenerate(prompt, **_portable(params, model))
                    except BackendError as exc:
                        last = exc
            if last is error:  # an empty chain
                raise
            raise last from error


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {redact(str(error))}"[:300]


def _portable(params: dict[str, Any], model: Model) -> dict[str, Any]:
    """The call's parameters that ``model`` takes: the common ones, the system prompt and its own
    prefixed ones (``openai_logprobs`` does not follow a call to a local model)."""
    prefixes = tuple(f"{p}_" for p in (model.backend.wire, model.backend.config.name))
    return {
        k: v
        for k, v in params.items()
        if v is not None and (k in (*COMMON_PARAMS, "system") or k.startswith(prefixes))
    }
