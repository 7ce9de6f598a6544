"""Errors as OpenAI sends them: ``{"error": {"message", "type", "param", "code"}}``, and the map
from fmgate's error tree to HTTP statuses. A failure inside the server never shows its internals
to the client: those go to the server's log (and, for model calls, to the call's record)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .._errors import (
    AuthenticationError,
    BackendError,
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    FmgateError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    TimeoutError,
)
from .._secrets import redact

logger = logging.getLogger("fmgate.serve")

INVALID = "invalid_request_error"


class ApiError(Exception):
    """An error answer: its HTTP status and OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """400: the request is wrong; ``param`` names the field at fault."""
    return ApiError(400, message, param=param, code=code)


def unrecognized(field: str) -> ApiError:
    return invalid(f"Unrecognized request argument supplied: {field}", field)


def not_found(model: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{model}` does not exist: GET /v1/models lists the models this server has.",
        param="model",
        code="model_not_found",
    )


def queue_full() -> ApiError:
    return ApiError(
        429,
        "The server's queue for this model is full: retry after a short wait.",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"retry-after": "1"},
    )


def internal() -> ApiError:
    return ApiError(
        500,
        "The server had an error while processing your request; its log has the details.",
        type="server_error",
    )


def from_fmgate(
    error: FmgateError,
    *,
    served: str,
    model_id: str,
    local: bool,
    window: Callable[[], int | None] = lambda: None,
    completion_tokens: int | None = None,
) -> ApiError:
    """The answer for a failed model call. Messages about the request reach the client (with the
    server's model id or path replaced by the served name); failures of the model or of the
    service behind it do not. ``window`` (asked only for a context overflow) and
    ``completion_tokens`` (the max_tokens asked for) size an overflow's message."""
    if isinstance(error, ContextLengthError):
        return context_overflow(error, error.window or window(), completion_tokens)
    if isinstance(error, InvalidRequestError | BadRequestError):
        text = redact(str(error)).replace(model_id, served) if model_id else redact(str(error))
        return invalid(text)
    if isinstance(error, RateLimitError):
        wait = error.retry_after_s
        headers = {"retry-after": str(max(1, round(wait)))} if wait else None
        return ApiError(
            429,
            f"The service behind {served} is rate limited: retry later.",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers=headers,
        )
    logger.warning("fmgate serve: %s failed: %s: %s", served, type(error).__name__, error)
    if isinstance(error, ConfigurationError):  # the server's own setup: a key, an extra
        return internal()
    if isinstance(error, TimeoutError) and not local:
        return ApiError(504, f"The service behind {served} did not answer in time.", type=_SERVER)
    if isinstance(error, BackendError) and not local:
        what = _UPSTREAM.get(type(error), "failed")
        return ApiError(502, f"The service behind {served} {what}.", type=_SERVER)
    return ApiError(500, f"{served} failed to produce a reply.", type=_SERVER)


def context_overflow(
    error: ContextLengthError, window: int | None, completion: int | None
) -> ApiError:
    """OpenAI's words for an overflow, beside its code: LiteLLM raises its
    ContextWindowExceededError (which fallbacks act on) from the words, not from the code."""
    prompt = error.prompt_tokens
    if window is None:
        said = "This model's maximum context length is smaller than your request needs."
    elif prompt is None or completion is None:
        said = (
            f"This model's maximum context length is {window} tokens. However, your messages "
            "and completion exceed it."
        )
    else:
        said = (
            f"This model's maximum context length is {window} tokens. However, you requested "
            f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the "
            "completion)."
        )
    return invalid(
        said + " Please reduce the length of the messages or completion.",
        "messages",
        "context_length_exceeded",
    )


_SERVER = "server_error"
_UPSTREAM: dict[type[BackendError], str] = {
    AuthenticationError: "refused the server's credentials",
    NotFoundError: "does not know the model the server asks for",
}
