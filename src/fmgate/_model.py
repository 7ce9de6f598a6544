"""``Model``: the one interface over every backend, and the recording wrapper around each call."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, overload

from . import _retry as retry
from ._batching import Batch, per_prompt
from ._errors import FmgateError, InvalidRequestError, OfflineError
from ._fallback import Fallbacks
from ._offline import offline
from ._record import Access
from ._recording import CallTimer, Sink, as_backend_error
from ._retry import NO_RETRIES, RetryPolicy
from ._stream import AsyncStream, Stream
from ._tags import tagged
from ._types import (
    ChatRequest,
    Completion,
    Embeddings,
    GenerationParams,
    Prompt,
    Response,
    make_params,
    normalize_messages,
)
from .backends._base import Backend


class Model:
    """A model behind one interface, whatever runs it. Build it with :func:`fmgate.load`.

    Every call returns (or, for streams, ends with) a :class:`CallRecord`; failed calls are
    recorded too, then raised as an :class:`fmgate.FmgateError`.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        alias: str | None = None,
        defaults: GenerationParams | None = None,
        system: str | None = None,
        sinks: Sequence[Sink] = (),
        load_s: float | None = None,
        retry: RetryPolicy | None = None,
        fallback: Sequence[str | Model] = (),
        config: Any = None,
    ) -> None:
        self._backend = backend
        remote = backend.distribution != "local"
        # Local failures (out of memory, a bad input) do not heal with time: no retries there.
        self._retry = retry or (RetryPolicy() if remote else NO_RETRIES)
        self._fallback = Fallbacks(fallback, config) if fallback else None
        self._alias = alias
        self._defaults = backend.default_params().merged(defaults or GenerationParams())
        self._system = system
        self._sinks = tuple(sinks)
        self._load_s = load_s
        self._load_lock = threading.Lock()
        self._access: Access | None = None
        self._prefixes = tuple(dict.fromkeys((backend.wire, backend.config.name)))

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def retry(self) -> RetryPolicy:
        return self._retry

    @property
    def alias(self) -> str | None:
        return self._alias

    @property
    def spec(self) -> str:
        return f"{self._backend.config.name}:{self._backend.model}"

    @property
    def sinks(self) -> tuple[Sink, ...]:
        return self._sinks

    @property
    def access(self) -> Access:
        """The accessibility profile (open weights, licence, network, key, ...), without a call."""
        if self._access is None:
            self._access = self._backend.access()
        return self._access

    def take_load_s(self) -> float | None:
        """The cold-start time, reported once: on the first call after the model was built."""
        with self._load_lock:
            load_s, self._load_s = self._load_s, None
        return load_s

    def __repr__(self) -> str:
        name = f"{self._alias!r} -> " if self._alias else ""
        return f"<Model {name}{self.spec}>"

    # -- calls ----------------------------------------------------------------------------------

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
        params = dict(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            **backend_params,
        )
        timer, request = self._begin(prompt, system, stream=False, params=params)
        try:
            completion = retry.call(
                self._retry, timer, lambda: self._backend.complete(request), self._backend.provider
            )
        except Exception as exc:
            error = self._failed(timer, exc)
            if self._fallback is not None and self._fallback.applies(error):
                return self._fallback.generate(self, error, prompt, system, params)
            if error is exc:
                raise  # already mapped by the backend, with the SDK's exception as its cause
            raise error from exc
        except BaseException as exc:  # cancelled or interrupted: the request may have gone out
            timer.fail(exc)
            raise
        return self._finish(timer, completion)

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
        params = dict(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            **backend_params,
        )
        timer, request = self._begin(prompt, system, stream=False, params=params)
        try:
            completion = await retry.acall(
                self._retry, timer, lambda: self._backend.acomplete(request), self._backend.provider
            )
        except Exception as exc:
            error = self._failed(timer, exc)
            if self._fallback is not None and self._fallback.applies(error):
                return await self._fallback.agenerate(self, error, prompt, system, params)
            if error is exc:
                raise  # already mapped by the backend, with the SDK's exception as its cause
            raise error from exc
        except BaseException as exc:  # cancelled or interrupted: the request may have gone out
            timer.fail(exc)
            raise
        return self._finish(timer, completion)

    def stream(
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
    ) -> Stream:
        """Stream a reply as :class:`Chunk` objects; afterwards ``.response`` and ``.record``.

        The request is sent when iteration starts; TTFT runs from then to the first text.
        """
        timer, request = self._begin(
            prompt,
            system,
            stream=True,
            params=dict(
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                stop=stop,
                seed=seed,
                **backend_params,
            ),
        )
        return Stream(self, timer, request)

    def astream(
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
    ) -> AsyncStream:
        """Stream a reply as :class:`Chunk` objects; afterwards ``.response`` and ``.record``.

        The request is sent when iteration starts; TTFT runs from then to the first text.
        """
        timer, request = self._begin(
            prompt,
            system,
            stream=True,
            params=dict(
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                stop=stop,
                seed=seed,
                **backend_params,
            ),
        )
        return AsyncStream(self, timer, request)

    @overload
    def generate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        batch_size: int | None = None,
        return_exceptions: Literal[False] = False,
        tags: Sequence[Mapping[str, str]] | None = None,
        **params: Any,
    ) -> list[Response]: ...

    @overload
    def generate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        batch_size: int | None = None,
        return_exceptions: Literal[True],
        tags: Sequence[Mapping[str, str]] | None = None,
        **params: Any,
    ) -> list[Response | FmgateError]: ...

    def generate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        batch_size: int | None = None,
        return_exceptions: bool = False,
        tags: Sequence[Mapping[str, str]] | None = None,
        **params: Any,
    ) -> list[Response] | list[Response | FmgateError]:
        """Generate for each prompt; results keep the prompts' order, one record per prompt.

        Backends that batch (local models) run ``batch_size`` prompts per forward pass (default:
        the backend's maximum); the others make ``concurrency`` calls at a time. With
        ``return_exceptions=True`` a failed prompt gives its error in place of a Response (every
        call is recorded either way); otherwise the first failure is raised. ``tags``, one
        mapping per prompt, label each prompt's record on top of the tags in force.
        """
        prompts = _prompt_list(prompts)
        labels = per_prompt(tags, len(prompts))
        size = self._batch_size(concurrency, batch_size)
        if size > 1:
            results: list[Response | FmgateError] = []
            for start in range(0, len(prompts), size):
                span = slice(start, start + size)
                batch = self._prepare(prompts[span], params, labels[span])
                if batch.requests:
                    batch.settle(self._batch_call(self._backend.complete_batch, batch))
                results.extend(batch.results(return_exceptions))
            return results

        def one(prompt: Prompt, label: Mapping[str, str]) -> Response | FmgateError:
            try:
                with tagged(label):
                    return self.generate(prompt, **params)
            except FmgateError as exc:
                if return_exceptions:
                    return exc
                raise

        from concurrent.futures import ThreadPoolExecutor
        from contextvars import copy_context

        if concurrency == 1 or len(prompts) <= 1:
            return [one(p, label) for p, label in zip(prompts, labels, strict=True)]
        with ThreadPoolExecutor(max_workers=min(concurrency, len(prompts))) as pool:
            # Each call runs in a copy of the caller's context: its tags reach the records.
            futures = [
                pool.submit(copy_context().run, one, p, label)
                for p, label in zip(prompts, labels, strict=True)
            ]
            return [f.result() for f in futures]

    @overload
    async def agenerate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        batch_size: int | None = None,
        return_exceptions: Literal[False] = False,
        tags: Sequence[Mapping[str, str]] | None = None,
        **params: Any,
    ) -> list[Response]: ...

    @overload
    async def agenerate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        batch_size: int | None = None,
        return_exceptions: Literal[True],
        tags: Sequence[Mapping[str, str]] | None = None,
        **params: Any,
    ) -> list[Response | FmgateError]: ...

    async def agenerate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        batch_size: int | None = None,
        return_exceptions: bool = False,
        tags: Sequence[Mapping[str, str]] | None = None,
        **params: Any,
    ) -> list[Response] | list[Response | FmgateError]:
        """Generate for each prompt; results keep the prompts' order, one record per prompt.

        Backends that batch (local models) run ``batch_size`` prompts per forward pass (default:
        the backend's maximum); the others make ``concurrency`` calls at a time. With
        ``return_exceptions=True`` a failed prompt gives its error in place of a Response (every
        call is recorded either way); otherwise the first failure is raised. ``tags``, one
        mapping per prompt, label each prompt's record on top of the tags in force.
        """
        import asyncio

        prompts = _prompt_list(prompts)
        labels = per_prompt(tags, len(prompts))
        size = self._batch_size(concurrency, batch_size)
        if size > 1:
            results: list[Response | FmgateError] = []
            for start in range(0, len(prompts), size):
                span = slice(start, start + size)
                batch = self._prepare(prompts[span], params, labels[span])
                if batch.requests:
                    batch.settle(await self._abatch_call(batch))
                results.extend(batch.results(return_exceptions))
            return results
        gate = asyncio.Semaphore(concurrency)

        async def one(prompt: Prompt, label: Mapping[str, str]) -> Response | FmgateError:
            async with gate:
                try:
                    with tagged(label):
                        return await self.agenerate(prompt, **params)
                except FmgateError as exc:
                    if return_exceptions:
                        return exc
                    raise

        return await asyncio.gather(*(one(p, t) for p, t in zip(prompts, labels, strict=True)))

    def embed(self, texts: str | Sequence[str]) -> Embeddings:
        """One embedding vector per text (embedding models only)."""
        timer = CallTimer(self, operation="embeddings", stream=False, params={})
        try:
            self._check_online()
            batch = _texts(texts)
        except (InvalidRequestError, OfflineError) as exc:
            timer.fail(exc, sent=False)
            raise
        try:
            result = self._backend.embed(batch)
        except Exception as exc:
            error = self._failed(timer, exc)
            if error is exc:
                raise  # already mapped by the backend, with the SDK's exception as its cause
            raise error from exc
        except BaseException as exc:  # cancelled or interrupted: the request may have gone out
            timer.fail(exc)
            raise
        record = timer.succeed(usage=result.usage, model_id=result.model_id, finish_reason=None)
        return Embeddings(result.vectors, result.usage, record)

    async def aembed(self, texts: str | Sequence[str]) -> Embeddings:
        """One embedding vector per text (embedding models only)."""
        timer = CallTimer(self, operation="embeddings", stream=False, params={})
        try:
            self._check_online()
            batch = _texts(texts)
        except (InvalidRequestError, OfflineError) as exc:
            timer.fail(exc, sent=False)
            raise
        try:
            result = await self._backend.aembed(batch)
        except Exception as exc:
            error = self._failed(timer, exc)
            if error is exc:
                raise  # already mapped by the backend, with the SDK's exception as its cause
            raise error from exc
        except BaseException as exc:  # cancelled or interrupted: the request may have gone out
            timer.fail(exc)
            raise
        record = timer.succeed(usage=result.usage, model_id=result.model_id, finish_reason=None)
        return Embeddings(result.vectors, result.usage, record)

    def close(self) -> None:
        self._backend.close()

    async def aclose(self) -> None:
        await self._backend.aclose()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Model:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the recording wrapper ------------------------------------------------------------------

    def _begin(
        self, prompt: Prompt, system: str | None, *, stream: bool, params: dict[str, Any]
    ) -> tuple[CallTimer, ChatRequest]:
        try:
            self._check_online()
            merged = self._defaults.merged(make_params(params, self._prefixes))
            messages = normalize_messages(prompt, system if system is not None else self._system)
        except (InvalidRequestError, OfflineError) as exc:
            CallTimer(self, operation="chat", stream=stream, params={}).fail(exc, sent=False)
            raise
        timer = CallTimer(self, operation="chat", stream=stream, params=merged.to_record())
        return timer, ChatRequest(messages, merged)

    def _check_online(self) -> None:
        """In offline mode, refuse before sending unless the model is known not to need the
        network (in-process, or a server on loopback)."""
        if offline() and self.access.requires_network is not False:
            where = self._backend.endpoint or "an endpoint fmgate cannot place"
            raise OfflineError(
                f"{self.spec} is reached over the network ({where}) and FMGATE_OFFLINE is set: "
                "nothing was sent. Unset FMGATE_OFFLINE, or use a local model or a server on "
                "loopback (base_url http://127.0.0.1:...)."
            )

    def _batch_size(self, concurrency: int, batch_size: int | None) -> int:
        _check_positive("concurrency", concurrency)
        if batch_size is not None:
            _check_positive("batch_size", batch_size)
        if self._backend.default_batch_size <= 1:
            return 1
        return batch_size or self._backend.default_batch_size

    def _prepare(
        self, prompts: Sequence[Prompt], params: dict[str, Any], labels: Sequence[Mapping[str, str]]
    ) -> Batch:
        """Check and time each prompt of a batch; refused prompts get their error in place."""
        params = dict(params)
        system = params.pop("system", None)
        batch = Batch(self, len(prompts))
        for i, (prompt, label) in enumerate(zip(prompts, labels, strict=True)):
            try:
                with tagged(label):  # the timer takes the tags in force as it is made
                    timer, request = self._begin(prompt, system, stream=False, params=params)
            except InvalidRequestError as exc:
                batch.slots[i] = exc
                continue
            batch.add(i, timer, request)
        for timer in batch.timers:
            timer.in_batch(len(batch.timers))
        return batch

    def _batch_call(
        self, run: Callable[[list[ChatRequest]], list[Completion | FmgateError]], batch: Batch
    ) -> list[Completion | FmgateError] | FmgateError:
        try:
            return run(batch.requests)
        except Exception as exc:
            return as_backend_error(exc, self._backend.provider)

    async def _abatch_call(self, batch: Batch) -> list[Completion | FmgateError] | FmgateError:
        try:
            return await self._backend.acomplete_batch(batch.requests)
        except Exception as exc:
            return as_backend_error(exc, self._backend.provider)

    def _failed(self, timer: CallTimer, exc: Exception) -> FmgateError:
        error = as_backend_error(exc, self._backend.provider)
        timer.fail(error)
        return error

    def _finish(self, timer: CallTimer, completion: Completion) -> Response:
        record = timer.succeed(
            usage=completion.usage,
            model_id=completion.model_id,
            finish_reason=completion.finish_reason,
            first_token_at=completion.first_token_at,
        )
        return Response(completion.text, completion.finish_reason, completion.usage, record)


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(f"{name} must be a positive int, not {value!r}.")


def _prompt_list(prompts: Sequence[Prompt]) -> list[Prompt]:
    if isinstance(prompts, str | bytes):  # a str is a Sequence too: one call per character
        raise InvalidRequestError(
            "generate_many() takes a list of prompts, not one str: use generate() for one prompt, "
            "or pass [prompt]."
        )
    return list(prompts)


def _texts(texts: str | Sequence[str]) -> list[str]:
    batch = [texts] if isinstance(texts, str) else list(texts)
    if not batch or not all(isinstance(t, str) for t in batch):
        raise InvalidRequestError("embed() takes a str or a non-empty list of str.")
    return batch
