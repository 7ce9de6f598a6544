"""What the HTTP backends share: TLS setup, one async client per event loop, ``Retry-After``,
JSON bodies and server-sent event streams, with the failures of reading them mapped alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import inspect
import json
import math
import ssl
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import anyio
import httpx2

from .._errors import BackendError, ConnectionError, MalformedResponseError, TimeoutError
from .._secrets import redact
from .._types import Delta
from ._deadline import MAX_BODY_BYTES, AsyncTransport, Clock, TooLarge, Transport, until

# -- clients -------------------------------------------------------------------------------------


def caused_by(
    exc: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]
) -> bool:
    """Whether ``exc``, or an error it was raised from, is one of ``kinds``."""
    link: BaseException | None = exc
    for _ in range(8):  # an SDK error wraps the transport's in a chain of a few links
        if link is None:
            break
        if isinstance(link, kinds):
            return True
        link = link.__cause__ or link.__context__
    return False


def never_connected(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a connection that was never made (a DNS failure, a refused
    connection, a connect timeout): then the request was not sent."""
    return caused_by(exc, (httpx2.ConnectError, httpx2.ConnectTimeout))


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context for all clients: loading the CA bundle takes ~25 ms per client, which
    would land in the latency of the first async call on each event loop (its client is built
    then)."""
    return httpx2.create_ssl_context()


_S = TypeVar("_S")


def sdk_client(
    cls: Callable[..., _S],
    http: type[httpx2.Client | httpx2.AsyncClient],
    *,
    timeout: float | None,
    **options: Any,
) -> _S:
    """An SDK client as fmgate runs it: without the SDK's retries (fmgate retries itself, so that
    a record's attempts are honest), on the shared TLS context, with the user's timeout if any,
    over a transport that holds each try to its deadline (:mod:`._deadline`)."""
    if timeout is not None:
        options["timeout"] = timeout
    client: httpx2.Client | httpx2.AsyncClient
    if issubclass(http, httpx2.AsyncClient):
        client = http(transport=AsyncTransport(verify=ssl_context()))
    else:
        client = http(transport=Transport(verify=ssl_context()))
    return cls(max_retries=0, http_client=client, **options)


def try_clock(timeout: float | None, *, stream: bool) -> Clock:
    """What bounds one try: ``timeout`` seconds from sending to the last byte or, for a stream,
    to the first content event; and a cap on the bytes read."""
    if timeout is None:
        return Clock(None, "no deadline")
    if stream:
        return Clock(timeout, f"the deadline for the first content ({timeout:g} s)")
    return Clock(timeout, f"the deadline for the whole answer ({timeout:g} s)")


def too_large(exc: BaseException) -> bool:
    """Whether ``exc`` comes from an answer past the size cap (:data:`_deadline.MAX_BODY_BYTES`)."""
    return caused_by(exc, TooLarge)


class ClosedWhenCollected:
    """Mixed into an SDK's default httpx2 client: closes it when collected, as the SDKs do with
    the clients they build themselves. An async one can only be closed on a running loop."""

    def __del__(self) -> None:
        client: Any = self
        if client.is_closed:
            return
        with contextlib.suppress(Exception):
            if isinstance(client, httpx2.AsyncClient):
                asyncio.get_running_loop().create_task(client.aclose())
            else:
                client.close()


_C = TypeVar("_C")


class PerLoop(Generic[_C]):
    """One async client per running event loop, built on its first use there and then reused.

    An httpx2 connection pool cannot outlive its event loop (reused on the next ``asyncio.run``
    it fails with "Event loop is closed"). Each client is closed on its own loop when that loop
    shuts down (``asyncio.run`` finalises async generators then, and a small one waits for it),
    so a script that calls ``asyncio.run`` many times does not keep a connection per finished loop.
    """

    def __init__(
        self,
        build: Callable[[], _C],
        close: Callable[[_C], Awaitable[None]],
        on_build: Callable[[float], None] | None = None,
    ) -> None:
        self._build = build
        self._close = close
        # Held weakly: a bound method of the backend would make a cycle (see _closer).
        self._on_build = weakref.WeakMethod(on_build) if inspect.ismethod(on_build) else on_build
        self._lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[_C, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()

    async def get(self) -> _C:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is not None:
            return entry[0]
        t0 = time.perf_counter()
        client = self._build()
        report = (
            self._on_build() if isinstance(self._on_build, weakref.WeakMethod) else self._on_build
        )
        if report is not None:
            report(time.perf_counter() - t0)
        closer = _closer(weakref.ref(self), loop, client, self._close)
        with self._lock:
            self._clients[loop] = (client, closer)
        # Run it to its yield, so that the loop knows it and closes it as the loop shuts down.
        await anext(closer)
        return client

    def __len__(self) -> int:
        """How many loops hold a client now."""
        return len(self._clients)

    async def aclose(self) -> None:
        """Close the running loop's client now; the others are closed soon on their own loops."""
        with self._lock:
            entry = self._clients.pop(asyncio.get_running_loop(), None)
            # Dropped, the other closers are finalised: their loops run them to the end.
            self._clients.clear()
        if entry is not None:
            await entry[1].aclose()

    def _forget(self, loop: asyncio.AbstractEventLoop, client: _C) -> None:
        with self._lock:
            entry = self._clients.get(loop)
            if entry is not None and entry[0] is client:
                del self._clients[loop]


