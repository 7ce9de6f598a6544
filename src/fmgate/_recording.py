"""Where records go: sinks, and the one place a call becomes a record.

Every call goes through :class:`CallTimer`, owned by ``Model``: it reads the monotonic clock,
prices the usage and builds the :class:`CallRecord`, for every backend alike.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import os
import platform
import random
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._clean import SANITIZED_TAG, clean_text, clean_usage, clean_value
from ._cost import Priced, list_price, unknown
from ._errors import BackendError, ConfigurationError, FmgateError, OutputValidationError
from ._failure import as_backend_error
from ._record import (
    OPERATIONS,
    Access,
    CallRecord,
    Cost,
    Environment,
    Latency,
    Outcome,
    OutputCheck,
    Status,
    Task,
    ToolUse,
    Usage,
)
from ._secrets import redact
from ._tags import current_tags
from ._types import ChatRequest, Completion, Response

if TYPE_CHECKING:
    from ._tools import OutputSpec
    from .backends._base import Backend

logger = logging.getLogger("fmgate")

# Record ids: 128 random bits as 32 hex digits, like uuid4().hex but from a generator seeded once
# from os.urandom (and again in a forked child) instead of a system call per record: a seventh of
# the time, on the path of every call. Ids need to be unique, not unpredictable.
_IDS = random.Random()
os.register_at_fork(after_in_child=_IDS.seed)


def new_record_id() -> str:
    return f"{_IDS.getrandbits(128):032x}"


@runtime_checkable
class Sink(Protocol):
    """Anything that takes records: ``write`` must be quick and thread-safe."""

    def write(self, record: CallRecord) -> None: ...

    def flush(self) -> None: ...


class MemorySink:
    """The newest ``maxlen`` records, in memory."""

    def __init__(self, maxlen: int | None = 10_000) -> None:
        self._records: collections.deque[CallRecord] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def write(self, record: CallRecord) -> None:
        with self._lock:
            self._records.append(record)

    def flush(self) -> None:
        pass

    @property
    def records(self) -> list[CallRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        return len(self._records)


class JsonlSink:
    """One JSON object per line (``CallRecord.to_dict``), appended and flushed per record."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: CallRecord) -> None:
        # default=str: a backend parameter that is not JSON (a Decimal) must not lose the record
        flat = record.to_dict()
        line = json.dumps(flat, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    @staticmethod
    def read(path: str | os.PathLike[str]) -> list[CallRecord]:
        with Path(path).open(encoding="utf-8") as f:
            return [CallRecord.from_dict(json.loads(line)) for line in f if line.strip()]


_MEMORY = MemorySink()
# load's layer adds the embedded SQLite store ($FMGATE_STORE), which opens on the first record.
_SINKS: list[Sink] = [_MEMORY]
_SINKS_LOCK = threading.Lock()


def add_sink(sink: Sink) -> None:
    """Send every record of this process to ``sink`` as well."""
    with _SINKS_LOCK:
        _SINKS.append(sink)


def remove_sink(sink: Sink) -> None:
    with _SINKS_LOCK:
        _SINKS.remove(sink)


def recent(n: int | None = None) -> list[CallRecord]:
    """The newest records of this process (the in-memory sink keeps the last 10,000)."""
    records = _MEMORY.records
    return records if n is None else records[-n:]


def flush() -> None:
    """Wait until every registered sink has stored what it was given (the SQLite store included)."""
    with _SINKS_LOCK:
        sinks = list(_SINKS)
    for sink in sinks:
        try:
            sink.flush()
        except Exception:
            logger.exception("fmgate: sink %r failed to flush", sink)


def emit(record: CallRecord, extra: Iterable[Sink] = ()) -> None:
    for sink in (*_SINKS, *extra):
        try:
            sink.write(record)
        except Exception:  # a broken sink must not break the call it records
            logger.exception("fmgate: sink %r failed to write a record", sink)


_SERVING: ContextVar[tuple[str, str] | None] = ContextVar("fmgate_fallback", default=None)


@contextmanager
def serving_for(failed: str, reason: str) -> Iterator[None]:
    """Calls started inside stand in for ``failed``, which failed with ``reason``: their records
    say so (``outcome.fallback_from``, ``outcome.fallback_reason``)."""
    token = _SERVING.set((failed, reason))
    try:
        yield
    finally:
        _SERVING.reset(token)


def serving_fallback() -> tuple[str, str] | None:
    """(the model that failed, why) while a stand-in call runs, else None."""
    return _SERVING.get()


_PART: ContextVar[bool] = ContextVar("fmgate_part", default=False)


@contextmanager
def parts_of_one_call() -> Iterator[None]:
    """Calls started inside are parts of one call that records them as one (a zero-shot
    classify of many texts is one record, not one per text): their records are built, for the
    caller to sum, but not stored; the model's cold start stays for the enclosing call."""
    token = _PART.set(True)
    try:
        yield
    finally:
        _PART.reset(token)


@functools.cache
def environment(library: str | None) -> Environment:
    from importlib.metadata import PackageNotFoundError, version

    lib = None
    if library is not None:
        try:
            lib = f"{library} {version(library)}"
        except PackageNotFoundError:
            lib = library
    try:
        own = version("fmgate")
    except PackageNotFoundError:
        own = None
    return Environment(own, lib, platform.python_version())


class CallTimer:
    """Times one call and turns its outcome into a record. Not shared between calls."""

    __slots__ = (
        "_model",
        "_task",
        "_operation",
        "_stream",
        "_params",
        "_started_at",
        "_t0",
        "_ttft",
        "_share",
        "_tags",
        "_meter",
        "_wall_t0",
        "_early_setup",
        "_fallback",
        "_sent_before",
        "_part",
        "_tools",
        "_output",
        "_spec",
        "_images",
        "attempts",
        "chunks",
    )

    def __init__(
        self,
        model: ModelLike,
        *,
        task: Task,
        stream: bool,
        params: dict[str, Any],
        share: float = 1.0,
    ) -> None:
        self._model = model
        self._task = task
        self._operation = OPERATIONS[task]  # a task without an operation name fails here, early
        self._stream = stream
        self._params = params
        self._share = share
        self._tags = current_tags()
        self._fallback = serving_fallback()
        self._part = _PART.get()
        self._ttft: float | None = None
        self._early_setup = 0.0
        self._sent_before = False
        self._tools = ToolUse()
        self._output = OutputCheck()
        self._spec: OutputSpec | None = None
        self._images: tuple[int, int] | None = None
        self.attempts = 1
        self.chunks = 0
        self.restart()

    def read_images(self, sizes: Sequence[tuple[int, int]]) -> None:
        """The call reads these images (width, height): ``usage.images_in`` and ``pixels_in``."""
        if sizes:
            self._images = (len(sizes), sum(w * h for w, h in sizes))

    def asked(self, request: ChatRequest) -> None:
        """What the request asks beyond text: its images, its tools and its structured output,
        for the record (and the output to check the reply against, in :meth:`respond`)."""
        images = [image for m in request.messages for image in m.images]
        if images:
            self.read_images([(image.width, image.height) for image in images])
        if request.tools:
            self._tools = ToolUse(offered=len(request.tools), choice=request.tool_choice or "auto")
        if request.output is not None:
            self._spec = request.output
            mode = self._model.backend.output_mode
            self._output = OutputCheck(request.output.name, request.output.digest, mode=mode)

    def restart(self) -> None:
        """Start the clock now (a stream starts when it is first iterated, not when created)."""
        self._meter = self._model.backend.start_meter()
        self._started_at = datetime.now(UTC)
        self._t0 = self._wall_t0 = time.perf_counter()

    def retry(self, failed: BaseException | None = None) -> None:
        """Start the next try: its latency is measured afresh; the wall clock runs on.

        ``failed`` is the previous try's error: if that try sent the request, so did the call.
        """
        self._sent_before = self._sent_before or sent_anything(failed) is not False
        # A client built during an earlier try is cold start, but not part of this try's time.
        self._early_setup += self._model.backend.take_setup_s() or 0.0
        self.attempts += 1
        self._ttft = None
        self.chunks = 0
        self._meter = self._model.backend.start_meter()
        self._t0 = time.perf_counter()

    def add_params(self, values: dict[str, Any]) -> None:
        """Settings learnt while the call ran (a pipeline's default steps), for the record."""
        self._params = {**self._params, **values}

    def in_batch(self, size: int) -> None:
        """This call ran as one of ``size`` in one pass: its cost is its share of the batch's."""
        self._share = 1.0 / size
        self._params = {**self._params, "batch_size": size}

    def shared(self, machine_s: float, waited_s: float = 0.0) -> None:
        """This call ran in a continuous batch, where rows come and go: its cost is its
        ``machine_s`` seconds of the machine (processor sharing) over its own wall time, and
        its latency is its own, not a batch's (no ``batch_size``). ``waited_s``: it waited that
        long for a place among ``generate_many``'s rows first; its clock starts after."""
        waited_s = min(max(waited_s, 0.0), time.perf_counter() - self._t0)
        if waited_s:
            self._t0 += waited_s
            self._started_at += timedelta(seconds=waited_s)
            if self._ttft is not None:
                self._ttft = max(0.0, self._ttft - waited_s)
        total = time.perf_counter() - self._t0
        self._share = min(1.0, machine_s / total) if total > 0 else 1.0
        params = {k: v for k, v in self._params.items() if k != "batch_size"}
        self._params = {**params, "batching": "continuous"}

    def first_token(self) -> None:
        if self._ttft is None:
            self._ttft = time.perf_counter() - self._t0

    def succeed(
        self,
        *,
        usage: Usage,
        model_id: str | None,
        finish_reason: str | None,
        first_token_at: float | None = None,
        failed_items: BaseException | None = None,
        tool_calls: int = 0,
        invalid: BaseException | None = None,
        cost: Cost | None = None,
    ) -> CallRecord:
        """Record a success. ``failed_items``: some items of a many-item call failed while the
        others succeeded; the record stays ok and its error fields describe those items.
        ``invalid``: the reply came back, priced and timed, but is not the structured output
        asked for; the record is an error with that message. ``cost``: the backend's own price
        of the call (a per-image table), used instead of a list price from the usage."""
        total = time.perf_counter() - self._t0
        if first_token_at is not None and self._ttft is None:
            self._ttft = max(0.0, first_token_at - self._t0)
        total, ttft, load_s = self._cold_start(total)
        backend = self._model.backend
        changed: list[str] = []
        usage = clean_usage(usage, changed)  # an impossible count is unknown, and never priced
        usage = self._with_images(usage)
        resolved = clean_text(model_id, "model_id", changed) or backend.model
        priced = Priced(cost) if cost is not None else self._price(resolved, usage, total)
        access = self._access(context_window=priced.context_window)
        latency = Latency.measure(
            total,
            ttft_s=ttft,
            load_s=load_s,
            output_tokens=usage.output_tokens,
            wall_s=self._wall(),
        )
        partial: dict[str, Any] = {}
        failed = invalid or failed_items
        if failed is not None:
            partial = dict(error_type=type(failed).__name__, error_message=str(failed)[:2000])
        status: Status = "error" if invalid is not None else "ok"
        outcome = self._outcome(status, finish_reason, sent=True, **partial)
        if self._tools.offered is not None:
            self._tools = dataclasses.replace(self._tools, called=tool_calls)
        record = self._record(resolved, usage, latency, priced.cost, access, outcome, changed)
        if isinstance(invalid, FmgateError):
            invalid.record = record
        return record

    def respond(self, completion: Completion) -> Response:
        """The caller's Response to a completed call, with its record. With structured output
        asked (and no tool called instead) the reply is validated: ``parsed`` holds the value,
        or the call is recorded as failed and OutputValidationError raised, keeping the text."""
        parsed, invalid = None, None
        whole = completion.finish_reason != "client_closed"  # a reply cut off is not checked
        if self._spec is not None and whole and not completion.tool_calls:
            try:
                parsed = self._spec.parse(completion.text)
            except OutputValidationError as exc:
                invalid = exc
                if completion.finish_reason == "content_filter":  # a refusal, not a bad shape
                    invalid = OutputValidationError(
                        f"The model refused to answer as {self._spec.name}: "
                        f"{completion.text[:200]!r}",
                        text=completion.text,
                        schema_name=self._spec.name,
                    )
            self._output = dataclasses.replace(self._output, valid=invalid is None)
        if completion.params:
            self.add_params(dict(completion.params))
        if completion.machine_s is not None:
            self.shared(completion.machine_s, completion.waited_s or 0.0)
        record = self.succeed(
            usage=completion.usage,
            model_id=completion.model_id,
            finish_reason=completion.finish_reason,
            first_token_at=completion.first_token_at,
            tool_calls=len(completion.tool_calls),
            invalid=invalid,
            cost=completion.cost,
        )
        if invalid is not None:
            raise invalid
        return Response(
            completion.text,
            completion.finish_reason,
            completion.usage,
            record,
            completion.tool_calls,
            parsed,
        )

    def _with_images(self, usage: Usage) -> Usage:
        """``usage`` with the images this call read, where the backend did not count them."""
        if self._images is None or usage.images_in is not None:
            return usage
        count, pixels = self._images
        return dataclasses.replace(usage, images_in=count, pixels_in=pixels)

    def _wall(self) -> float:
        return time.perf_counter() - self._wall_t0

    def _outcome(self, status: Status, finish_reason: str | None = None, **error: Any) -> Outcome:
        fallback_from, reason = self._fallback or (None, None)
        return Outcome(
            status,
            finish_reason,
            chunks=self.chunks if self._stream else None,
            attempts=self.attempts,
            fallback_from=fallback_from,
            fallback_reason=reason,
            **error,
        )

    def fail(self, error: BaseException, *, sent: bool | None = None) -> CallRecord:
        """Record a failed call. ``sent`` (whether anything was sent) is read from ``error``
        unless given: a refused request or a connection never made sent nothing."""
        if sent is None:  # a stream that received chunks, or an earlier try, sent the request
            sent = True if self._sent_before or self.chunks else sent_anything(error)
        total = time.perf_counter() - self._t0
        status = error.status_code if isinstance(error, BackendError) else None
        outcome = self._outcome(
            "error",
            error_type=type(error).__name__,
            error_message=redact(str(error))[:2000],  # redacted before the cut: no key half-kept
            http_status=status,
            sent=sent,
        )
        total, ttft, load_s = (total, None, None) if sent is False else self._cold_start(total)
        latency = Latency(total_s=total, ttft_s=ttft, load_s=load_s, wall_s=self._wall())
        backend = self._model.backend
        if sent is False:
            cost = unknown(_unsent_reason(error))
        elif self._meter is not None:  # a failed local call still used the machine
            cost = self._meter.stop(total, self._share)
        else:
            cost = unknown("failed call: no usage reported to price")
        usage = self._with_images(Usage())
        record = self._record(backend.model, usage, latency, cost, self._access(), outcome)
        if isinstance(error, FmgateError):
            error.record = record
        return record

    def _cold_start(self, total: float) -> tuple[float, float | None, float | None]:
        """(total, ttft, load_s) with cold-start time moved out of the steady-state numbers:
        the model's load (reported once) and any client the backend built during this call."""
        if self._part:  # the enclosing call reports the cold start, once
            return total, self._ttft, None
        load_s = self._model.take_load_s()
        setup = self._model.backend.take_setup_s()
        ttft = self._ttft
        if setup:
            total = max(0.0, total - setup)
            ttft = max(0.0, ttft - setup) if ttft is not None else None
            load_s = (load_s or 0.0) + setup
        if self._early_setup:
            load_s = (load_s or 0.0) + self._early_setup
        return total, ttft, load_s

    def _access(self, *, context_window: int | None = None) -> Access:
        """The model's profile, with what only a call can tell: peak memory, a priced window."""
        access = self._model.access
        changes: dict[str, Any] = {}
        if context_window is not None and access.context_window is None:
            changes["context_window"] = context_window
        peak = self._model.backend.peak_memory_bytes()
        if peak is not None:
            changes["peak_memory_bytes"] = peak
        return dataclasses.replace(access, **changes) if changes else access

    def _price(self, model_id: str, usage: Usage, total_s: float) -> Priced:
        if self._meter is not None:
            return Priced(self._meter.stop(total_s, self._share))
        backend = self._model.backend
        if backend.distribution != "api":
            return Priced(unknown("self-hosted server: fmgate cannot see its hardware"))
        return list_price(backend.price_provider, model_id, usage)

    def _record(
        self,
        model_id: str,
        usage: Usage,
        latency: Latency,
        cost: Cost,
        access: Access,
        outcome: Outcome,
        changed: list[str] | None = None,
    ) -> CallRecord:
        backend = self._model.backend
        changed = [] if changed is None else changed
        outcome = _clean_outcome(outcome, changed)
        params = _clean_params(self._params, changed)
        tags = clean_value(self._tags, "tags", changed) if self._tags else {}
        if changed:
            tags = {**tags, SANITIZED_TAG: ",".join(dict.fromkeys(changed))}
        record = CallRecord(
            tools=self._tools,
            output=self._output,
            id=new_record_id(),
            started_at=self._started_at,
            backend=backend.config.name,
            model_id=model_id,
            alias=self._model.alias,
            provider=backend.provider,
            revision=backend.revision,
            operation=self._operation,
            task=self._task,
            distribution=backend.distribution,
            endpoint=backend.endpoint,
            params=params,
            tags=tags,
            stream=self._stream,
            usage=usage,
            latency=latency,
            cost=cost,
            access=access,
            outcome=outcome,
            environment=environment(backend.library),
        )
        if not self._part:
            emit(record, self._model.sinks)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "fmgate call %s %s:%s %s in %.3fs",
                record.id,
                record.backend,
                model_id,
                outcome.status,
                latency.total_s or 0.0,
            )
        return record


