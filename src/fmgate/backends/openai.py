"""The OpenAI wire: Chat Completions and Embeddings, for OpenAI and every server that speaks them.

OpenAI-compatible providers (Groq, Together, vLLM, Ollama, the HF router, ...) are rows of
``providers.toml`` over this one module. The official ``openai`` SDK builds, authenticates and
sends each request; this module reads the bodies itself. The SDK's typed path costs more than the
loopback round trip it wraps (``maybe_transform`` over the request TypedDicts, pydantic models for
the response and for every stream chunk), and its sync stream closes the response right after
``[DONE]`` without reading the end of the chunked body, so the connection cannot be reused. The
documented ``client.post(path, cast_to=httpx2.Response, ...)`` keeps the SDK's auth, headers,
timeouts and error classes, and hands back the raw response.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import json
import math
import ssl
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
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
from .._providers import host_port, remote_access
from .._record import Access, Usage
from .._secrets import Secret, key_from_env, redact
from .._types import ChatRequest, Completion, Delta
from ._base import Backend, BackendConfig, EmbeddingResult

_CHAT = "/chat/completions"
_EMBEDDINGS = "/embeddings"
# Bearer auth only, as the SDK's own chat.completions.create sends it (never the admin key).
_OPTIONS: openai.RequestOptions = {"security": {"bearer_auth": True}}
# The SDK refuses an empty key; local servers ignore the value (vLLM's docs use "EMPTY").
_NO_KEY = "EMPTY"
# Rows that are OpenAI's own API. It deprecated max_tokens for max_completion_tokens (reasoning
# models refuse max_tokens), while the compatible servers document max_tokens; and only OpenAI
# should receive the OPENAI_ORG_ID / OPENAI_PROJECT_ID headers the SDK reads from the environment.
_OPENAI_ROWS = frozenset({"openai"})
# Body keys fmgate sets itself: an openai_<key> parameter may not replace them.
_RESERVED = frozenset({"model", "messages", "stream", "stream_options"})
# What breaks a body mid-read: httpx2's errors, plus the TLS and AnyIO failures it does not wrap
# yet (the SDK's own stream reader catches the same ones).
_READ_ERRORS = (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream)

_Client = TypeVar("_Client", openai.OpenAI, openai.AsyncOpenAI)


class OpenAIBackend(Backend):
    """Chat completions and embeddings over the OpenAI HTTP API or a compatible server."""

    wire = "openai"
    library = "openai"
    supports_embeddings = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._base_url = _base_url(config)
        self._endpoint = host_port(self._base_url)
        self._key = _read_key(config)
        openai_row = config.provider.name in _OPENAI_ROWS
        self._max_tokens_field = "max_completion_tokens" if openai_row else "max_tokens"
        self._client = self._build(openai.OpenAI)
        self._async_client: openai.AsyncOpenAI | None = None
        self._lock = threading.Lock()

    def _build(self, cls: type[_Client]) -> _Client:
        http: type[Any] = _Http if cls is openai.OpenAI else _AsyncHttp
        kwargs: dict[str, Any] = {"base_url": self._base_url, "max_retries": 0}
        if self.config.timeout is not None:
            kwargs["timeout"] = self.config.timeout
        # max_retries=0: fmgate's own retry layer retries, so that record.attempts is honest.
        client = cls(
            api_key=self._key.reveal() if self._key else _NO_KEY,
            http_client=http(verify=_ssl_context()),
            **kwargs,
        )
        if self.config.provider.name not in _OPENAI_ROWS:
            client.organization = client.project = None
        return client

    def _aclient(self) -> openai.AsyncOpenAI:
        client = self._async_client
        if client is None:
            with self._lock:
                if self._async_client is None:
                    self._async_client = self._build(openai.AsyncOpenAI)
                client = self._async_client
        return client

    def __repr__(self) -> str:
        return f"<OpenAIBackend {self.config.name}:{self.model} at {self.endpoint}>"

    # -- facts ----------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def price_provider(self) -> str | None:
        """The row's genai-prices id; a ``{route}`` template takes the model id's ``:route``."""
        template = self.config.provider.prices_provider
        if template is None or "{route}" not in template:
            return template
        model, _, route = self.model.rpartition(":")
        return template.format(route=route) if model and route else None

    def access(self) -> Access:
        return remote_access(
            self.config.provider, self.model, self._base_url, has_key=self._key is not None
        )

    # -- chat -----------------------------------------------------------------------------------

    def complete(self, request: ChatRequest) -> Completion:
        body = self._body(request, stream=False)
        with self._errors():
            response = self._client.post(
                _CHAT, cast_to=httpx2.Response, body=body, options=_OPTIONS
            )
        return _completion(_json(response, self.config.name), self.config.name)

    async def acomplete(self, request: ChatRequest) -> Completion:
        body = self._body(request, stream=False)
        with self._errors():
            response = await self._aclient().post(
                _CHAT, cast_to=httpx2.Response, body=body, options=_OPTIONS
            )
        return _completion(_json(response, self.config.name), self.config.name)

    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        body = self._body(request, stream=True)
        with self._errors():
            response = self._client.post(
                _CHAT, cast_to=httpx2.Response, body=body, options=_OPTIONS, stream=True
            )
        reader = _ChunkReader(self.config.name)
        try:
            with _reading(reader):
                # Read to the end of the body, past [DONE], so the connection can be reused.
                for line in response.iter_lines():
                    delta = reader.feed(line)
                    if delta is not None:
                        yield delta
            reader.end(response.headers.get("content-type"))
        finally:
            response.close()

    async def astream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        body = self._body(request, stream=True)
        with self._errors():
            response = await self._aclient().post(
                _CHAT, cast_to=httpx2.Response, body=body, options=_OPTIONS, stream=True
            )
        reader = _ChunkReader(self.config.name)
        try:
            with _reading(reader):
                async for line in response.aiter_lines():
                    delta = reader.feed(line)
                    if delta is not None:
                        yield delta
            reader.end(response.headers.get("content-type"))
        finally:
            await response.aclose()

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        params = request.params
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
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
        return _with_extra(body, params.extra)

    # -- embeddings -----------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        body = _embedding_body(self.model, texts)
        with self._errors():
            response = self._client.post(
                _EMBEDDINGS, cast_to=httpx2.Response, body=body, options=_OPTIONS
            )
        return _embeddings(_json(response, self.config.name), len(body["input"]), self.config.name)

    async def aembed(self, texts: Sequence[str]) -> EmbeddingResult:
        body = _embedding_body(self.model, texts)
        with self._errors():
            response = await self._aclient().post(
                _EMBEDDINGS, cast_to=httpx2.Response, body=body, options=_OPTIONS
            )
        return _embeddings(_json(response, self.config.name), len(body["input"]), self.config.name)

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync client; ``aclose`` closes the async one too."""
        self._client.close()

    async def aclose(self) -> None:
        self._client.close()
        client, self._async_client = self._async_client, None
        if client is not None:
            await client.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except openai.OpenAIError as exc:
            raise map_error(exc, self.config.name) from exc


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
            f"The {config.name} backend needs an http(s) base_url, not {url!r}: pass "
            "load(..., base_url='http://host:port/v1') or set base_url in fmgate.toml."
        )
    return url


