"""The OpenAI wire: Chat Completions and Embeddings, for OpenAI and every server that speaks them.

OpenAI-compatible providers (Groq, Together, vLLM, Ollama, the HF router, ...) are rows of
``providers.toml`` over this one module. The official ``openai`` SDK builds, authenticates and
sends each request; this module reads the bodies itself. The SDK's typed path costs more than the
loopback round trip it wraps (``maybe_transform`` over the request TypedDicts, pydantic models for
the response and for every stream chunk), and its sync stream closes the response right after
``[DONE]`` without reading the end of the chunked body, so the connection cannot be reused. The
documented ``client.post(path, cast_to=httpx2.Response, ...)`` keeps the SDK's auth, headers,
timeouts and error classes, and hands back the raw response.

Tools and structured output (``tools``, ``tool_choice``, ``response_format``, tool messages, and
the tool calls read back whole or assembled from a stream) are translated in ``_openai_tools``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import httpx2
import openai

from .._errors import (
    AuthenticationError,
    BackendError,
    BadRequestError,
    ConfigurationError,
    ConnectionError,
    ContextLengthError,
    InvalidRequestError,
    MalformedResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TimeoutError,
)
from .._image_gen import ImageRequest, ImageResult
from .._offline import offline
from .._providers import host_port, is_loopback, remote_access
from .._record import Access, Task, Usage
from .._secrets import Secret, key_from_env, redact, redact_url
from .._types import ChatRequest, Completion, Delta
from ._base import Backend, BackendConfig, EmbeddingResult
from ._deadline import Clock, until
from ._http import (
    ClosedWhenCollected,
    EventReader,
    PerLoop,
    aevents,
    events,
    json_body,
    never_connected,
    retry_after_s,
    sdk_client,
    too_large,
    try_clock,
)
from ._openai_images import (
    IMAGES_PATH,
    OPENAI_IMAGE_PARAMS,
    image_body,
    images_result,
    is_image_model,
)
from ._openai_tools import (
    BadPayload,
    StreamedCalls,
    finish_reason,
    read_calls,
    to_messages,
    tool_fields,
)
from ._server_facts import RATE_SETTING, Span, self_hosted

_CHAT = "/chat/completions"
_EMBEDDINGS = "/embeddings"
# Bearer auth only, as the SDK's own chat.completions.create sends it (never the admin key).
_OPTIONS: openai.RequestOptions = {"security": {"bearer_auth": True}}
# The SDK refuses an empty key; local servers ignore the value (vLLM's docs use "EMPTY").
_NO_KEY = "EMPTY"
# Rows that are OpenAI's own API: only OpenAI should receive the OPENAI_ORG_ID / OPENAI_PROJECT_ID
# headers the SDK reads from the environment.
_OPENAI_ROWS = frozenset({"openai"})
# Body keys fmgate sets itself: an openai_<key> parameter may not replace them.
_RESERVED = frozenset({"model", "messages", "stream", "stream_options"})

_TEXT_FEATURES = frozenset({"tools", "output"})
_FEATURES = _TEXT_FEATURES | {"images"}

_CHAT_TASKS: frozenset[Task] = frozenset({"chat", "embed"})

_Client = TypeVar("_Client", openai.OpenAI, openai.AsyncOpenAI)


class OpenAIBackend(Backend):
    """Chat completions and embeddings over the OpenAI HTTP API or a compatible server."""

    wire = "openai"
    library = "openai"
    supports_embeddings = True
    # strict_tools=False: never mark tools "strict", for a server that refuses the field.
    # hardware_usd_per_hour: what a self-hosted server costs, to price its calls' busy time.
    settings: ClassVar[dict[str, tuple[type, ...]]] = {
        "strict_tools": (bool,),
        RATE_SETTING: (float, int, str, Decimal),
    }

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._base_url = _base_url(config)
        self._endpoint = host_port(self._base_url)
        self._key = _read_key(config)
        # "max_completion_tokens" for OpenAI (it deprecated max_tokens), "max_tokens" elsewhere.
        self._max_tokens_field = config.provider.max_tokens_param
        self._strict_tools = bool(config.options.get("strict_tools", True))
        self._server = self_hosted(config, self._endpoint, self._base_url)
        self._client = _build(openai.OpenAI, config, self._base_url, self._key)
        # Built without a reference to the backend, which is then freed (and its clients closed)
        # as soon as it is dropped.
        build_async = functools.partial(
            _build, openai.AsyncOpenAI, config, self._base_url, self._key
        )
        self._aclients = PerLoop(build_async, openai.AsyncOpenAI.close, self.add_setup_s)

    def __repr__(self) -> str:
        return f"<OpenAIBackend {self.config.name}:{self.model} at {self.endpoint}>"

    # -- facts ----------------------------------------------------------------------------------

    @property
    def features(self) -> frozenset[str]:  # type: ignore[override]
        """Tools, structured output and images, unless the provider's row says its API takes no
        images (DeepSeek's): then fmgate refuses them before anything is sent. Elsewhere a model
        that cannot read images is refused by the server, as a BadRequestError."""
        return _FEATURES if self.config.provider.images else _TEXT_FEATURES

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def tasks(self) -> frozenset[Task]:
        """OpenAI's image models (``gpt-image-*``, ``dall-e-*``) draw and do nothing else; a
        row whose images endpoint takes ``image_params`` (Together's) offers drawing for every
        model, as chat and embeddings are offered, and its server refuses a model that cannot."""
        if is_image_model(self.model):
            return frozenset({"image"})
        if self.config.provider.image_params is not None:
            return _CHAT_TASKS | {"image"}
        return _CHAT_TASKS

    @property
    def price_provider(self) -> str | None:
        """The row's genai-prices id; a ``{route}`` template takes the model id's ``:route``."""
        template = self.config.provider.prices_provider
        if template is None or "{route}" not in template:
            return template
        model, _, route = self.model.rpartition(":")
        return template.format(route=route) if model and route else None

    def access(self) -> Access:
        """The row's facts; for a self-hosted server, what the server says over them (asked
        once, now if no call has asked yet: see :mod:`._server_facts`)."""
        row = remote_access(
            self.config.provider, self.model, self._base_url, has_key=self._key is not None
        )
        if self._server is None:
            return row
        if not offline() or is_loopback(self._base_url):
            self._learn()
        return self._server.access(row)

    # -- chat -----------------------------------------------------------------------------------

    def complete(self, request: ChatRequest) -> Completion:
        self._learn()
        with self._span() as span:
            data = json_body(self._post(_CHAT, self._body(request, stream=False)), self.config.name)
        return self._priced(_completion(data, self.config.name), span, _extension(data))

    async def acomplete(self, request: ChatRequest) -> Completion:
        await self._alearn()
        with self._span() as span:
            response = await self._apost(_CHAT, self._body(request, stream=False))
            data = json_body(response, self.config.name)
        return self._priced(_completion(data, self.config.name), span, _extension(data))

    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        self._learn()
        clock = try_clock(self.config.timeout, stream=True)
        with self._span() as span:
            response = self._post(_CHAT, self._body(request, stream=True), clock=clock)
            reader = self._reader(response)
            yield from events(response, reader, clock, self.config.timeout)
        cost = span.cost(reader.extension) if span is not None else None
        if cost is not None:
            yield Delta(cost=cost)

    async def astream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        await self._alearn()
        clock = try_clock(self.config.timeout, stream=True)
        with self._span() as span:
            response = await self._apost(_CHAT, self._body(request, stream=True), clock=clock)
            reader = self._reader(response)
            deltas = aevents(response, reader, clock, self.config.timeout)
            async with contextlib.aclosing(deltas):
                async for delta in deltas:
                    yield delta
        cost = span.cost(reader.extension) if span is not None else None
        if cost is not None:
            yield Delta(cost=cost)

    # -- a self-hosted server: its facts, and its calls' cost -----------------------------------

    def _span(self) -> contextlib.AbstractContextManager[Span | None]:
        return self._server.span() if self._server is not None else contextlib.nullcontext()

    @staticmethod
    def _priced(completion: Completion, span: Span | None, extension: Any) -> Completion:
        cost = span.cost(extension) if span is not None else None
        return dataclasses.replace(completion, cost=cost) if cost is not None else completion

    def _learn(self) -> None:
        """Ask a self-hosted server what it serves, once; its time is this call's setup.
        Calls that come while it is asked wait for the answer, so their records have it."""
        if self._server is None:
            return
        if self._server.claim():
            self.add_setup_s(self._server.learn(self._client, self.model))
        else:
            self._server.settled()

    async def _alearn(self) -> None:
        if self._server is None:
            return
        if self._server.claim():
            client = await self._aclients.get()
            self.add_setup_s(await self._server.alearn(client, self.model))
        else:
            await self._server.asettled()

    def _reader(self, response: httpx2.Response) -> _ChunkReader:
        return _ChunkReader(self.config.name, response.headers.get("content-type"))

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        params = request.params
        body: dict[str, Any] = {"model": self.model, "messages": to_messages(request.messages)}
        if params.max_tokens is not None:
            body[self._max_tokens_field] = params.max_tokens
        for name in ("temperature", "top_p", "seed"):
            value = getattr(params, name)
            if value is not None:
                body[name] = value
        if params.stop is not None:
            body["stop"] = list(params.stop)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        tools = tool_fields(request, strict_tools=self._strict_tools)
        body.update(tools)
        return _with_extra(body, params.extra, _RESERVED.union(tools))

    # -- embeddings -----------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        body = _embedding_body(self.model, texts)
        data = json_body(self._post(_EMBEDDINGS, body), self.config.name)
        return _embeddings(data, len(body["input"]), self.config.name)

    async def aembed(self, texts: Sequence[str]) -> EmbeddingResult:
        body = _embedding_body(self.model, texts)
        data = json_body(await self._apost(_EMBEDDINGS, body), self.config.name)
        return _embeddings(data, len(body["input"]), self.config.name)

    # -- images ---------------------------------------------------------------------------------

    def generate_image(self, request: ImageRequest) -> ImageResult:
        data = json_body(self._post(IMAGES_PATH, self._image_body(request)), self.config.name)
        return images_result(data, request, self.config.name, self.price_provider, self.model)

    async def agenerate_image(self, request: ImageRequest) -> ImageResult:
        response = await self._apost(IMAGES_PATH, self._image_body(request))
        data = json_body(response, self.config.name)
        return images_result(data, request, self.config.name, self.price_provider, self.model)

    def _image_body(self, request: ImageRequest) -> dict[str, Any]:
        row = self.config.provider
        params = row.image_params or OPENAI_IMAGE_PARAMS
        return image_body(self.model, request, params, row.image_response_format)

    # -- sending and lifecycle ------------------------------------------------------------------

    def _post(
        self, path: str, body: dict[str, Any], *, clock: Clock | None = None
    ) -> httpx2.Response:
        """POST ``body``; with a ``clock``, as a stream whose reading is left to the caller."""
        stream = clock is not None
        clock = clock or try_clock(self.config.timeout, stream=False)
        try:
            with until(clock):
                return self._client.post(
                    path, cast_to=httpx2.Response, body=body, options=_OPTIONS, stream=stream
                )
        except openai.OpenAIError as exc:
            raise map_error(exc, self.config.name) from exc

    async def _apost(
        self, path: str, body: dict[str, Any], *, clock: Clock | None = None
    ) -> httpx2.Response:
        client = await self._aclients.get()
        stream = clock is not None
        clock = clock or try_clock(self.config.timeout, stream=False)
        try:
            with until(clock):
                return await client.post(
                    path, cast_to=httpx2.Response, body=body, options=_OPTIONS, stream=stream
                )
        except openai.OpenAIError as exc:
            raise map_error(exc, self.config.name) from exc

    def close(self) -> None:
        """Close the sync client; ``aclose`` closes the async ones too."""
        self._client.close()

    async def aclose(self) -> None:
        self._client.close()
        await self._aclients.aclose()


# -- setup ---------------------------------------------------------------------------------------


def _base_url(config: BackendConfig) -> str:
    url = config.base_url or config.provider.base_url or ""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port or IPv6 literal
        valid = False
    if not valid:
        raise ConfigurationError(
            f"The {config.name} backend needs an http(s) base_url, not {redact_url(url)!r}: pass "
            "load(..., base_url='http://host:port/v1') or set base_url in fmgate.toml."
        )
    return url


class _Http(ClosedWhenCollected, openai.DefaultHttpxClient):
    """The SDK's default HTTP client, given the shared TLS context."""


class _AsyncHttp(ClosedWhenCollected, openai.DefaultAsyncHttpxClient):
    pass


def _build(cls: type[_Client], config: BackendConfig, base_url: str, key: Secret | None) -> _Client:
    http = _Http if cls is openai.OpenAI else _AsyncHttp
    api_key = key.reveal() if key else _NO_KEY
    client = sdk_client(cls, http, timeout=config.timeout, api_key=api_key, base_url=base_url)
    if config.provider.name not in _OPENAI_ROWS:
        client.organization = client.project = None
    return client


def _read_key(config: BackendConfig) -> Secret | None:
    if config.api_key is not None:
        return config.api_key
    env_var = config.api_key_env or config.provider.api_key_env
    if env_var is None:
        return None
    return key_from_env(env_var, required=config.provider.requires_api_key, backend=config.name)


# -- request bodies ------------------------------------------------------------------------------


def _with_extra(
    body: dict[str, Any], extra: Mapping[str, Any], reserved: frozenset[str] = _RESERVED
) -> dict[str, Any]:
    """``body`` with the caller's backend-specific parameters; ``reserved``: the keys fmgate set
    for this request (tools=, tool_choice= and output= own theirs), which they may not replace."""
    clash = reserved.intersection(extra)
    if clash:
        raise InvalidRequestError(
            f"The backend parameter {sorted(clash)[0]!r} cannot be passed through: fmgate sets "
            f"{', '.join(sorted(reserved))} itself."
        )
    body.update(extra)
    return body


def _embedding_body(model: str, texts: Sequence[str]) -> dict[str, Any]:
    # "float", not the SDK's base64 default: every compatible server supports it.
    return {"model": model, "input": list(texts), "encoding_format": "float"}


# -- response bodies -----------------------------------------------------------------------------


class _Shape(ValueError):
    """A body that is JSON but not the documented object; becomes MalformedResponseError."""


def _extension(data: Any) -> Any:
    """fmgate serve's ``usage.fmgate`` in a body, or None."""
    usage = data.get("usage") if isinstance(data, dict) else None
    return usage.get("fmgate") if isinstance(usage, dict) else None


def _completion(data: Any, provider: str) -> Completion:
    try:
        _raise_error_object(data, provider)
        choice = _first(data["choices"])
        message = choice["message"]
        content = _opt(message.get("content"), str)
        # A refusal is the text when the model wrote nothing else; the finish reason says so.
        # With output= asked, Model's validation then fails it as OutputValidationError, which
        # keeps the refusal's text and the call's usage on the record (it was billed).
        refusal = None if content else _opt(message.get("refusal"), str)
        calls = read_calls(message.get("tool_calls"), provider)
        reason = _opt(choice.get("finish_reason"), str)
        return Completion(
            content or refusal or "",
            finish_reason(reason, bool(calls), bool(refusal)),
            _usage(data.get("usage")),
            _opt(data.get("model"), str),
            tool_calls=calls,
        )
    except (_Shape, BadPayload, KeyError, TypeError, AttributeError) as exc:
        raise _malformed("chat.completion", exc, provider) from exc


def _embeddings(data: Any, count: int, provider: str) -> EmbeddingResult:
    try:
        _raise_error_object(data, provider)
        items = sorted(data["data"], key=lambda item: item["index"])
        vectors = [_vector(item["embedding"]) for item in items]
        if len(vectors) != count:
            raise _Shape(f"{len(vectors)} embeddings for {count} inputs")
        raw_usage = data.get("usage") or {}
        usage = Usage(_opt(raw_usage.get("prompt_tokens"), int), 0, source="provider")
        return EmbeddingResult(vectors, usage, _opt(data.get("model"), str))
    except (_Shape, KeyError, TypeError, AttributeError) as exc:
        raise _malformed("embedding list", exc, provider) from exc


def _vector(raw: Any) -> list[float]:
    if not isinstance(raw, list) or not all(
        isinstance(x, float | int) and not isinstance(x, bool) for x in raw
    ):
        raise _Shape("an embedding that is not a list of numbers")
    return raw


def _usage(raw: Any) -> Usage:
    """OpenAI's usage object; ``input_tokens`` includes the cached tokens, as OpenAI reports."""
    if raw is None:
        return Usage()
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=_opt(raw.get("prompt_tokens"), int),
        output_tokens=_opt(raw.get("completion_tokens"), int),
        cache_read_tokens=_opt(prompt_details.get("cached_tokens"), int),
        reasoning_tokens=_opt(completion_details.get("reasoning_tokens"), int),
        source="provider",
    )


