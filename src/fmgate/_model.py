"""``Model``: the one interface over every backend, and the recording wrapper around each call."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal, overload

from ._errors import FmgateError, InvalidRequestError
from ._record import Access, CallRecord, Usage
from ._recording import CallTimer, Sink, as_backend_error
from ._types import (
    ChatRequest,
    Chunk,
    Completion,
    Delta,
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
    ) -> None:
        self._backend = backend
        self._alias = alias
        self._defaults = backend.default_params().merged(defaults or GenerationParams())
        self._system = system
        self._sinks = tuple(sinks)
        self._load_s = load_s
        self._access: Access | None = None
        self._prefixes = tuple(dict.fromkeys((backend.wire, backend.config.name)))

    @property
    def backend(self) -> Backend:
        return self._backend

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
        timer, request = self._begin(
            prompt,
            system,
            stream=False,
            params=dict(
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                stop=stop,
                seed=seed,
                **backend_params,
            ),
        )
        try:
            completion = self._backend.complete(request)
        except Exception as exc:
            raise self._failed(timer, exc) from exc
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
        timer, request = self._begin(
            prompt,
            system,
            stream=False,
            params=dict(
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                stop=stop,
                seed=seed,
                **backend_params,
            ),
        )
        try:
            completion = await self._backend.acomplete(request)
        except Exception as exc:
            raise self._failed(timer, exc) from exc
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
        return_exceptions: Literal[False] = False,
        **params: Any,
    ) -> list[Response]: ...

    @overload
    def generate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        return_exceptions: Literal[True],
        **params: Any,
    ) -> list[Response | FmgateError]: ...

    def generate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        return_exceptions: bool = False,
        **params: Any,
    ) -> list[Response] | list[Response | FmgateError]:
        """Generate for each prompt, ``concurrency`` at a time; results keep the prompts' order.

        With ``return_exceptions=True`` a failed prompt gives its error in place of a Response
        (every call is recorded either way); otherwise the first failure is raised.
        """
        _check_concurrency(concurrency)
        prompts = list(prompts)

        def one(prompt: Prompt) -> Response | FmgateError:
            try:
                return self.generate(prompt, **params)
            except FmgateError as exc:
                if return_exceptions:
                    return exc
                raise

        from concurrent.futures import ThreadPoolExecutor

        if concurrency == 1 or len(prompts) <= 1:
            return [one(p) for p in prompts]
        with ThreadPoolExecutor(max_workers=min(concurrency, len(prompts))) as pool:
            return list(pool.map(one, prompts))

    @overload
    async def agenerate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        return_exceptions: Literal[False] = False,
        **params: Any,
    ) -> list[Response]: ...

    @overload
    async def agenerate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        return_exceptions: Literal[True],
        **params: Any,
    ) -> list[Response | FmgateError]: ...

    async def agenerate_many(
        self,
        prompts: Sequence[Prompt],
        *,
        concurrency: int = 8,
        return_exceptions: bool = False,
        **params: Any,
    ) -> list[Response] | list[Response | FmgateError]:
        """Generate for each prompt, ``concurrency`` at a time; results keep the prompts' order.

        With ``return_exceptions=True`` a failed prompt gives its error in place of a Response
        (every call is recorded either way); otherwise the first failure is raised.
        """
        import asyncio

        _check_concurrency(concurrency)
        gate = asyncio.Semaphore(concurrency)

        async def one(prompt: Prompt) -> Response | FmgateError:
            async with gate:
                try:
                    return await self.agenerate(prompt, **params)
                except FmgateError as exc:
                    if return_exceptions:
                        return exc
                    raise

        return await asyncio.gather(*(one(p) for p in prompts))

    def embed(self, texts: str | Sequence[str]) -> Embeddings:
        """One embedding vector per text (embedding models only)."""
        batch = _texts(texts)
        timer = CallTimer(self, operation="embeddings", stream=False, params={})
        try:
            result = self._backend.embed(batch)
        except Exception as exc:
            raise self._failed(timer, exc) from exc
        record = timer.succeed(usage=result.usage, model_id=result.model_id, finish_reason=None)
        return Embeddings(result.vectors, result.usage, record)

    async def aembed(self, texts: str | Sequence[str]) -> Embeddings:
        """One embedding vector per text (embedding models only)."""
        batch = _texts(texts)
        timer = CallTimer(self, operation="embeddings", stream=False, params={})
        try:
            result = await self._backend.aembed(batch)
        except Exception as exc:
            raise self._failed(timer, exc) from exc
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
            merged = self._defaults.merged(make_params(params, self._prefixes))
            messages = normalize_messages(prompt, system if system is not None else self._system)
        except InvalidRequestError as exc:
            CallTimer(self, operation="chat", stream=stream, params={}).fail(exc)
            raise
        timer = CallTimer(self, operation="chat", stream=stream, params=merged.to_record())
        return timer, ChatRequest(messages, merged)

    def _failed(self, timer: CallTimer, exc: Exception) -> FmgateError:
        error = as_backend_error(exc, self._backend.provider)
        timer.fail(error)
        return error

    def _finish(self, timer: CallTimer, completion: Completion) -> Response:
        record = timer.succeed(
            usage=completion.usage,
            model_id=completion.model_id,
            finish_reason=completion.finish_reason,
        )
        return Response(completion.text, completion.finish_reason, completion.usage, record)


def _check_concurrency(concurrency: int) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidRequestError(f"concurrency must be a positive int, not {concurrency!r}.")


def _texts(texts: str | Sequence[str]) -> list[str]:
    batch = [texts] if isinstance(texts, str) else list(texts)
    if not batch or not all(isinstance(t, str) for t in batch):
        raise InvalidRequestError("embed() takes a str or a non-empty list of str.")
    return batch


class _StreamState:
    """What the sync and async streams share: text so far, and the record at the end."""

    def __init__(self, model: Model, timer: CallTimer, request: ChatRequest) -> None:
        self._model = model
        self._timer = timer
        self._request = request
        self._parts: list[str] = []
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._model_id: str | None = None
        self._response: Response | None = None
        self._started = False

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    @property
    def done(self) -> bool:
        return self._response is not None

    @property
    def response(self) -> Response:
        """The final Response, once the stream is consumed or closed."""
        if self._response is None:
            raise RuntimeError(
                "The stream is not finished: iterate it to the end or close it first."
            )
        return self._response

    @property
    def record(self) -> CallRecord:
        return self.response.record

    def _start(self) -> None:
        self._started = True
        self._timer.restart()

    def _take(self, delta: Delta) -> Chunk | None:
        if delta.usage is not None:
            self._usage = delta.usage
        if delta.finish_reason is not None:
            self._finish_reason = delta.finish_reason
        if delta.model_id is not None:
            self._model_id = delta.model_id
        if not delta.text:
            return None
        self._timer.first_token()
        self._timer.chunks += 1
        self._parts.append(delta.text)
        return Chunk(delta.text)

    def _complete(self, finish_reason: str | None = None) -> None:
        if self._response is not None:
            return
        usage = self._usage or Usage()
        reason = finish_reason or self._finish_reason
        record = self._timer.succeed(usage=usage, model_id=self._model_id, finish_reason=reason)
        self._response = Response(self.text, reason, usage, record)

    def _error(self, exc: Exception) -> FmgateError:
        error = as_backend_error(exc, self._model.backend.provider)
        record = self._timer.fail(error)
        self._response = Response(self.text, None, self._usage or Usage(), record)
        return error


CLIENT_CLOSED = "client_closed"


class Stream(_StreamState):
    """A streamed reply: iterate for :class:`Chunk` objects. Use as a context manager to close
    it early; ``.response``/``.record`` are there once it is consumed or closed."""

    def __init__(self, model: Model, timer: CallTimer, request: ChatRequest) -> None:
        super().__init__(model, timer, request)
        self._source: Iterator[Delta] | None = None

    def __iter__(self) -> Iterator[Chunk]:
        if self._started:
            raise RuntimeError("A Stream can be iterated once.")
        self._start()
        try:
            self._source = self._model.backend.stream(self._request)
            for delta in self._source:
                chunk = self._take(delta)
                if chunk is not None:
                    yield chunk
        except GeneratorExit:
            self.close()
            raise
        except Exception as exc:
            raise self._error(exc) from exc
        self._complete()

    def close(self) -> None:
        """Stop reading; the record says ``finish_reason="client_closed"``."""
        if self._response is not None:
            return
        if self._source is not None:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
        self._complete(CLIENT_CLOSED)

    def collect(self) -> Response:
        """Read the rest of the stream and return the final Response."""
        if not self._started:
            for _ in self:
                pass
        return self.response

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream(_StreamState):
    """A streamed reply: ``async for`` gives :class:`Chunk` objects. Use ``async with`` to close
    it early; ``.response``/``.record`` are there once it is consumed or closed."""

    def __init__(self, model: Model, timer: CallTimer, request: ChatRequest) -> None:
        super().__init__(model, timer, request)
        self._source: AsyncIterator[Delta] | None = None

    async def __aiter__(self) -> AsyncIterator[Chunk]:
        if self._started:
            raise RuntimeError("An AsyncStream can be iterated once.")
        self._start()
        try:
            self._source = self._model.backend.astream(self._request)
            async for delta in self._source:
                chunk = self._take(delta)
                if chunk is not None:
                    yield chunk
        except GeneratorExit:
            await self.aclose()
            raise
        except Exception as exc:
            raise self._error(exc) from exc
        self._complete()

    async def aclose(self) -> None:
        """Stop reading; the record says ``finish_reason="client_closed"``."""
        if self._response is not None:
            return
        if self._source is not None:
            aclose = getattr(self._source, "aclose", None)
            if aclose is not None:
                await aclose()
        self._complete(CLIENT_CLOSED)

    async def collect(self) -> Response:
        """Read the rest of the stream and return the final Response."""
        if not self._started:
            async for _ in self:
                pass
        return self.response

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def timed_build(build: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = build()
    return value, time.perf_counter() - t0
