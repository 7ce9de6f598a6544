"""Streamed replies: ``Stream`` and ``AsyncStream``, which end in a Response and its record."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from . import _retry
from ._errors import FmgateError, OutputValidationError
from ._failure import as_backend_error
from ._record import CallRecord, Cost, Usage
from ._recording import CallTimer
from ._types import ChatRequest, Chunk, Completion, Delta, Response

if TYPE_CHECKING:
    from ._model import Model
    from ._tools import ToolCall


class _StreamState:
    """What the sync and async streams share: text so far, and the record at the end."""

    def __init__(self, model: Model, timer: CallTimer, request: ChatRequest) -> None:
        self._model = model
        self._timer = timer
        self._request = request
        self._parts: list[str] = []
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._model_id: str | None = None
        self._tool_calls: tuple[ToolCall, ...] = ()
        self._cost: Cost | None = None
        self._machine_s: float | None = None
        self._response: Response | None = None
        self._started = False
        self._closed_unsent = False

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    @property
    def done(self) -> bool:
        return self._response is not None

    @property
    def response(self) -> Response:
        """The final Response, once the stream is consumed or closed."""
        if self._response is None:
            if self._closed_unsent:
                raise RuntimeError(NOT_SENT)
            raise RuntimeError(
                "The stream is not finished: iterate it to the end or close it first."
            )
        return self._response

    @property
    def record(self) -> CallRecord:
        return self.response.record

    def _start(self) -> None:
        self._started = True
        self._timer.restart()

    def _take(self, delta: Delta) -> Chunk | None:
        if delta.usage is not None:
            self._usage = delta.usage
        if delta.finish_reason is not None:
            self._finish_reason = delta.finish_reason
        if delta.model_id is not None:
            self._model_id = delta.model_id
        if delta.tool_calls:
            self._tool_calls += delta.tool_calls
        if delta.cost is not None:
            self._cost = delta.cost
        if delta.machine_s is not None:
            self._machine_s = delta.machine_s
        if delta.params:
            self._timer.add_params(dict(delta.params))
        if not delta.text:
            return None
        self._timer.first_token()
        self._timer.chunks += 1
        self._parts.append(delta.text)
        return Chunk(delta.text)

    def _complete(self, finish_reason: str | None = None) -> None:
        if self._response is not None:
            return
        usage = self._usage or Usage()
        reason = finish_reason or self._finish_reason
        done = Completion(
            self.text,
            reason,
            usage,
            self._model_id,
            tool_calls=self._tool_calls,
            cost=self._cost,
            machine_s=self._machine_s,
        )
        try:
            self._response = self._timer.respond(done)
        except OutputValidationError as exc:  # recorded; the text stays readable
            assert exc.record is not None
            self._response = Response(self.text, reason, usage, exc.record, self._tool_calls)
            raise

    def _retry_wait(self, tries: int, exc: Exception) -> float | None:
        """Seconds before trying again, or None. Once text has reached the caller a failure is
        final: a retry would repeat what they already saw."""
        if self._parts:
            return None
        error = as_backend_error(exc, self._model.backend.provider)
        return self._model.retry.delay(tries, error)

    def _interrupted(self, exc: BaseException) -> None:
        if self._response is None:
            record = self._timer.fail(exc)
            self._response = Response(self.text, None, self._usage or Usage(), record)

    def _error(self, exc: Exception) -> FmgateError:
        error = as_backend_error(exc, self._model.backend.provider)
        record = self._timer.fail(error)
        self._response = Response(self.text, None, self._usage or Usage(), record)
        return error


CLIENT_CLOSED = "client_closed"
NOT_SENT = (
    "The stream was closed before it was iterated: nothing was sent, and there is no response."
)


class Stream(_StreamState):
    """A streamed reply: iterate for :class:`Chunk` objects. Use as a context manager to close
    it early; ``.response``/``.record`` are there once it is consumed or closed."""

    def __init__(self, model: Model, timer: CallTimer, request: ChatRequest) -> None:
        super().__init__(model, timer, request)
        self._source: Iterator[Delta] | None = None
        self._chunks: Iterator[Chunk] | None = None

    def __iter__(self) -> Iterator[Chunk]:
        if self._chunks is not None or self._closed_unsent:
            raise RuntimeError("A Stream can be iterated once, and not after it is closed.")
        self._chunks = self._read()
        return self._chunks

    def _read(self) -> Iterator[Chunk]:
        self._start()
        tries = 1
        while True:
            try:
                self._source = self._model.backend.stream(self._request)
                for delta in self._source:
                    chunk = self._take(delta)
                    if chunk is not None:
                        yield chunk
                break
            except GeneratorExit:
                self.close()
                raise
            except Exception as exc:
                wait = self._retry_wait(tries, exc)
                if wait is None:
                    error = self._error(exc)
                    if error is exc:
                        raise  # already mapped by the backend, with the SDK's exception as cause
                    raise error from exc
                failed = exc
            except BaseException as exc:  # cancelled or interrupted mid-call: record, go on
                self._interrupted(exc)
                raise
            _retry.sleep(wait)
            tries += 1
            self._timer.retry(failed)
        self._complete()

    def close(self) -> None:
        """Stop reading; the record says ``finish_reason="client_closed"``.

        A stream closed before it was iterated sent nothing and leaves no record.
        """
        if not self._started:
            self._closed_unsent = True
        if self._response is not None or not self._started:
            return
        if self._source is not None:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
        self._complete(CLIENT_CLOSED)

    def collect(self) -> Response:
        """Read the rest of the stream and return the final Response."""
        if self._chunks is None and not self._closed_unsent:
            self._chunks = self._read()
        for _ in self._chunks or ():
            pass
        return self.response

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream(_StreamState):
    """A streamed reply: ``async for`` gives :class:`Chunk` objects. Use ``async with`` to close
    it early; ``.response``/``.record`` are there once it is consumed or closed."""

    def __init__(self, model: Model, timer: CallTimer, request: ChatRequest) -> None:
        super().__init__(model, timer, request)
        self._source: AsyncIterator[Delta] | None = None
        self._chunks: AsyncIterator[Chunk] | None = None
        self._closing = False

    def __aiter__(self) -> AsyncIterator[Chunk]:
        if self._chunks is not None or self._closed_unsent:
            raise RuntimeError("An AsyncStream can be iterated once, and not after it is closed.")
        self._chunks = self._read()
        return self._chunks

    async def _read(self) -> AsyncIterator[Chunk]:
        self._start()
        tries = 1
        while True:
            try:
                self._source = self._model.backend.astream(self._request)
                async for delta in self._source:
                    chunk = self._take(delta)
                    if chunk is not None:
                        yield chunk
                break
            except GeneratorExit:
                await self.aclose()
                raise
            except Exception as exc:
                wait = self._retry_wait(tries, exc)
                if wait is None:
                    error = self._error(exc)
                    if error is exc:
                        raise  # already mapped by the backend, with the SDK's exception as cause
                    raise error from exc
                failed = exc
            except BaseException as exc:  # cancelled or interrupted mid-call: record, go on
                self._interrupted(exc)
                raise
            await _retry.asleep(wait)
            tries += 1
            self._timer.retry(failed)
        self._complete()

    async def aclose(self) -> None:
        """Stop reading; the record says ``finish_reason="client_closed"``.

        A stream closed before it was iterated sent nothing and leaves no record.
        """
        if not self._started:
            self._closed_unsent = True
        if self._response is not None or not self._started or self._closing:
            return
        self._closing = True  # the abandoned generator's finaliser may call this again
        if self._source is not None:
            aclose = getattr(self._source, "aclose", None)
            if aclose is not None:
                await aclose()
        self._complete(CLIENT_CLOSED)

    async def collect(self) -> Response:
        """Read the rest of the stream and return the final Response."""
        if self._chunks is None and not self._closed_unsent:
            self._chunks = self._read()
        if self._chunks is not None:
            async for _ in self._chunks:
                pass
        return self.response

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