class Recorded:
    """The failure path of a recorded call: ``with Recorded(timer, provider):`` records an
    exception raised inside (a refusal, such as a ConfigurationError, as a call that sent
    nothing) and raises it mapped onto fmgate's error tree, chained to the original."""

    __slots__ = ("_provider", "timer")

    def __init__(self, timer: CallTimer, provider: str) -> None:
        self.timer = timer
        self._provider = provider

    def __enter__(self) -> CallTimer:
        return self.timer

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        if not isinstance(exc, Exception):  # cancelled or interrupted: it may have gone out
            self.timer.fail(exc)
            return
        error = as_backend_error(exc, self._provider)
        self.timer.fail(error)
        if error is not exc:  # else already mapped by the backend, with the SDK's as its cause
            raise error from exc


def sent_anything(error: BaseException | None) -> bool | None:
    """Whether a call that failed with ``error`` sent anything: not when fmgate refused it
    (a configuration error) or the backend never connected; unknown when it was interrupted."""
    if isinstance(error, ConfigurationError):
        return False
    if isinstance(error, BackendError):
        return error.sent
    return True if isinstance(error, Exception) else None


def _unsent_reason(error: BaseException) -> str:
    if isinstance(error, ConfigurationError):
        return "refused before sending: nothing ran"
    return "no connection was made: nothing was sent"


