"""The prompts of one ``generate_many`` batch: their timers, requests, text listeners and results.

A listener (``on_text=`` of ``generate_many``) receives a row's text piece by piece as the backend
decodes it, for backends that stream batches (``streams_batches``), or whole when the row ends for
the others. A listener that returns ``False`` says its reader has gone: the row's record then ends
with ``finish_reason="client_closed"``, as a stream closed early does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import (
    FmgateError,
    InvalidRequestError,
    MalformedResponseError,
    OfflineError,
    OutputValidationError,
)
from ._failure import as_backend_error
from ._recording import CallTimer
from ._stream import CLIENT_CLOSED
from ._tags import tagged
from ._types import ChatRequest, Completion, OnText, Prompt, Response

if TYPE_CHECKING:
    from ._model import Model

TextListener = Callable[[str], "bool | None"]
"""Called with each piece of a row's text; ``False`` means its reader has gone."""


Row = tuple[Prompt, Mapping[str, str], TextListener | None]
"""One prompt of ``generate_many``: the prompt, its tags and its text listener."""


def many_rows(
    prompts: Sequence[Prompt],
    tags: Sequence[Mapping[str, str]] | None,
    on_text: Sequence[TextListener | None] | None,
) -> list[Row]:
    """``generate_many``'s arguments checked and zipped, one row per prompt."""
    if isinstance(prompts, str | bytes):  # a str is a Sequence too: one call per character
        raise InvalidRequestError(
            "generate_many() takes a list of prompts, not one str: use generate() for one prompt, "
            "or pass [prompt]."
        )
    prompts = list(prompts)
    n = len(prompts)
    return list(zip(prompts, per_prompt(tags, n), per_prompt_listeners(on_text, n), strict=True))


def run_many(
    model: Model,
    rows: Sequence[Row],
    params: dict[str, Any],
    size: int | None,
    concurrency: int,
    return_exceptions: bool,
) -> list[Response | FmgateError]:
    """``Model.generate_many``: ``size`` rows per batch, or (``size`` None: the backend does not
    batch) ``concurrency`` calls at a time."""
    if size is not None:
        whole = _continuous(model, rows, params)
        if whole is not None:  # every row at once; ``size`` of them in the batch at a time
            whole.settle(_call(model, whole, window=size))
            return whole.results(return_exceptions)
        results: list[Response | FmgateError] = []
        for start in range(0, len(rows), size):
            batch = prepare(model, rows[start : start + size], params)
            if batch.requests:
                batch.settle(_call(model, batch))
            results.extend(batch.results(return_exceptions))
        return results

    def one(row: Row) -> Response | FmgateError:
        try:
            with tagged(row[1]):
                return _one(model, row[0], row[2], params)
        except FmgateError as exc:
            if return_exceptions:
                return exc
            raise

    if concurrency == 1 or len(rows) <= 1:
        return [one(row) for row in rows]
    from concurrent.futures import ThreadPoolExecutor
    from contextvars import copy_context

    with ThreadPoolExecutor(max_workers=min(concurrency, len(rows))) as pool:
        # Each call runs in a copy of the caller's context: its tags reach the records.
        futures = [pool.submit(copy_context().run, one, row) for row in rows]
        return [f.result() for f in futures]


async def arun_many(
    model: Model,
    rows: Sequence[Row],
    params: dict[str, Any],
    size: int | None,
    concurrency: int,
    return_exceptions: bool,
) -> list[Response | FmgateError]:
    """``Model.agenerate_many``: the async twin of :func:`run_many`."""
    import asyncio

    if size is not None:
        whole = _continuous(model, rows, params)
        if whole is not None:
            whole.settle(await _acall(model, whole, window=size))
            return whole.results(return_exceptions)
        results: list[Response | FmgateError] = []
        for start in range(0, len(rows), size):
            batch = prepare(model, rows[start : start + size], params)
            if batch.requests:
                batch.settle(await _acall(model, batch))
            results.extend(batch.results(return_exceptions))
        return results
    gate = asyncio.Semaphore(concurrency)

    async def one(row: Row) -> Response | FmgateError:
        async with gate:
            try:
                with tagged(row[1]):
                    return await _aone(model, row[0], row[2], params)
            except FmgateError as exc:
                if return_exceptions:
                    return exc
                raise

    return await asyncio.gather(*(one(row) for row in rows))


