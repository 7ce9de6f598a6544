"""Every error fmgate raises, in one tree.

    FmgateError
    ├── ConfigurationError        bad input: fix your code or config, retrying will not help
    │   ├── SpecError             a model spec that is not "backend:model"
    │   ├── UnknownBackendError   no backend of that name (closest names suggested)
    │   ├── UnknownAliasError     no alias of that name in the config (closest names suggested)
    │   ├── ConfigFileError       fmgate.toml: syntax, unknown key, wrong type (file, table, key)
    │   ├── MissingAPIKeyError    the env var that should hold the key is unset (named)
    │   ├── MissingExtraError     an optional dependency is not installed (pip command given)
    │   ├── OfflineError          FMGATE_OFFLINE=1 and the call would leave this machine
    │   ├── InvalidRequestError   a prompt, message list or parameter fmgate refuses before sending
    │   ├── UnsupportedTaskError  a task the model cannot do (the message names those it can)
    │   └── StoreError            a record store that cannot be opened or read (damaged, not SQLite)
    └── BackendError              the model or service failed the call
        ├── AuthenticationError   401/403: the key is wrong or lacks access
        ├── NotFoundError         404: unknown model or endpoint
        ├── RateLimitError        429: throttled or out of quota (retryable)
        ├── TimeoutError          no answer in time (retryable)
        ├── ConnectionError       could not reach the service (retryable)
        ├── ContextLengthError    the prompt and max_tokens exceed the context window
        ├── BadRequestError       other 4xx: the service refused the request
        ├── ServerError           5xx (retryable)
        └── MalformedResponseError  a body or stream fmgate could not read, or a stream cut short

Backends map their SDK's exceptions onto this tree by type and chain the original with
``raise ... from``. Messages are redacted of secrets before they are stored on the exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._record import CallRecord

import builtins

__all__ = [
    "AuthenticationError",
    "BackendError",
    "BadRequestError",
    "ConfigFileError",
    "ConfigurationError",
    "ConnectionError",
    "ContextLengthError",
    "FmgateError",
    "InvalidRequestError",
    "MalformedResponseError",
    "MissingAPIKeyError",
    "MissingExtraError",
    "NoLabelError",
    "NotFoundError",
    "OfflineError",
    "OutputValidationError",
    "RateLimitError",
    "ServerError",
    "SpecError",
    "StoreError",
    "TimeoutError",
    "UnknownAliasError",
    "UnknownBackendError",
    "UnsupportedFeatureError",
    "UnsupportedTaskError",
]


class FmgateError(Exception):
    """Base of every error fmgate raises.

    ``record`` is the :class:`CallRecord` of the failed call when the error ended a call (also
    in the sinks and the store), else ``None``.
    """

    record: CallRecord | None = None


class ConfigurationError(FmgateError, ValueError):
    """The input is wrong: a spec, a config file, a parameter or a missing dependency."""


class SpecError(ConfigurationError):
    """A model spec that does not read as ``backend:model``."""


class UnknownBackendError(ConfigurationError):
    """No backend is registered under that name."""


class UnknownAliasError(ConfigurationError):
    """The name is neither a ``backend:model`` spec nor an alias in the config."""


class ConfigFileError(ConfigurationError):
    """An ``fmgate.toml`` that cannot be read: the message names the file, table and key."""


class MissingAPIKeyError(ConfigurationError):
    """The environment variable that should hold the API key is not set."""

    def __init__(self, message: str, *, env_var: str) -> None:
        super().__init__(message)
        self.env_var = env_var


class MissingExtraError(ConfigurationError, ImportError):
    """An optional dependency is missing; the message gives the ``pip install`` line."""

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class OfflineError(ConfigurationError):
    """Offline mode (``FMGATE_OFFLINE=1``) refused a call that would leave this machine."""


class InvalidRequestError(ConfigurationError):
    """A prompt, message list or generation parameter that fmgate refuses before sending."""


class UnsupportedFeatureError(InvalidRequestError):
    """The backend cannot honour part of the request (tools, structured output): fmgate refuses
    rather than drop it silently. ``feature`` names it (``tools``, ``output``)."""

    def __init__(self, message: str, *, feature: str) -> None:
        super().__init__(message)
        self.feature = feature


class UnsupportedTaskError(ConfigurationError):
    """The model cannot do the task asked (``classify`` on a model that only chats): the message
    names the tasks it can do, which ``tasks`` holds."""

    def __init__(self, message: str, *, tasks: frozenset[str] = frozenset()) -> None:
        super().__init__(message)
        self.tasks = tasks


class StoreError(ConfigurationError):
    """A record store that cannot be opened or read: the message names the file and what to do."""


class BackendError(FmgateError):
    """The model or the service behind it failed the call.

    ``status_code`` is the HTTP status where there was one; ``retryable`` says whether the same
    request may succeed later (429, 5xx, timeouts, connection failures); ``sent`` is ``False``
    when no connection was made (a DNS failure, a refused connection), so nothing was sent.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        provider: str | None = None,
        retry_after_s: float | None = None,
        sent: bool = True,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.provider = provider
        self.retry_after_s = retry_after_s
        self.sent = sent


class AuthenticationError(BackendError):
    """The service refused the credentials (401) or their permissions (403)."""


class NotFoundError(BackendError):
    """The service does not know the model or endpoint (404)."""


class RateLimitError(BackendError):
    """The service throttled the call or the account is out of quota (429)."""

    retryable = True


class TimeoutError(BackendError, builtins.TimeoutError):
    """No complete answer arrived within the timeout."""

    retryable = True


class ConnectionError(BackendError, builtins.ConnectionError):
    """The service could not be reached."""

    retryable = True


class BadRequestError(BackendError):
    """The service refused the request as invalid (a 4xx other than those above)."""


class ContextLengthError(BadRequestError):
    """The prompt plus ``max_tokens`` exceed the model's context window. ``window`` and
    ``prompt_tokens`` give the sizes where fmgate counted them (local models), else None."""

    window: int | None = None
    prompt_tokens: int | None = None


class ServerError(BackendError):
    """The service failed on its side (5xx)."""

    retryable = True


class MalformedResponseError(BackendError):
    """The response could not be read: not JSON, missing fields, or a stream cut short."""


class OutputValidationError(MalformedResponseError):
    """The reply does not validate as the structured output asked for (``output=``). ``text``
    keeps the raw reply; the call is recorded as failed with the validation message."""

    def __init__(self, message: str, *, text: str, schema_name: str | None = None) -> None:
        super().__init__(message)
        self.text = text
        self.schema_name = schema_name


class NoLabelError(MalformedResponseError):
    """A zero-shot classification whose answers all name none of the labels: the model answered,
    but not with a label. ``answers`` keeps each text's raw answer. ``fmgate compare`` grades
    such a call's texts as wrong rather than leaving them out."""

    def __init__(self, message: str, *, answers: Sequence[str]) -> None:
        super().__init__(message)
        self.answers = list(answers)


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut short for a message: a huge value would drown it, and an int past
    ``sys.get_int_max_str_digits()`` cannot be printed at all."""
    try:
        text = repr(value)
    except ValueError:
        return f"an {type(value).__name__} too large to print"
    return text if len(text) <= limit else text[: limit - 3] + "..."
