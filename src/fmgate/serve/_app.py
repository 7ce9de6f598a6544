"""The ASGI app: OpenAI's routes over fmgate models.

``POST /v1/chat/completions`` (plain, or SSE with ``stream``), ``POST /v1/embeddings``,
``POST /v1/images/generations`` (models that draw: :mod:`._images`), ``GET /v1/models`` and
``GET /v1/models/{id}`` need a bearer key when the server has keys;
``GET /health`` does not. Every model call goes through the served :class:`~fmgate.Model`, so it
is recorded like any other call, tagged ``fmgate.served=true``.

A reply that is not the structured output asked for (``response_format``) is still answered, 200
with its text and finish reason: see :func:`unvalidated`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.responses import Response as HttpResponse
from starlette.routing import Route

from .._errors import FmgateError, OutputValidationError, UnsupportedFeatureError
from .._model import Model
from .._record import CallRecord, Usage
from .._tags import tagged
from .._types import Response
from . import _wire as wire
from ._auth import Keys
from ._batcher import Batcher, Job, QueueFull
from ._errors import ApiError, from_fmgate, internal, invalid, not_found, queue_full
from ._extension import cost_headers
from ._images import ImageCall, images_response, read_images_call

logger = logging.getLogger("fmgate.serve")

SERVED_TAGS: Mapping[str, str] = {"fmgate.served": "true"}
# The request field that asked for a feature the served model lacks.
_FEATURE_PARAMS: Mapping[str, str] = {"tools": "tools", "output": "response_format"}
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
Endpoint = Callable[[Request], Awaitable[HttpResponse]]


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int
    max_queue: int
    max_batch: int | None
    max_wait_s: float
    read_timeout_s: float = 15.0  # for a request's body, once its headers are in


class Json(JSONResponse):
    """A JSON answer that any string can go into: text UTF-8 cannot carry (a lone surrogate from
    a service behind the server) is escaped rather than failing the answer."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