class _Http(openai.DefaultHttpxClient):
    """The SDK's default HTTP client, closed when collected as the SDK's own one is."""

    def __del__(self) -> None:
        if not self.is_closed:
            with contextlib.suppress(Exception):
                self.close()


class _AsyncHttp(openai.DefaultAsyncHttpxClient):
    def __del__(self) -> None:
        # As the SDK's own one does; with no running loop this cannot close and lets it be.
        if not self.is_closed:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().create_task(self.aclose())


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context for all clients: loading the CA bundle takes ~25 ms per client, which
    would land in the latency of the first async call (its client is built then)."""
    return httpx2.create_ssl_context()


def _read_key(config: BackendConfig) -> Secret | None:
    env_var = config.api_key_env or config.provider.api_key_env
    if env_var is None:
        return None
    return key_from_env(env_var, required=config.provider.requires_api_key, backend=config.name)


# -- request bodies ------------------------------------------------------------------------------


def _with_extra(body: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    clash = _RESERVED.intersection(extra)
    if clash:
        raise InvalidRequestError(
            f"The backend parameter {sorted(clash)[0]!r} cannot be passed through: fmgate sets "
            f"{', '.join(sorted(_RESERVED))} itself."
        )
    body.update(extra)
    return body


def _embedding_body(model: str, texts: Sequence[str]) -> dict[str, Any]:
    # "float", not the SDK's base64 default: every compatible server supports it.
    return {"model": model, "input": list(texts), "encoding_format": "float"}


# -- response bodies -----------------------------------------------------------------------------


class _Shape(Exception):
    """A body that is JSON but not the documented object; becomes MalformedResponseError."""


def _json(response: httpx2.Response, provider: str) -> Any:
    try:
        return json.loads(response.content)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        kind = response.headers.get("content-type", "no content-type")
        raise MalformedResponseError(
            f"{provider}: the response body is not JSON ({kind}, {len(response.content)} bytes).",
            status_code=response.status_code,
            provider=provider,
        ) from exc


def _completion(data: Any, provider: str) -> Completion:
    try:
        _raise_error_object(data, provider)
        choice = _first(data["choices"])
        message = choice["message"]
        text = _opt(message.get("content"), str) or _opt(message.get("refusal"), str) or ""
        return Completion(
            text,
            _opt(choice.get("finish_reason"), str),
            _usage(data.get("usage")),
            _opt(data.get("model"), str),
        )
    except (_Shape, KeyError, TypeError, AttributeError) as exc:
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


class _ChunkReader:
    """Reads an SSE body of ``chat.completion.chunk`` events into Deltas.

    Only ``data:`` fields matter on this wire; comments (keep-alives), ``event:`` and ``id:`` are
    skipped. A stream must show a finish reason or usage before it ends: otherwise it was cut.
    """

    __slots__ = ("_data", "done", "finished", "provider", "started")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._data: list[str] = []
        self.started = False  # an event was read
        self.done = False  # [DONE] was read
        self.finished = False  # a finish reason or usage was read

    def feed(self, line: str) -> Delta | None:
        """Take one line of the body; a blank line completes an event."""
        if line.startswith("data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
            return None
        if line or not self._data:
            return None
        data = "\n".join(self._data)
        self._data.clear()
        self.started = True
        if self.done:
            return None
        if data == "[DONE]":
            self.done = True
            return None
        return self._delta(data)

    def _delta(self, data: str) -> Delta:
        try:
            chunk = json.loads(data)
            _raise_error_object(chunk, self.provider)
            delta = _chunk_delta(chunk)
        except (ValueError, _Shape, KeyError, TypeError, AttributeError) as exc:
            raise _malformed("chat.completion.chunk", exc, self.provider) from exc
        if delta.finish_reason is not None or delta.usage is not None:
            self.finished = True
        return delta

    def end(self, content_type: str | None) -> None:
        if not self.finished:
            raise MalformedResponseError(
                f"{self.provider}: the stream ended before a finish_reason or usage: cut short "
                f"(content-type {content_type}).",
                provider=self.provider,
            )


def _chunk_delta(chunk: Any) -> Delta:
    raw_usage = chunk.get("usage")
    usage = _usage(raw_usage) if raw_usage is not None else None
    model_id = _opt(chunk.get("model"), str)
    choices = chunk["choices"]
    if not choices:  # the usage-only chunk that include_usage adds at the end
        return Delta(usage=usage, model_id=model_id)
    choice = _first(choices)
    text = _opt((choice.get("delta") or {}).get("content"), str) or ""
    return Delta(text, _opt(choice.get("finish_reason"), str), usage, model_id)


@contextlib.contextmanager
def _reading(reader: _ChunkReader) -> Iterator[None]:
    """Map failures while reading a stream body; after ``[DONE]`` the answer is already whole."""
    provider = reader.provider
    try:
        yield
    except httpx2.TimeoutException as exc:
        if not reader.done:
            raise TimeoutError(
                f"{provider}: the stream stalled past the read timeout.", provider=provider
            ) from exc
    except _READ_ERRORS as exc:
        if not reader.started:  # nothing read yet: the same request may well succeed again
            raise ConnectionError(
                f"{provider}: the connection dropped before the stream began "
                f"({type(exc).__name__}: {redact(str(exc))}).",
                provider=provider,
            ) from exc
        if not reader.done:
            raise MalformedResponseError(
                f"{provider}: the connection dropped mid-stream ({type(exc).__name__}): cut short.",
                provider=provider,
            ) from exc


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
        return TimeoutError(message, provider=provider)
    if isinstance(exc, openai.APIConnectionError):
        return ConnectionError(message, provider=provider)
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
    return cls(message, status_code=status, provider=provider, retry_after_s=retry_after)


def retry_after_s(headers: httpx2.Headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    millis = _seconds(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    seconds = _seconds(value)
    if seconds is not None or value is None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None