def prepare(model: Model, rows: Sequence[Row], params: dict[str, Any]) -> Batch:
    """Check and time each prompt of a batch; refused prompts get their error in place."""
    params = dict(params)
    system = params.pop("system", None)
    batch = Batch(len(rows))
    for i, (prompt, label, listener) in enumerate(rows):
        try:
            with tagged(label):  # the timer takes the tags in force as it is made
                stream = listener is not None
                timer, request = model.prepare(prompt, system, stream=stream, params=params)
        except (InvalidRequestError, OfflineError) as exc:
            batch.slots[i] = exc
            continue
        batch.add(i, timer, request, listener)
    for timer in batch.timers:
        timer.in_batch(len(batch.timers))
    return batch


# generate_many settings a continuous batch takes; any other (tools, output, seed, a backend's
# own) sends the rows to static batches
_CONTINUOUS_PARAMS = frozenset({"max_tokens", "temperature", "top_p", "stop", "system", "seed"})


def _continuous(model: Model, rows: Sequence[Row], params: dict[str, Any]) -> Batch | None:
    """All the rows as one batch, when the backend batches continuously (a local chat model:
    ``continuous_engine``) and every row is plain text chat; else None (static batches)."""
    if len(rows) < 2 or not batches_continuously(model, params, [p for p, _, _ in rows]):
        return None
    return prepare(model, rows, params)


def batches_continuously(
    model: Model, params: Mapping[str, Any], prompts: Sequence[Prompt]
) -> bool:
    """Whether these prompts, with these settings, can join ``model``'s continuous batch: a
    backend with one (``continuous_engine``: local chat models), plain text chat, and no
    setting beyond max_tokens, temperature, top_p, stop, system and seed."""
    engine_for = getattr(model.backend, "continuous_engine", None)
    if engine_for is None or engine_for() is None:
        return False
    if any(v is not None for k, v in params.items() if k not in _CONTINUOUS_PARAMS):
        return False
    return all(_plain_prompt(prompt) for prompt in prompts)


def _plain_prompt(prompt: Prompt) -> bool:
    """Text, or messages of text only: no images, tool calls or tool results."""
    if isinstance(prompt, str):
        return True
    return all(
        isinstance(m, Mapping)
        and isinstance(m.get("content"), str)
        and m.get("role") != "tool"
        and not m.get("tool_calls")
        for m in prompt
    )


def _call(
    model: Model, batch: Batch, window: int | None = None
) -> list[Completion | FmgateError] | FmgateError:
    backend = model.backend
    hooks = batch.hooks() if backend.streams_batches else None
    more: dict[str, Any] = {"window": window} if window is not None else {}
    try:
        if hooks is None and not more:  # a backend of a plugin may not take on_text at all
            return backend.complete_batch(batch.requests)
        return backend.complete_batch(batch.requests, on_text=hooks, **more)
    except Exception as exc:
        return as_backend_error(exc, backend.provider)


async def _acall(
    model: Model, batch: Batch, window: int | None = None
) -> list[Completion | FmgateError] | FmgateError:
    backend = model.backend
    hooks = batch.hooks() if backend.streams_batches else None
    more: dict[str, Any] = {"window": window} if window is not None else {}
    try:
        if hooks is None and not more:
            return await backend.acomplete_batch(batch.requests)
        return await backend.acomplete_batch(batch.requests, on_text=hooks, **more)
    except Exception as exc:
        return as_backend_error(exc, backend.provider)


def _one(
    model: Model, prompt: Prompt, listener: TextListener | None, params: dict[str, Any]
) -> Response:
    """One prompt without batching: streamed to its listener when it has one."""
    if listener is None:
        return model.generate(prompt, **params)
    with model.stream(prompt, **params) as chunks:
        for chunk in chunks:
            if listener(chunk.text) is False:
                break  # closing the stream records it as client_closed
    return chunks.response


