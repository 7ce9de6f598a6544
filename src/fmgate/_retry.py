"""Retries: which failures are tried again, and how long to wait first.

A failure is retried when its error says ``retryable`` (429, 5xx, timeouts, connection errors;
never another 4xx), at most ``max_retries`` times. The wait is the server's ``Retry-After``
(seconds or an HTTP date, read by the backend) when it gives one, else exponential backoff with
full jitter: a uniform draw in [0, min(cap, base * 2^(n-1))] before try n + 1 (AWS's "Exponential
Backoff And Jitter"). A ``Retry-After`` longer than ``max_retry_after_s`` is not waited out: the
error is raised at once, so a caller is never parked for minutes without knowing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ._errors import BackendError, FmgateError, InvalidRequestError
from ._failure import as_backend_error

logger = logging.getLogger("fmgate")
T = TypeVar("T")

DEFAULT_MAX_RETRIES = 2
DEFAULT_BACKOFF_S = 0.5


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a model retries: ``max_retries`` extra tries after the first, ``backoff_s`` the base
    of the exponential wait, capped at ``max_backoff_s``; a server's Retry-After is honoured up
    to ``max_retry_after_s``."""

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_s: float = DEFAULT_BACKOFF_S
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise InvalidRequestError(f"max_retries must be an int, not {self.max_retries!r}")
        if self.max_retries < 0:
            raise InvalidRequestError(f"max_retries must be 0 or more, not {self.max_retries}")
        for name in ("backoff_s", "max_backoff_s", "max_retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidRequestError(f"{name} must be a number of seconds >= 0, not {value!r}")

    def delay(self, tries: int, error: FmgateError) -> float | None:
        """Seconds to wait before try ``tries + 1``, or None when the error is final."""
        if not isinstance(error, BackendError) or not error.retryable:
            return None
        if tries > self.max_retries:
            return None
        if error.retry_after_s is not None:
            return error.retry_after_s if error.retry_after_s <= self.max_retry_after_s else None
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (tries - 1))
        return random.uniform(0.0, ceiling)


NO_RETRIES = RetryPolicy(max_retries=0)


class _Timer(Protocol):
    def retry(self, failed: BaseException | None = None) -> None: ...


def call(policy: RetryPolicy, timer: _Timer, send: Callable[[], T], provider: str) -> T:
    """``send()``, tried again as ``policy`` allows; the last failure is raised as it came."""
    tries = 1
    while True:
        try:
            return send()
        except Exception as exc:
            wait = _wait(policy, tries, exc, provider)
            if wait is None:
                raise
            failed = exc
        _pause(wait, tries, provider)
        sleep(wait)
        tries += 1
        timer.retry(failed)


async def acall(
    policy: RetryPolicy, timer: _Timer, send: Callable[[], Awaitable[T]], provider: str
) -> T:
    """The async twin of :func:`call`: waits with ``asyncio.sleep``."""
    tries = 1
    while True:
        try:
            return await send()
        except Exception as exc:
            wait = _wait(policy, tries, exc, provider)
            if wait is None:
                raise
            failed = exc
        _pause(wait, tries, provider)
        await asleep(wait)
        tries += 1
        timer.retry(failed)


def _wait(policy: RetryPolicy, tries: int, exc: Exception, provider: str) -> float | None:
    return policy.delay(tries, as_backend_error(exc, provider))


def _pause(wait: float, tries: int, provider: str) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("fmgate: try %d to %s failed; retrying in %.3fs", tries, provider, wait)


def sleep(seconds: float) -> None:
    """The back-off wait (a module function, so that tests can record it instead)."""
    time.sleep(seconds)


async def asleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
