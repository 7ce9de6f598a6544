"""The safety net for an exception a backend failed to map: never let one escape raw.

Below recording and retries alike: both meet exceptions that a backend may have left unmapped.
"""

from __future__ import annotations

from ._errors import BackendError, FmgateError
from ._secrets import redact, scrub


def as_backend_error(error: Exception, provider: str) -> FmgateError:
    """The safety net for an exception a backend failed to map: never let it escape raw.

    The messages of ``error`` and of the exceptions chained to it are redacted in place.
    """
    scrub(error)
    if isinstance(error, FmgateError):
        return error
    return BackendError(
        f"{provider}: unexpected {type(error).__name__}: {redact(str(error))}", provider=provider
    )