async def _closer(
    holder: weakref.ref[PerLoop[_C]],
    loop: asyncio.AbstractEventLoop,
    client: _C,
    close: Callable[[_C], Awaitable[None]],
) -> AsyncGenerator[None, None]:
    """Waits at its yield; when its loop shuts down (or the holder is dropped), closes ``client``.

    It holds its PerLoop weakly: a cycle would leave the clients' sockets to the garbage
    collector, which may finalise them before the clients that would close them.
    """
    try:
        yield
    finally:
        owner = holder()
        if owner is not None:
            owner._forget(loop, client)
        await close(client)


# -- answers -------------------------------------------------------------------------------------


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


def json_body(response: httpx2.Response, provider: str) -> Any:
    """The parsed JSON of a 2xx body; MalformedResponseError when it is not JSON."""
    try:
        return json.loads(response.content)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        kind = response.headers.get("content-type", "no content-type")
        raise MalformedResponseError(
            f"{provider}: the response body is not JSON ({kind}, {len(response.content)} bytes).",
            status_code=response.status_code,
            provider=provider,
        ) from exc


# -- event streams -------------------------------------------------------------------------------

MAX_EVENT_BYTES = 16 * 2**20
"""The largest one server-sent event may be (a real one holds a few tokens, or one answer)."""

# What breaks a body mid-read: httpx2's errors, plus the TLS and AnyIO failures it does not wrap
# yet (the SDKs' own stream readers catch the same ones).
READ_ERRORS = (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream)
# What reading an event's data may raise when it is not the documented shape.
BAD_DATA = (ValueError, KeyError, TypeError, AttributeError, IndexError)