_T = TypeVar("_T")


def _opt(value: Any, kind: type[_T]) -> _T | None:
    if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
        return value
    raise _Shape(f"a {type(value).__name__} where a {kind.__name__} belongs")


def _first(choices: Any) -> Any:
    if not isinstance(choices, list) or not choices:
        raise _Shape("no choices")
    return choices[0]


def _malformed(what: str, exc: Exception, provider: str) -> MalformedResponseError:
    detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
    return MalformedResponseError(
        f"{provider}: the body is not a {what} object ({redact(detail)}).", provider=provider
    )


def _raise_error_object(data: Any, provider: str) -> None:
    """Some servers answer 200, or end a stream, with an ``{"error": {...}}`` object."""
    if isinstance(data, dict) and "error" in data and "choices" not in data:
        raise _error_object(data["error"], provider)


def _error_object(error: Any, provider: str) -> BackendError:
    details = error if isinstance(error, dict) else {"message": error}
    message = details.get("message") or "the service reported an error"
    code = details.get("code")
    cls = ContextLengthError if code == "context_length_exceeded" else ServerError
    return cls(f"{provider}: {redact(str(message))}", provider=provider)


# -- streams -------------------------------------------------------------------------------------


class _ChunkReader(EventReader):
    """Reads ``chat.completion.chunk`` events into Deltas, up to ``[DONE]``.

    A stream must show a finish reason or usage before it ends: otherwise it was cut. A server
    that ignores ``include_usage`` (some self-hosted ones do) gets its output counted as one
    token per content chunk, as vLLM-style servers send them, with ``source="estimate"``.
    Tool calls arrive in pieces and leave whole, in the last delta.
    """

    __slots__ = (
        "calls",
        "content",
        "content_type",
        "extension",
        "finished",
        "has_usage",
        "reason",
        "refused",
        "text_chunks",
    )

    def __init__(self, provider: str, content_type: str | None) -> None:
        super().__init__(provider)
        self.content_type = content_type
        self.finished = False  # a finish reason or usage was read
        self.has_usage = False
        self.text_chunks = 0
        self.calls = StreamedCalls()
        self.reason: str | None = None
        self.content = False  # content (not a refusal) was streamed
        self.refused = False
        self.extension: Any = None  # fmgate serve's usage.fmgate, from the usage chunk

    def event(self, name: str | None, data: bytes) -> Delta | None:
        if data == b"[DONE]":
            self.done = True
            return None
        chunk = json.loads(data)
        _raise_error_object(chunk, self.provider)
        delta = _chunk_delta(chunk, self)
        if delta.finish_reason is not None or delta.usage is not None:
            self.finished = True
        self.reason = delta.finish_reason or self.reason
        self.has_usage = self.has_usage or delta.usage is not None
        return delta

    def end(self) -> Delta | None:
        if self.finished:
            calls = self.calls.finish(self.provider)
            reason = finish_reason(self.reason, bool(calls), self.refused and not self.content)
            usage = None
            if not self.has_usage:
                usage = Usage(output_tokens=self.text_chunks, source="estimate")
            if usage is None and not calls and reason == self.reason:
                return None
            return Delta(finish_reason=reason, usage=usage, tool_calls=calls)
        if not self.started:
            self._raise_body_error()
        raise MalformedResponseError(
            f"{self.provider}: the stream ended before a finish_reason or usage: cut short "
            f"(content-type {self.content_type}).",
            provider=self.provider,
        )

    def _raise_body_error(self) -> None:
        """A server that answers a stream request with one JSON error body, not events: say
        what it said rather than "cut short"."""
        try:
            body = json.loads(self.leftover())
        except ValueError:
            return
        _raise_error_object(body, self.provider)
        said = _server_says(body)
        if said:
            raise ServerError(
                f"{self.provider}: the server answered the stream with an error, not events: "
                f"{redact(said)[:500]}",
                provider=self.provider,
            )

    def malformed(self, exc: Exception) -> MalformedResponseError:
        return _malformed("chat.completion.chunk", exc, self.provider)