class Served:
    """One model under the name clients use; local models that batch get a :class:`Batcher`."""

    def __init__(self, name: str, model: Model, limits: Limits) -> None:
        self.name = name
        self.model = model
        backend = model.backend
        self.local = backend.distribution == "local"
        # vLLM's request extensions the backend honours, as <wire>_<name> parameters
        self._extensions: frozenset[str] = getattr(backend, "vllm_extensions", frozenset())
        self._max_queue = limits.max_queue
        self._in_flight = 0
        # A pipeline in process draws one request at a time (its scheduler keeps state).
        self._drawing = asyncio.Lock() if self.local else contextlib.nullcontext()
        self.batcher: Batcher | None = None
        if backend.default_batch_size > 1:
            self.batcher = Batcher(
                model,
                max_batch=limits.max_batch or backend.default_batch_size,
                max_wait_s=limits.max_wait_s,
                max_queue=limits.max_queue,
                tags=SERVED_TAGS,
                streams=bool(getattr(backend, "streams_batches", False)),
            )

    def error(self, exc: FmgateError, call: wire.ChatCall | None = None) -> ApiError:
        backend = self.model.backend
        asked = call.params.get("max_tokens") if call is not None else None
        error = from_fmgate(
            exc,
            served=self.name,
            model_id=backend.model,
            local=self.local,
            window=lambda: self.model.access.context_window,
            completion_tokens=asked or backend.default_params().max_tokens,
        )
        if isinstance(exc, UnsupportedFeatureError):
            if exc.feature == "images":
                return invalid(
                    f"The model `{self.name}` does not read images: send text only, or ask a "
                    "model served here that reads images.",
                    "messages",
                )
            error.param = _FEATURE_PARAMS.get(exc.feature)
        return error

    def params(self, call: wire.ChatCall) -> dict[str, Any]:
        """The call's parameters for this model; ``ignore_eos`` where the backend honours it
        (elsewhere it is accepted and ignored: the model behind decides when to stop)."""
        params = dict(call.params)
        if call.ignore_eos and "ignore_eos" in self._extensions:
            params[f"{self.model.backend.wire}_ignore_eos"] = True
        if call.tools:
            params.update(tools=call.tools, tool_choice=call.tool_choice)
        if call.output is not None:
            params["output"] = call.output
        return params

    async def generate(self, call: wire.ChatCall) -> Response:
        if self.batcher is not None:
            item = await self._submit(call, stream=False).items.get()
            if isinstance(item, FmgateError):
                return unvalidated(item)
            assert isinstance(item, Response)
            return item
        async with self._slot():
            with tagged(SERVED_TAGS):
                try:
                    return await self.model.agenerate(call.messages, **self.params(call))
                except OutputValidationError as exc:
                    return unvalidated(exc)

    async def events(self, call: wire.ChatCall) -> AsyncGenerator[str | Response, None]:
        """The reply's text pieces as they come, then its Response."""
        if self.batcher is not None and self.batcher.streams:
            job = self._submit(call, stream=True)
            sent = ""
            try:
                while True:
                    text, item = await _next_chunk(job)
                    if text:
                        sent += text
                        yield text
                    if item is not None:
                        break
            finally:
                job.closed = not job.done
            if isinstance(item, FmgateError):
                item = unvalidated(item)
            # Text held back while it could still change (a character cut in two by the last
            # token) is final now.
            if len(item.text) > len(sent) and item.text.startswith(sent):
                yield item.text[len(sent) :]
            yield item
            return
        async with self._slot():
            with tagged(SERVED_TAGS):
                stream = self.model.astream(call.messages, **self.params(call))
            async with stream:  # closed early (the client left): recorded as client_closed
                try:
                    async for piece in stream:
                        yield piece.text
                except OutputValidationError as exc:
                    yield unvalidated(exc)
                    return
            yield stream.response

    async def embed(self, texts: list[str]) -> Any:
        async with self._slot():
            with tagged(SERVED_TAGS):
                return await self.model.aembed(texts)

    async def draw(self, call: ImageCall) -> tuple[Any, CallRecord]:
        """The Images API's answer, and the call's record."""
        if "image" not in self.model.tasks:
            raise invalid(
                f"The model `{self.name}` does not generate images: ask a model served here "
                "that draws.",
                "model",
            )
        async with self._slot(), self._drawing:
            with tagged(SERVED_TAGS):
                images = await self.model.agenerate_image(call.prompt, **call.options)
        body = await asyncio.to_thread(images_response, images)  # PNG encoding off the loop
        return body, images.record

    async def facts(self, created: int) -> dict[str, Any]:
        """The model's object on /v1/models, with its access facts (read off the event loop:
        a local model's profile may read files the first time)."""
        access = await asyncio.to_thread(lambda: self.model.access)
        return wire.model_object(self.name, created, access, self.model.backend.distribution)

    def _submit(self, call: wire.ChatCall, *, stream: bool) -> Job:
        assert self.batcher is not None
        job = Job(call.messages, self.params(call), stream=stream)
        try:
            self.batcher.submit(job)
        except QueueFull:
            raise queue_full() from None
        return job

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Calls that do not go through the batcher are bounded by ``max_queue`` as well."""
        if self._in_flight >= self._max_queue:
            raise queue_full()
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1


def unvalidated(error: FmgateError) -> Response:
    """A reply that does not validate as the ``response_format`` asked for, answered as it came:
    200, its text, its finish reason and usage (the server's record says it failed validation).
    ``error`` is raised again if it is any other error.

    This is what OpenAI and vLLM do: they check nothing after decoding (a reply cut by
    ``max_tokens`` comes back 200 with ``finish_reason: "length"`` and half a JSON value), and
    the clients check: the openai SDK's ``parse()`` raises LengthFinishReasonError or pydantic's
    ValidationError with the text in hand, LangChain its OutputParserException. A 5xx instead
    would be retried by those SDKs (twice by default), paying again for a reply the same prompt
    will likely repeat, and would lose the text and the usage; a 4xx would blame the request.
    """
    if not isinstance(error, OutputValidationError) or error.record is None:
        raise error
    record = error.record
    return Response(error.text, record.outcome.finish_reason, record.usage, record)


class Server:
    """The routes, over the served models."""

    def __init__(self, models: Mapping[str, Model], keys: Keys, limits: Limits) -> None:
        self.models = {name: Served(name, model, limits) for name, model in models.items()}
        self._keys = keys
        self._limits = limits
        self._created = wire.now()

    def app(self) -> Starlette:
        routes = [
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/models", _answers(self.list_models), methods=["GET"]),
            Route("/v1/models/{name:path}", _answers(self.get_model), methods=["GET"]),
            Route("/v1/chat/completions", _answers(self.chat), methods=["POST"]),
            Route("/v1/embeddings", _answers(self.embeddings), methods=["POST"]),
            Route("/v1/images/generations", _answers(self.images), methods=["POST"]),
        ]
        handlers = {404: _http_error, 405: _http_error}
        return Starlette(routes=routes, lifespan=self._lifespan, exception_handlers=handlers)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        batchers = [s.batcher for s in self.models.values() if s.batcher is not None]
        for batcher in batchers:
            batcher.start()
        try:
            yield
        finally:
            for batcher in batchers:
                await batcher.stop()

    # -- routes ---------------------------------------------------------------------------------

    async def health(self, request: Request) -> HttpResponse:
        return Json({"status": "ok"})

    async def list_models(self, request: Request) -> HttpResponse:
        self._keys.check(request.headers.get("authorization"))
        data = [await served.facts(self._created) for served in self.models.values()]
        return Json({"object": "list", "data": data})

    async def get_model(self, request: Request) -> HttpResponse:
        self._keys.check(request.headers.get("authorization"))
        name = request.path_params["name"]
        if name not in self.models:
            raise not_found(name)
        return Json(await self.models[name].facts(self._created))

    async def chat(self, request: Request) -> HttpResponse:
        self._keys.check(request.headers.get("authorization"))
        call = wire.read_chat(await self._body(request))
        served = self._find(call.model)
        ident, created = wire.completion_id(), wire.now()
        try:
            if not call.stream:
                reply = await served.generate(call)
                answer = wire.completion(ident, created, call.model, reply)
                return Json(answer, headers=cost_headers(reply.record))
            events = served.events(call)
            try:  # the status is known only once the first piece (or the error) is
                first = await anext(events)
            except BaseException:
                await events.aclose()
                raise
        except FmgateError as exc:
            raise served.error(exc, call) from exc
        body = _sse(served, events, first, Chunks(ident, created, call))
        return EventStream(body, media_type="text/event-stream", headers=_SSE_HEADERS)

    async def embeddings(self, request: Request) -> HttpResponse:
        self._keys.check(request.headers.get("authorization"))
        call = wire.read_embeddings(await self._body(request))
        served = self._find(call.model)
        try:
            result = await served.embed(call.texts)
        except FmgateError as exc:
            raise served.error(exc) from exc
        body = wire.embeddings(call.model, result.vectors, result.usage, call.base64, result.record)
        return Json(body, headers=cost_headers(result.record))

    async def images(self, request: Request) -> HttpResponse:
        self._keys.check(request.headers.get("authorization"))
        call = read_images_call(await self._body(request))
        served = self._find(call.model)
        try:
            body, record = await served.draw(call)
        except FmgateError as exc:
            raise served.error(exc) from exc
        return Json(body, headers=cost_headers(record))

    # -- helpers --------------------------------------------------------------------------------

    def _find(self, name: str) -> Served:
        served = self.models.get(name)
        if served is None:
            raise not_found(name)
        return served

    async def _body(self, request: Request) -> dict[str, Any]:
        """The JSON object sent, read no further than ``max_body_bytes`` and for no longer than
        ``read_timeout_s``: a client that trickles its body cannot hold the server's attention
        (and a connection) for ever. Every string in it must be valid Unicode."""
        limit = self._limits.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        try:
            async with asyncio.timeout(self._limits.read_timeout_s):
                raw = await _read(request, limit)
        except TimeoutError:
            raise ApiError(
                408,
                f"The request body did not arrive within {self._limits.read_timeout_s:g} s.",
                code="request_timeout",
                headers={"connection": "close"},
            ) from None
        data = _parse(raw)
        wire.check_unicode(data)
        return data


async def _read(request: Request, limit: int) -> bytearray:
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > limit:
            raise _too_large(limit)
    return raw


def _parse(raw: bytearray) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise invalid(
            "We could not parse the JSON body of your request: send a JSON object."
        ) from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.")
    return data


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"The request body is larger than this server accepts ({limit} bytes).",
        code="request_too_large",
    )


_UNCOUNTED = Usage()


@dataclass(frozen=True, slots=True)
class Chunks:
    """The chunks of one streamed reply, as the request asked for them."""

    ident: str
    created: int
    call: wire.ChatCall

    def chunk(
        self,
        delta: dict[str, Any],
        reason: str | None = None,
        used: Usage = _UNCOUNTED,
        record: CallRecord | None = None,
    ) -> bytes:
        """A choice chunk. With ``continuous_usage_stats`` each has a usage object: its counts
        are null (unknown) until the reply's end, when the model's own counts are known (and,
        from the call's ``record``, its cost)."""
        call = self.call
        data = wire.chunk(
            self.ident,
            self.created,
            call.model,
            delta,
            reason,
            include_usage=call.include_usage,
            used=used if call.continuous_usage else None,
            record=record,
        )
        return _event(data)

    def usage(self, used: Usage, record: CallRecord) -> bytes:
        chunk = wire.usage_chunk(self.ident, self.created, self.call.model, used, record)
        return _event(chunk)


async def _sse(
    served: Served,
    events: AsyncGenerator[str | Response, None],
    first: str | Response,
    chunks: Chunks,
) -> AsyncIterator[bytes]:
    """OpenAI's chunk sequence: the role, the content pieces, the tool calls (each whole, in one
    chunk: the backend assembles them), the finish reason, the usage
    (``include_usage``), ``[DONE]``. A failure after the first byte becomes an error event."""
    item = first
    try:
        yield chunks.chunk({"role": "assistant", "content": ""})
        while isinstance(item, str):
            yield chunks.chunk({"content": item})
            item = await anext(events)
        for index, call in enumerate(item.tool_calls):
            yield chunks.chunk(wire.tool_call_delta(index, call))
        reason = wire.finish_reason(item.finish_reason, bool(item.tool_calls))
        yield chunks.chunk({}, reason, item.usage, item.record)
        if chunks.call.include_usage:
            yield chunks.usage(item.usage, item.record)
        yield b"data: [DONE]\n\n"
    except FmgateError as exc:
        yield _event(served.error(exc, chunks.call).body())
    except StopAsyncIteration:
        yield _event(internal().body())
    finally:
        await events.aclose()


def _event(data: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


class EventStream(StreamingResponse):
    """A streamed response that closes its source however it ends (the client may leave)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()


def _answers(endpoint: Endpoint) -> Endpoint:
    """Errors as OpenAI's error object; anything unexpected is logged and answered 500."""

    async def answer(request: Request) -> HttpResponse:
        try:
            return await endpoint(request)
        except ApiError as exc:
            return _error_response(exc)
        except Exception:
            logger.exception("fmgate serve: %s %s failed", request.method, request.url.path)
            return _error_response(internal())

    return answer


def _error_response(exc: ApiError) -> HttpResponse:
    return Json(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> HttpResponse:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = "Not found." if status == 404 else "Method not allowed."
    return _error_response(ApiError(status, f"{message} ({request.method} {request.url.path})"))


async def _next_chunk(job: Job) -> tuple[str, Response | FmgateError | None]:
    """The text pieces that reached ``job`` (waiting for one), joined, and its end if it came.
    Pieces that came while the last chunk was being sent go out as one chunk: a busy server sends
    fewer, larger chunks instead of falling behind."""
    item = await job.items.get()
    text = ""
    while isinstance(item, str):
        text += item
        if job.items.empty():
            return text, None
        item = job.items.get_nowait()
    return text, item
