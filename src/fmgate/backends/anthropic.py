"""Anthropic's Messages API, through the official ``anthropic`` SDK.

The SDK authenticates and sends each request (its documented ``client.post(path,
cast_to=httpx2.Response, ...)``) and turns non-2xx answers into typed exceptions; this module
builds the body, reads a 2xx body as plain JSON and splits a stream's server-sent events itself.
On a zero-delay loopback server that made a call about 15% faster and a 50-token stream about 40%
faster than the SDK's parsed ``Message`` and event objects, and skipping ``messages.create``'s
argument processing another ~5% (some 30 µs of CPU a call). That method's two checks are kept
here: it refuses a long call without streaming, and warns of a deprecated model; the request it
sends, headers included, is the same (a test compares them).

Tools and structured output (``tools=``, ``output=``) are translated in
:mod:`._anthropic_tools`, which also says when structured output is native and when it runs
through a forced tool (the ``structured_output`` setting).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import anthropic
import httpx2
from anthropic._constants import MODEL_NONSTREAMING_TOKENS
from anthropic._data import DEPRECATED_MODELS

from .._errors import (
    AuthenticationError,
    BackendError,
    BadRequestError,
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
from .._types import ChatRequest, Completion, Delta, GenerationParams
from ._anthropic_tools import (
    BadPayload,
    OutputMode,
    OutputTool,
    StreamedBlocks,
    check_output_setting,
    output_mode,
    read_content,
    to_messages,
    tool_fields,
)
from ._base import Backend, BackendConfig
from ._deadline import Clock, until
from ._http import (
    BAD_DATA,
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

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent when the caller gives none: the Messages API requires one.

4096 is the largest output every Claude model accepts (the Claude 3 family stops there), so the
default never makes a request invalid, and it is long enough not to cut ordinary replies short.
It also keeps non-streaming calls well under the size (about 21,000 tokens) for which the SDK
refuses to send without streaming.
"""

NONSTREAMING_LIMIT_S = 600
"""The SDK's default timeout: a call without streaming that may take longer is refused (the SDK's
``messages.create`` expects 128,000 output tokens an hour), unless a timeout is set."""