class EventReader(ABC):
    """Reads the bytes of a server-sent event stream into deltas; a subclass reads each event.

    Splits events by the WHATWG rules (LF, CRLF or CR line ends; ``data`` lines joined by LF;
    comments and ``id``/``retry`` fields skipped). ``started``: an event was read, so a failure
    now is no longer a clean connection error; ``done``: the answer is whole, and what follows
    (events, a dropped connection) is ignored.
    """

    __slots__ = ("_cr", "_pending", "_size", "done", "provider", "started")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.started = False
        self.done = False
        self._pending: list[bytes] = []  # the bytes of an event not yet ended
        self._size = 0
        self._cr = b""  # a CR at a chunk's end: maybe the first half of a CRLF

    @abstractmethod
    def event(self, name: str | None, data: bytes) -> Delta | None:
        """The delta of one event, or None; raises BAD_DATA for data it cannot read."""

    @abstractmethod
    def end(self) -> Delta | None:
        """At the end of the body: the closing delta, or MalformedResponseError if cut short."""

    def malformed(self, exc: Exception) -> MalformedResponseError:
        """The error for an event whose data does not have the documented shape."""
        reason = f"{type(exc).__name__}: {exc}"
        return MalformedResponseError(
            redact(f"{self.provider}: an unreadable stream event ({reason})."),
            provider=self.provider,
        )

    def feed(self, chunk: bytes, *, end: bool = False) -> Iterator[Delta]:
        """The deltas of the events that ``chunk`` completes, each as soon as it is read.

        Only the new bytes are searched for an event's end, so an event that arrives in many
        chunks costs linear time; one past :data:`MAX_EVENT_BYTES` is refused.
        """
        chunk, self._cr = self._cr + chunk, b""
        if b"\r" in chunk:
            chunk = _lf_only(chunk, end=end)
            if chunk.endswith(b"\r") and not end:
                chunk, self._cr = chunk[:-1], b"\r"
        tail = self._pending[-1][-1:] if self._pending else b""
        if b"\n\n" not in tail + chunk:
            self._hold(chunk)
            return
        buffer = b"".join((*self._pending, chunk))
        *blocks, rest = buffer.split(b"\n\n")
        self._pending, self._size = ([rest], len(rest)) if rest else ([], 0)
        try:
            for block in blocks:
                name, data = _fields(block)
                if data is None or self.done:
                    continue
                self.started = True
                delta = self.event(name, data)
                if delta is not None:
                    yield delta
        except BAD_DATA as exc:
            raise self.malformed(exc) from exc

    def leftover(self) -> bytes:
        """The bytes after the last complete event (at the end: a body that was not events)."""
        return b"".join(self._pending)

    def _hold(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._pending.append(chunk)
        self._size += len(chunk)
        if self._size > MAX_EVENT_BYTES:
            raise MalformedResponseError(
                f"{self.provider}: a stream event passed {MAX_EVENT_BYTES // 2**20} MiB without "
                "ending: not a real answer.",
                provider=self.provider,
            )

    def finish(self) -> Iterator[Delta]:
        """At the end of the body: what is left, then the closing delta."""
        yield from self.feed(b"", end=True)
        try:
            last = self.end()
        except BAD_DATA as exc:
            raise self.malformed(exc) from exc
        if last is not None:
            yield last

    def failure(self, exc: Exception) -> BackendError | None:
        """The error for a body that broke while being read; None once the answer is whole."""
        provider = self.provider
        if self.done:
            return None
        if isinstance(exc, httpx2.TimeoutException):
            message = f"{provider}: the stream stalled: {str(exc) or 'past the read timeout'}."
            return TimeoutError(message, provider=provider)
        if too_large(exc):
            message = f"{provider}: the stream sent {MAX_BODY_BYTES // 2**20} MiB without content."
            return MalformedResponseError(message, provider=provider)
        reason = f"{type(exc).__name__}: {redact(str(exc))}"
        if not self.started:  # nothing read yet: the same request may well succeed again
            return ConnectionError(
                f"{provider}: the connection dropped before the stream began ({reason}).",
                provider=provider,
            )
        return MalformedResponseError(
            f"{provider}: the connection dropped mid-stream ({reason}): cut short.",
            provider=provider,
        )


def events(
    response: httpx2.Response, reader: EventReader, clock: Clock, idle_s: float | None
) -> Iterator[Delta]:
    """The deltas of a streamed body, read to its end so that the connection can be reused;
    the response is closed at the end, on failure, and when the generator is closed early.

    Each read is bounded by ``clock``; each content event moves it to ``idle_s`` from then, so
    that keep-alive comments, which carry no content, cannot hold the stream open.
    """
    chunks = response.iter_bytes()
    try:
        while True:
            with until(clock):
                chunk = next(chunks, None)
            if chunk is None:
                break
            for delta in reader.feed(chunk):
                clock.extend(idle_s, _idle(idle_s))
                yield delta
        yield from reader.finish()
    except READ_ERRORS as exc:
        error = reader.failure(exc)
        if error is not None:
            raise error from exc
    finally:
        response.close()


async def aevents(
    response: httpx2.Response, reader: EventReader, clock: Clock, idle_s: float | None
) -> AsyncGenerator[Delta, None]:
    """:func:`events` for an async response. Close it early with ``contextlib.aclosing``."""
    chunks = response.aiter_bytes()
    try:
        while True:
            with until(clock):
                chunk = await anext(chunks, None)
            if chunk is None:
                break
            for delta in reader.feed(chunk):
                clock.extend(idle_s, _idle(idle_s))
                yield delta
        for delta in reader.finish():
            yield delta
    except READ_ERRORS as exc:
        error = reader.failure(exc)
        if error is not None:
            raise error from exc
    finally:
        await response.aclose()


def _idle(idle_s: float | None) -> str:
    return "no deadline" if idle_s is None else f"the idle limit between events ({idle_s:g} s)"


def _lf_only(buffer: bytes, *, end: bool) -> bytes:
    # A CR at the very end may be the first half of a CRLF split across chunks: keep it for later.
    keep = b"\r" if buffer.endswith(b"\r") and not end else b""
    body = buffer[: len(buffer) - len(keep)]
    return body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + keep


def _fields(block: bytes) -> tuple[str | None, bytes | None]:
    """The event name and data of one event block; data None when the block has no data line."""
    if block.startswith(b"data: ") and b"\n" not in block:  # the common one-line event
        return None, block[6:]
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    return event, (b"\n".join(data) if data else None)