def _chunk_delta(chunk: Any, reader: _ChunkReader) -> Delta:
    """One chunk's Delta; its tool call pieces go to ``reader.calls``."""
    raw_usage = chunk.get("usage")
    usage = _usage(raw_usage) if raw_usage is not None else None
    reader.extension = _extension(chunk) or reader.extension
    model_id = _opt(chunk.get("model"), str)
    choices = chunk["choices"]
    if not choices:  # the usage-only chunk that include_usage adds at the end
        return Delta(usage=usage, model_id=model_id)
    choice = _first(choices)
    delta = choice.get("delta") or {}
    text = _opt(delta.get("content"), str) or ""
    refusal = _opt(delta.get("refusal"), str) or ""  # streamed as the text, as when whole
    pieces = delta.get("tool_calls")
    reader.calls.take(pieces)
    reader.content = reader.content or bool(text)
    reader.refused = reader.refused or bool(refusal)
    reader.text_chunks += bool(text or refusal or pieces)
    return Delta(text + refusal, _opt(choice.get("finish_reason"), str), usage, model_id)


# -- errors --------------------------------------------------------------------------------------

_STATUS_ERRORS: tuple[tuple[type[openai.APIStatusError], type[BackendError]], ...] = (
    (openai.AuthenticationError, AuthenticationError),
    (openai.PermissionDeniedError, AuthenticationError),
    (openai.NotFoundError, NotFoundError),
    (openai.RateLimitError, RateLimitError),
    (openai.BadRequestError, BadRequestError),
    (openai.InternalServerError, ServerError),
)