MAX_TEMPERATURE = 1.0
"""Anthropic samples with temperature in [0, 1], half of OpenAI's range, which fmgate allows."""

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic's ``stop_reason`` in OpenAI's ``finish_reason`` words; others are kept as they are."""

# Body fields that fmgate sets itself, and the common parameter to use instead.
_RESERVED: dict[str, str] = {
    "model": "the model in the spec",
    "messages": "the prompt",
    "system": "system=...",
    "max_tokens": "max_tokens=...",
    "temperature": "temperature=...",
    "top_p": "top_p=...",
    "stop_sequences": "stop=...",
    "stream": "Model.stream()",
    "tools": "tools=[...]",
    "tool_choice": "tool_choice=...",
    "output_format": "output=...",  # the structured-output beta's name for output_config.format
}

# SDK exception type -> fmgate type; the first match wins, so subclasses come first.
_STATUS_ERRORS: tuple[tuple[type[anthropic.APIStatusError], type[BackendError]], ...] = (
    (anthropic.AuthenticationError, AuthenticationError),
    (anthropic.PermissionDeniedError, AuthenticationError),
    (anthropic.NotFoundError, NotFoundError),
    (anthropic.RateLimitError, RateLimitError),
    (anthropic.RequestTimeoutError, TimeoutError),
    (anthropic.InternalServerError, ServerError),
)

# The ``error.type`` of an ``error`` event sent mid-stream (the HTTP status was already 200, so
# these errors carry no status_code).
_EVENT_ERRORS: dict[str, type[BackendError]] = {
    "invalid_request_error": BadRequestError,
    "request_too_large": BadRequestError,
    "billing_error": BadRequestError,
    "authentication_error": AuthenticationError,
    "permission_error": AuthenticationError,
    "not_found_error": NotFoundError,
    "rate_limit_error": RateLimitError,
    "timeout_error": TimeoutError,
    "api_error": ServerError,
    "overloaded_error": ServerError,
}
"""Error types not listed here (new ones) are taken as a server failure."""

# Anthropic's documented wording for a request that does not fit the context window.
_CONTEXT_PHRASES = ("prompt is too long", "exceed context limit")

_MESSAGES = "/v1/messages"
_STREAM: anthropic.RequestOptions = {}

_Client = TypeVar("_Client", anthropic.Anthropic, anthropic.AsyncAnthropic)


class AnthropicBackend(Backend):
    """Claude models over the Messages API (``anthropic:claude-3-5-haiku-latest``)."""

    wire: ClassVar[str] = "anthropic"
    library: ClassVar[str | None] = "anthropic"
    # Images: every Claude model since Claude 3 reads them (Claude 2 and Instant are retired).
    features: ClassVar[frozenset[str]] = frozenset({"images", "tools", "output"})
    # "auto" (native structured output where the model has it, else a forced tool), "native"
    # or "tool": see fmgate.backends._anthropic_tools
    settings: ClassVar[dict[str, tuple[type, ...]]] = {"structured_output": (str,)}

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        provider = config.provider
        self._base_url = config.base_url or provider.base_url or "https://api.anthropic.com"
        env_var = config.api_key_env or provider.api_key_env or "ANTHROPIC_API_KEY"
        key = config.api_key or key_from_env(env_var, required=True, backend=config.name)
        assert key is not None  # required=True raises instead
        self._key: Secret = key
        self._endpoint = host_port(self._base_url)
        setting = check_output_setting(config.options.get("structured_output", "auto"))
        self._output_mode: OutputMode = output_mode(self.model, setting)
        self._max_plain_tokens = _nonstreaming_limit(self.model, config.timeout)
        if self.model in DEPRECATED_MODELS:
            _warn_deprecated(self.model)
        self._client = _build(anthropic.Anthropic, config, self._base_url, key)
        # As messages.create does, a call without streaming under the default timeout names it
        # (in the x-stainless-timeout header).
        self._plain: anthropic.RequestOptions = {}
        if config.timeout is None:
            self._plain = {"timeout": self._client.timeout}
        # Built without a reference to the backend, which is then freed (and its clients closed)
        # as soon as it is dropped.
        build = functools.partial(_build, anthropic.AsyncAnthropic, config, self._base_url, key)
        self._aclients = PerLoop(build, anthropic.AsyncAnthropic.close, self.add_setup_s)

    def default_params(self) -> GenerationParams:
        return GenerationParams(max_tokens=DEFAULT_MAX_TOKENS)

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def access(self) -> Access:
        return remote_access(self.config.provider, self.model, self._base_url, has_key=True)

    @property
    def output_mode(self) -> OutputMode:
        """How ``output=`` is asked of this model: ``native`` (Anthropic's structured output)
        or ``tool`` (a forced tool whose input is the answer)."""
        return self._output_mode

    # -- calls ----------------------------------------------------------------------------------

    def complete(self, request: ChatRequest) -> Completion:
        body, output = self._body(request, stream=False)
        response = self._post(body)
        return _message(json_body(response, self.config.name), self.config.name, output)

    async def acomplete(self, request: ChatRequest) -> Completion:
        body, output = self._body(request, stream=False)
        response = await self._apost(body)
        return _message(json_body(response, self.config.name), self.config.name, output)

    def stream(self, request: ChatRequest) -> Iterator[Delta]:
        clock = try_clock(self.config.timeout, stream=True)
        body, output = self._body(request, stream=True)
        response = self._post(body, clock=clock)
        reader = _StreamReader(self.config.name, output)
        yield from events(response, reader, clock, self.config.timeout)

    async def astream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        clock = try_clock(self.config.timeout, stream=True)
        body, output = self._body(request, stream=True)
        response = await self._apost(body, clock=clock)
        reader = _StreamReader(self.config.name, output)
        deltas = aevents(response, reader, clock, self.config.timeout)
        async with contextlib.aclosing(deltas):
            async for delta in deltas:
                yield delta

    def close(self) -> None:
        """Close the sync client; ``aclose`` closes the async ones too."""
        self._client.close()

    async def aclose(self) -> None:
        self._client.close()
        await self._aclients.aclose()

    # -- wire -----------------------------------------------------------------------------------

    def _post(self, body: dict[str, Any], *, clock: Clock | None = None) -> httpx2.Response:
        """POST ``body``; with a ``clock``, as a stream whose reading is left to the caller."""
        stream = clock is not None
        options = _STREAM if stream else self._plain
        clock = clock or try_clock(self.config.timeout, stream=False)
        try:
            with until(clock):
                return self._client.post(
                    _MESSAGES, cast_to=httpx2.Response, body=body, options=options, stream=stream
                )
        except anthropic.AnthropicError as exc:
            raise _send_error(exc, self.config.name) from exc

    async def _apost(self, body: dict[str, Any], *, clock: Clock | None = None) -> httpx2.Response:
        stream = clock is not None
        options = _STREAM if stream else self._plain
        clock = clock or try_clock(self.config.timeout, stream=False)
        client = await self._aclients.get()
        try:
            with until(clock):
                return await client.post(
                    _MESSAGES, cast_to=httpx2.Response, body=body, options=options, stream=stream
                )
        except anthropic.AnthropicError as exc:
            raise _send_error(exc, self.config.name) from exc

    def _body(
        self, request: ChatRequest, *, stream: bool
    ) -> tuple[dict[str, Any], OutputTool | None]:
        """The request body, and the forced tool that carries a structured answer, if any."""
        params = request.params
        _check_params(params)
        max_tokens = params.max_tokens or DEFAULT_MAX_TOKENS
        if max_tokens > self._max_plain_tokens and not stream:
            raise _too_long_for_one_response(max_tokens, self.config.name)
        system, messages = to_messages(request.messages)
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens}
        if system is not None:
            body["system"] = system
        if params.stop:
            body["stop_sequences"] = list(params.stop)
        if params.temperature is not None:
            body["temperature"] = params.temperature
        if params.top_p is not None:
            body["top_p"] = params.top_p
        if stream:
            body["stream"] = True
        body.update(params.extra)
        fields, output = tool_fields(request, self._output_mode, params.extra)
        body.update(fields)
        return body, output


# -- setup --------------------------------------------------------------------------------------


class _Http(ClosedWhenCollected, anthropic.DefaultHttpxClient):
    """The SDK's default HTTP client, given the shared TLS context."""


class _AsyncHttp(ClosedWhenCollected, anthropic.DefaultAsyncHttpxClient):
    pass


def _build(cls: type[_Client], config: BackendConfig, base_url: str, key: Secret) -> _Client:
    http = _Http if cls is anthropic.Anthropic else _AsyncHttp
    # open_telemetry=False: fmgate records (and exports) each call once. The SDK makes no span for
    # client.post (no SDK method names it); this way it does not look for a tracer either.
    return sdk_client(
        cls,
        http,
        timeout=config.timeout,
        api_key=key.reveal(),
        base_url=base_url,
        open_telemetry=False,
    )


def _nonstreaming_limit(model: str, timeout: float | None) -> float:
    """The largest max_tokens the SDK's ``messages.create`` sends without streaming.

    With a timeout set the SDK trusts it; without, it refuses calls that may outlast its default
    timeout, and some models have a lower limit of their own.
    """
    if timeout is not None:
        return math.inf
    limit = NONSTREAMING_LIMIT_S * 128_000 // 3600
    return min(limit, MODEL_NONSTREAMING_TOKENS.get(model) or limit)


def _too_long_for_one_response(max_tokens: int, provider: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{provider}: streaming is required for operations that may take longer than "
        f"{NONSTREAMING_LIMIT_S // 60} minutes (max_tokens={max_tokens}): use Model.stream(), "
        "or set timeout= when loading the model."
    )


def _warn_deprecated(model: str) -> None:
    warnings.warn(
        f"The model {model!r} is deprecated and will reach end-of-life on "
        f"{DEPRECATED_MODELS[model]}. Please migrate to a newer model: "
        "https://docs.anthropic.com/en/docs/resources/model-deprecations",
        DeprecationWarning,
        stacklevel=3,
    )


# -- request ------------------------------------------------------------------------------------


def _check_params(params: GenerationParams) -> None:
    if params.seed is not None:
        raise InvalidRequestError(
            "Anthropic's Messages API has no seed parameter, so its sampling cannot be seeded: "
            "drop seed=... for anthropic models (temperature=0 makes replies the most stable)."
        )
    if params.temperature is not None and params.temperature > MAX_TEMPERATURE:
        raise InvalidRequestError(
            f"temperature must lie in [0.0, {MAX_TEMPERATURE}] for Anthropic models, not "
            f"{params.temperature!r}: Anthropic's scale ends at 1.0, where OpenAI's ends at 2.0."
        )
    for key in params.extra:
        if key in _RESERVED:
            raise InvalidRequestError(
                f"anthropic_{key}=... would override what fmgate sends: use {_RESERVED[key]}."
            )


# -- response -----------------------------------------------------------------------------------


def _message(data: Any, provider: str, output: OutputTool | None = None) -> Completion:
    try:
        return _parse_message(data, output)
    except BAD_DATA as exc:
        raise _malformed(exc, provider) from exc


def _parse_message(data: Any, output: OutputTool | None) -> Completion:
    if data.get("type") != "message":
        raise BadPayload(f"expected a message object, got type {data.get('type')!r}")
    content = read_content(data["content"], output)
    return Completion(
        text=content.text,
        finish_reason=_finish_reason(data["stop_reason"], answered=content.answered),
        usage=_usage(data["usage"]),
        model_id=_str(data["model"], "model"),
        tool_calls=content.calls,
    )


def _finish_reason(reason: Any, *, answered: bool = False) -> str | None:
    """``answered``: the model stopped to "call" the forced output tool, which is its answer."""
    if reason is None:
        return None
    name = _str(reason, "stop_reason")
    if answered and name == "tool_use":
        return "stop"
    return FINISH_REASONS.get(name, name)


def _usage(raw: Any) -> Usage:
    """Anthropic counts cached input apart from ``input_tokens``; fmgate's input includes it."""
    if not isinstance(raw, Mapping):
        raise BadPayload("usage is missing")
    fresh = _count(raw, "input_tokens")
    output = _count(raw, "output_tokens")
    if fresh is None or output is None:
        raise BadPayload("usage lacks input_tokens or output_tokens")
    read = _count(raw, "cache_read_input_tokens")
    write = _count(raw, "cache_creation_input_tokens")
    return Usage(
        input_tokens=fresh + (read or 0) + (write or 0),
        output_tokens=output,
        cache_read_tokens=read,
        cache_write_tokens=write,
        source="provider",
    )


def _count(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise BadPayload(f"usage.{key} is {value!r}, not a token count")
    return value


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise BadPayload(f"{name} is {value!r}, not a string")
    return value


class _StreamReader(EventReader):
    """Reads a Messages event stream into deltas, up to ``message_stop``.

    Reads ``message_start`` (model, input usage), ``content_block_start``, ``_delta`` and
    ``_stop`` (text, and tool calls assembled by :class:`StreamedBlocks`), ``message_delta``
    (stop reason, cumulative usage) and ``message_stop``; ``ping`` and event types it does not
    know are skipped; an ``error`` event raises the matching fmgate error. ``output``: the
    forced tool whose input is streamed as the text.
    """

    __slots__ = ("_blocks", "_model_id", "_stop_reason", "_usage")

    def __init__(self, provider: str, output: OutputTool | None = None) -> None:
        super().__init__(provider)
        self._model_id: str | None = None
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._blocks = StreamedBlocks(output)

    def event(self, name: str | None, data: bytes) -> Delta | None:
        if name == "ping":
            return None
        payload = json.loads(data)
        kind = name or payload.get("type")
        if kind == "content_block_delta":
            # content, even a tool's arguments: the delta moves the stream's idle deadline
            return Delta(text=self._blocks.delta(payload["index"], payload["delta"]))
        elif kind == "content_block_start":
            self._blocks.start(payload["index"], payload["content_block"])
        elif kind == "content_block_stop":
            text = self._blocks.stop(payload["index"])
            return Delta(text=text) if text else None
        elif kind == "message_start":
            message = payload["message"]
            self._model_id = _str(message["model"], "model")
            self._usage.update(message["usage"])
        elif kind == "message_delta":
            self._stop_reason = payload["delta"].get("stop_reason")
            usage = payload.get("usage") or {}
            self._usage.update((k, v) for k, v in usage.items() if v is not None)
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise _event_error(payload.get("error"), self.provider)
        return None

    def end(self) -> Delta:
        """Finish reason, usage and model id, once the stream has ended."""
        if not self.done:
            raise BadPayload("the stream ended before message_stop")
        text, calls = self._blocks.finish()
        return Delta(
            text=text,
            finish_reason=_finish_reason(self._stop_reason, answered=self._blocks.answered),
            usage=_usage(self._usage),
            model_id=self._model_id,
            tool_calls=calls,
        )

    def malformed(self, exc: Exception) -> MalformedResponseError:
        return _malformed(exc, self.provider)


# -- errors -------------------------------------------------------------------------------------


def _send_error(exc: anthropic.AnthropicError, provider: str) -> BackendError:
    """Map what the SDK raised before a 2xx response arrived."""
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc, provider)
    sent = not never_connected(exc)
    if too_large(exc):
        return MalformedResponseError(redact(f"{provider}: {exc.__cause__}"), provider=provider)
    if isinstance(exc, anthropic.APITimeoutError):  # before APIConnectionError, its base
        why = f" ({exc.__cause__})" if exc.__cause__ is not None and str(exc.__cause__) else ""
        message = redact(f"{provider}: no response within the timeout{why}.")
        return TimeoutError(message, provider=provider, sent=sent)
    if isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__ or exc
        return ConnectionError(
            redact(f"{provider}: could not connect: {type(cause).__name__}: {cause}"),
            provider=provider,
            sent=sent,
        )
    if isinstance(exc, anthropic.APIResponseValidationError):
        return MalformedResponseError(redact(f"{provider}: {exc}"), provider=provider)
    return BackendError(redact(f"{provider}: {type(exc).__name__}: {exc}"), provider=provider)


def _status_error(exc: anthropic.APIStatusError, provider: str) -> BackendError:
    kind = exc.type or "error"
    # Redact, then cut: a key straddling the cut would keep a piece no pattern matches.
    detail = redact(exc.api_message or exc.message)[:500]
    request_id = f" (request-id {exc.request_id})" if exc.request_id else ""
    return _status_class(exc)(
        redact(f"{provider}: HTTP {exc.status_code} {kind}: {detail}{request_id}"),
        status_code=exc.status_code,
        provider=provider,
        retry_after_s=retry_after_s(exc.response.headers),
    )


def _status_class(exc: anthropic.APIStatusError) -> type[BackendError]:
    for theirs, ours in _STATUS_ERRORS:
        if isinstance(exc, theirs):
            return ours
    if exc.status_code >= 500:
        return ServerError
    return ContextLengthError if _too_long(exc.api_message) else BadRequestError


def _too_long(message: str | None) -> bool:
    lowered = (message or "").lower()
    return any(phrase in lowered for phrase in _CONTEXT_PHRASES)


def _event_error(error: Any, provider: str) -> BackendError:
    if not isinstance(error, Mapping):
        raise BadPayload("an error event without an error object")
    kind = error.get("type")
    message = error.get("message")
    cls = _EVENT_ERRORS.get(kind, ServerError) if isinstance(kind, str) else ServerError
    if cls is BadRequestError and _too_long(message if isinstance(message, str) else None):
        cls = ContextLengthError
    return cls(redact(f"{provider}: {kind} during the stream: {message}"), provider=provider)


def _malformed(exc: Exception, provider: str) -> MalformedResponseError:
    """The error for a 2xx body or event that is not the documented shape."""
    reason = (
        str(exc)
        if isinstance(exc, BadPayload)
        else f"unreadable body ({type(exc).__name__}: {exc})"
    )
    return MalformedResponseError(redact(f"{provider}: {reason}"), provider=provider)