async def _aone(
    model: Model, prompt: Prompt, listener: TextListener | None, params: dict[str, Any]
) -> Response:
    if listener is None:
        return await model.agenerate(prompt, **params)
    async with model.astream(prompt, **params) as chunks:
        async for chunk in chunks:
            if listener(chunk.text) is False:
                break
    return chunks.response


def per_prompt(tags: Sequence[Mapping[str, str]] | None, n: int) -> list[Mapping[str, str]]:
    if tags is None:
        return [{}] * n
    if (
        isinstance(tags, Mapping)
        or len(tags) != n
        or not all(isinstance(t, Mapping) and _all_str(t) for t in tags)
    ):
        raise InvalidRequestError(
            f"tags must be a sequence of one mapping per prompt ({n}), e.g. "
            '[{"item": "1"}, {"item": "2"}]; use fmgate.tagged() to tag every prompt alike.'
        )
    return list(tags)


def per_prompt_listeners(
    on_text: Sequence[TextListener | None] | None, n: int
) -> list[TextListener | None]:
    if on_text is None:
        return [None] * n
    if len(on_text) != n or not all(f is None or callable(f) for f in on_text):
        raise InvalidRequestError(
            f"on_text must be a sequence of one callable (or None) per prompt ({n})."
        )
    return list(on_text)


def _all_str(tags: Mapping[Any, Any]) -> bool:
    return all(isinstance(k, str) and k and isinstance(v, str) for k, v in tags.items())


class Batch:
    """The prompts of one batch: their timers and requests, then their results in order."""

    def __init__(self, size: int) -> None:
        self.slots: list[Response | FmgateError | None] = [None] * size
        self._index: list[int] = []
        self.timers: list[CallTimer] = []
        self.requests: list[ChatRequest] = []
        self._listeners: list[TextListener | None] = []
        self._gone: list[bool] = []

    def add(
        self, index: int, timer: CallTimer, request: ChatRequest, listener: TextListener | None
    ) -> None:
        self._index.append(index)
        self.timers.append(timer)
        self.requests.append(request)
        self._listeners.append(listener)
        self._gone.append(False)

    def hooks(self) -> list[OnText | None] | None:
        """What a backend that streams batches calls with each row's text, or None."""
        if not any(self._listeners):
            return None
        return [self._hook(n) if f is not None else None for n, f in enumerate(self._listeners)]

    def _hook(self, n: int) -> OnText:
        timer, listener = self.timers[n], self._listeners[n]
        assert listener is not None

        def on_text(text: str) -> bool:
            timer.first_token()
            timer.chunks += 1
            if not self._gone[n] and listener(text) is False:
                self._gone[n] = True
            return not self._gone[n]  # False: a backend may end the row now (its reader left)

        return on_text

    def settle(self, outcome: list[Completion | FmgateError] | FmgateError) -> None:
        """Record each prompt: a whole-batch error fails them all, a row error fails its row."""
        if not isinstance(outcome, FmgateError) and len(outcome) != len(self.requests):
            outcome = MalformedResponseError(
                f"the backend returned {len(outcome)} completions for {len(self.requests)} prompts"
            )
        for n, (index, timer) in enumerate(zip(self._index, self.timers, strict=True)):
            result = outcome if isinstance(outcome, FmgateError) else outcome[n]
            if isinstance(result, FmgateError):
                timer.fail(result)
                self.slots[index] = result
            else:
                try:
                    self.slots[index] = timer.respond(self._delivered(n, result))
                except OutputValidationError as exc:  # recorded; this row fails, not the batch
                    self.slots[index] = exc

    def _delivered(self, n: int, row: Completion) -> Completion:
        """``row`` once its listener has it: whole now if the backend did not stream it."""
        if self._listeners[n] is None:
            return row
        if self.timers[n].chunks == 0 and row.text:
            self._hook(n)(row.text)
        if self._gone[n]:  # it ran to its end, unread: its record says so
            return dataclasses.replace(row, finish_reason=CLIENT_CLOSED)
        return row

    def results(self, return_exceptions: bool) -> list[Response | FmgateError]:
        done = [slot for slot in self.slots if slot is not None]
        if not return_exceptions:
            for slot in done:
                if isinstance(slot, FmgateError):
                    raise slot
        return done