def map_error(exc: openai.OpenAIError, provider: str) -> BackendError:
    """The fmgate error for an SDK exception, by type; the message is redacted."""
    cause = exc.__cause__
    detail = f" ({type(cause).__name__}: {cause})" if cause is not None and str(cause) else ""
    message = f"{provider}: {redact(str(exc) + detail)}"
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc, message, provider)
    if isinstance(exc, openai.APITimeoutError):
        return TimeoutError(message, provider=provider, sent=not never_connected(exc))
    if too_large(exc):
        return MalformedResponseError(message, provider=provider)
    if isinstance(exc, openai.APIConnectionError):
        return ConnectionError(message, provider=provider, sent=not never_connected(exc))
    if isinstance(exc, openai.APIResponseValidationError):
        return MalformedResponseError(message, status_code=exc.status_code, provider=provider)
    if isinstance(exc, openai.APIError):
        return _error_object(exc.body if exc.body is not None else str(exc), provider)
    return BackendError(message, provider=provider)


def _status_error(exc: openai.APIStatusError, message: str, provider: str) -> BackendError:
    status = exc.status_code
    cls = next((ours for sdk, ours in _STATUS_ERRORS if isinstance(exc, sdk)), None)
    if cls is None:
        cls = ServerError if status >= 500 else TimeoutError if status == 408 else BadRequestError
    if cls is BadRequestError and exc.code == "context_length_exceeded":
        cls = ContextLengthError
    retry_after = retry_after_s(exc.response.headers)
    said = _server_says(exc.body)
    if said and said not in message:  # the SDK reads only OpenAI's {"error": {"message": ...}}
        message = f"{message} - {redact(said)[:500]}"
    return cls(message, status_code=status, provider=provider, retry_after_s=retry_after)


def _server_says(body: object) -> str | None:
    """The explanation in an error body of another shape: ``{"detail": ...}`` (FastAPI, and so
    ``transformers serve``), ``{"error": "..."}`` (Ollama), ``{"message": ...}``, or plain text."""
    if isinstance(body, str):
        return " ".join(body.split())[:500] or None
    if not isinstance(body, Mapping):
        return None
    for key in ("detail", "error", "message"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping) and isinstance(value.get("message"), str):
            return str(value["message"])
        if isinstance(value, list):  # FastAPI's validation errors: [{"loc": [...], "msg": ...}]
            found = [str(v.get("msg", v)) if isinstance(v, Mapping) else str(v) for v in value]
            return "; ".join(found) or None
    return None
