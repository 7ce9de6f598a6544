"""``timeout`` as a deadline, not a per-read limit.

httpx's timeouts bound each socket operation: a server that sends a byte every second holds a call
with ``timeout=3`` for as long as it likes, and SSE keep-alive comments hold a stream forever. Here
every read, write and connect of a request is bounded by the time left until a deadline held in a
context variable: the HTTP backends set it around each try (:func:`until`), and stream readers move
it on each content event (:class:`Clock`). Past it, the read raises httpcore's ``ReadTimeout``,
which the SDKs map to their timeout error as for any other.

The check sits in the connection pool's network backend (a wrapper around httpcore's own), so it
sees the bytes of the status line, headers and body alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import httpcore2
import httpx2

_DEADLINE: ContextVar[Clock | None] = ContextVar("fmgate_deadline", default=None)

MAX_BODY_BYTES = 256 * 2**20
"""The most a try reads (headers and body) before fmgate gives up on it: far above any real
answer (2,048 embeddings of 3,072 floats are about 120 MB of JSON), far below what would
exhaust memory."""


class TooLarge(httpcore2.ReadError):
    """The answer passed :data:`MAX_BODY_BYTES`: not retried, reported as malformed."""


class Clock:
    """What bounds the current try: a deadline (``time.monotonic()`` seconds; ``None``: none),
    what it stands for (for the error), and the bytes it may still read."""

    __slots__ = ("at", "what", "budget")

    def __init__(self, seconds: float | None, what: str) -> None:
        self.at = None if seconds is None else time.monotonic() + seconds
        self.what = what
        self.budget = MAX_BODY_BYTES

    def extend(self, seconds: float | None, what: str) -> None:
        """Move the deadline to ``seconds`` from now (a stream's idle limit after content)."""
        self.at = None if seconds is None else time.monotonic() + seconds
        self.what = what

    def left(self, timeout: float | None, error: type[Exception]) -> float | None:
        """The limit for one socket operation: ``timeout`` cut to the time left."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise error(f"{self.what} passed")
        return left if timeout is None else min(timeout, left)

    def spend(self, data: bytes) -> bytes:
        self.budget -= len(data)
        if self.budget < 0:
            raise TooLarge(f"the answer passed {MAX_BODY_BYTES // 2**20} MiB")
        return data

    def named(self, exc: Exception) -> Exception:
        """``exc``, a socket timeout, or (when the deadline cut it short) one that says so."""
        if self.at is None or self.at > time.monotonic():
            return exc
        return type(exc)(f"{self.what} passed")


class until:  # noqa: N801 (a context manager read as a clause: ``with until(clock):``)
    """Bound every socket operation inside by ``clock``. A class, not a generator: it runs
    around each read of a stream, where contextlib's overhead would show."""

    __slots__ = ("_clock", "_token")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def __enter__(self) -> None:
        self._token = _DEADLINE.set(self._clock)

    def __exit__(self, *exc: object) -> None:
        _DEADLINE.reset(self._token)


def _limit(timeout: float | None, error: type[Exception] = httpcore2.ReadTimeout) -> float | None:
    clock = _DEADLINE.get()
    return timeout if clock is None else clock.left(timeout, error)


class _Stream(httpcore2.NetworkStream):
    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        clock = _DEADLINE.get()
        if clock is None:
            return self._stream.read(max_bytes, timeout)
        try:
            data = self._stream.read(max_bytes, clock.left(timeout, httpcore2.ReadTimeout))
        except httpcore2.ReadTimeout as exc:
            raise clock.named(exc) from exc
        return clock.spend(data)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        clock = _DEADLINE.get()
        if clock is None:
            return self._stream.write(buffer, timeout)
        try:
            self._stream.write(buffer, clock.left(timeout, httpcore2.WriteTimeout))
        except httpcore2.WriteTimeout as exc:
            raise clock.named(exc) from exc

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        return _Stream(self._stream.start_tls(ssl_context, server_hostname, _limit(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _AsyncStream(httpcore2.AsyncNetworkStream):
    def __init__(self, stream: httpcore2.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        clock = _DEADLINE.get()
        if clock is None:
            return await self._stream.read(max_bytes, timeout)
        try:
            limit = clock.left(timeout, httpcore2.ReadTimeout)
            data = await self._stream.read(max_bytes, limit)
        except httpcore2.ReadTimeout as exc:
            raise clock.named(exc) from exc
        return clock.spend(data)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        clock = _DEADLINE.get()
        if clock is None:
            return await self._stream.write(buffer, timeout)
        try:
            await self._stream.write(buffer, clock.left(timeout, httpcore2.WriteTimeout))
        except httpcore2.WriteTimeout as exc:
            raise clock.named(exc) from exc

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._stream.start_tls(ssl_context, server_hostname, _limit(timeout))
        return _AsyncStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore2.NetworkBackend):
    def __init__(self, backend: httpcore2.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        limit = _limit(timeout, httpcore2.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, limit, local_address, socket_options)
        return _Stream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        limit = _limit(timeout, httpcore2.ConnectTimeout)
        return _Stream(self._backend.connect_unix_socket(path, limit, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _AsyncBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self, backend: httpcore2.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        limit = _limit(timeout, httpcore2.ConnectTimeout)
        stream = await self._backend.connect_tcp(host, port, limit, local_address, socket_options)
        return _AsyncStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        limit = _limit(timeout, httpcore2.ConnectTimeout)
        stream = await self._backend.connect_unix_socket(path, limit, socket_options)
        return _AsyncStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


# The SDKs' default pool size (openai and anthropic alike): a transport given to the client
# replaces the one the client would build with these.
LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)


class Transport(httpx2.HTTPTransport):
    """httpx2's transport, its connections bounded by the deadline in force."""

    def __init__(self, **options: Any) -> None:
        super().__init__(limits=LIMITS, **options)
        pool = self._pool
        # httpcore's pool takes a network backend as a constructor argument, which httpx2 does
        # not pass through: set it on the pool httpx2 built, before any connection exists.
        pool._network_backend = _Backend(pool._network_backend)


class AsyncTransport(httpx2.AsyncHTTPTransport):
    """The async twin of :class:`Transport`."""

    def __init__(self, **options: Any) -> None:
        super().__init__(limits=LIMITS, **options)
        pool = self._pool
        pool._network_backend = _AsyncBackend(pool._network_backend)