def _clean_params(params: dict[str, Any], changed: list[str]) -> dict[str, Any]:
    """Params as recorded: a key passed as a parameter value (``openai_user=...``, or inside
    ``openai_metadata={...}``) is masked at any depth, and every string made storable."""
    if all(
        isinstance(v, int | float | type(None)) and abs(v or 0) < 2**63 for v in params.values()
    ):
        return params  # the common case: small numbers only, nothing to mask
    return {k: clean_value(v, f"params.{k}", changed) for k, v in params.items()}


def _small_number(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, float)
        or (isinstance(value, int) and -(2**63) <= value < 2**63)
    )


def _clean_outcome(outcome: Outcome, changed: list[str]) -> Outcome:
    """The server's words in an outcome (finish reason, error message), redacted and storable."""
    reason, message, fallback = (
        outcome.finish_reason,
        outcome.error_message,
        outcome.fallback_reason,
    )
    new = (
        clean_text(reason, "outcome_finish_reason", changed),
        clean_text(message, "outcome_error_message", changed),
        clean_text(fallback, "outcome_fallback_reason", changed),
    )
    if new == (reason, message, fallback):
        return outcome  # the common case: nothing to change, no copy
    return dataclasses.replace(
        outcome, finish_reason=new[0], error_message=new[1], fallback_reason=new[2]
    )


class ModelLike(Protocol):
    """What ``CallTimer`` needs from a Model."""

    @property
    def backend(self) -> Backend: ...

    @property
    def alias(self) -> str | None: ...

    @property
    def access(self) -> Access: ...

    @property
    def sinks(self) -> tuple[Sink, ...]: ...

    def take_load_s(self) -> float | None: ...
