"""Dynamic batching: requests to one local model that arrive together are generated together.

Each request becomes a :class:`Job` in the model's queue. One worker per model takes the oldest
job and every waiting job that can share its ``generate`` (the same generation parameters, tools,
tool choice and output schema: ``generate_many`` takes one set for the whole batch), and
runs at most ``max_batch`` of them as one left-padded batch on a worker thread, so the event loop
stays free. Before it starts a batch it waits for more jobs to come, but never longer than
``max_wait_s`` (from the later of the oldest job's arrival and the end of the previous batch),
and only while fewer jobs wait than were recently in the server at once (waiting or running): a
lone client is served at once, while the clients of a busy server, whose requests come back
together after each batch, are gathered into one. More jobs than ``max_queue`` (waiting and
running) are refused (429).

A batch may mix streamed and plain requests, and runs as one ``Model.generate_many`` call whose
``on_text`` listeners hand each streamed row its text pieces as the batch decodes them, so every
client sees its own tokens as they come. Each request has its own record, as ``generate_many``
makes them: ``stream`` as the client asked, TTFT from the batch's start to that row's first text,
``params.batch_size`` the batch it ran in, cost its share of the batch's.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._batching import batches_continuously
from .._errors import FmgateError, ServerError
from .._model import Model
from .._tools import OutputSpec, Tool
from .._types import Response

logger = logging.getLogger("fmgate.serve")

Item = str | Response | FmgateError


class Job:
    """One request in a batcher's queue: pieces of text, then its Response or error, arrive on
    ``items`` (put from the generating thread through the event loop)."""

    def __init__(self, messages: list[dict[str, Any]], params: dict[str, Any], *, stream: bool):
        self.messages = messages
        self.params = params
        self.stream = stream
        self.arrived = time.monotonic()
        self.key = _batch_key(params)
        self.items: asyncio.Queue[Item] = asyncio.Queue()
        self.closed = False  # the client went away: its row's text goes nowhere
        self.done = False
        self._mailbox = _mailbox(asyncio.get_running_loop())

    def put(self, item: Item) -> None:
        """Hand ``item`` to the request's handler; callable from any thread."""
        if isinstance(item, Response | FmgateError):
            self.done = True
        self._mailbox.post(self.items, item)


class _Mailbox:
    """Items handed from generating threads to queues on the event loop, delivered together:
    one wake-up of the loop for all that were posted since its last delivery (a continuous
    batch hands a piece to every streamed row at each step; one wake-up each would keep the
    loop busy waking)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # weak: the mailbox is the loop's entry in _MAILBOXES, which must not keep it alive
        self._loop = weakref.ref(loop)
        self._lock = threading.Lock()
        self._posted: list[tuple[asyncio.Queue[Item], Item]] = []

    def post(self, queue: asyncio.Queue[Item], item: Item) -> None:
        with self._lock:
            self._posted.append((queue, item))
            first = len(self._posted) == 1
        loop = self._loop()
        if first and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            posted, self._posted = self._posted, []
        for queue, item in posted:
            queue.put_nowait(item)


_MAILBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = (
    weakref.WeakKeyDictionary()
)


def _mailbox(loop: asyncio.AbstractEventLoop) -> _Mailbox:
    """The loop's mailbox (called on the loop's thread)."""
    box = _MAILBOXES.get(loop)
    if box is None:
        box = _MAILBOXES[loop] = _Mailbox(loop)
    return box


def _batch_key(params: Mapping[str, Any]) -> object:
    """Jobs with equal keys can share a ``generate``: their parameters as canonical JSON, tools
    and output schema included. A seeded sampled job runs alone: a seed reproduces a text only
    when nothing else draws from the same random stream."""
    if params.get("seed") is not None and params.get("temperature"):
        return object()
    return json.dumps(params, sort_keys=True, default=_plain)


def _plain(value: object) -> object:
    if isinstance(value, Tool):
        return value.to_openai()
    if isinstance(value, OutputSpec):
        return {"name": value.name, "schema": dict(value.schema)}
    raise TypeError(f"no batch key for {type(value).__name__}")


class QueueFull(Exception):
    pass


class Batcher:
    """The queue and worker of one local model."""

    def __init__(
        self,
        model: Model,
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        tags: Mapping[str, str],
        streams: bool,
    ) -> None:
        self.model = model
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.streams = streams  # the backend gives each row's text as it is decoded
        self._tags = dict(tags)
        self._waiting: collections.deque[Job] = collections.deque()
        self._running = 0
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._free_since = 0.0
        # The most jobs in the server at once (waiting or running) while each of the last
        # batches formed and ran: how many a batch may wait for.
        self._peak = 0
        self._peaks: collections.deque[int] = collections.deque(maxlen=8)
        # continuous batching (a local chat model): plain jobs go straight to the model's
        # running batch, each on a thread of its own; the others are batched here as before
        self._continuous = getattr(model.backend, "continuous_engine", None) is not None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._work(), name=f"fmgate-batcher-{self.model!r}")
        engine = self.model.backend.continuous_engine() if self._continuous else None  # type: ignore[attr-defined]
        if engine is None:
            self._continuous = False
        else:
            engine.max_batch = self.max_batch
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_queue, thread_name_prefix="fmgate-row"
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for job in self._waiting:
            job.put(ServerError("The server is shutting down."))
        self._waiting.clear()

    def submit(self, job: Job) -> None:
        if self._arrived is None:
            raise RuntimeError("the batcher was not started")
        if len(self._waiting) + self._running >= self.max_queue:
            raise QueueFull
        if self._continuous and batches_continuously(self.model, job.params, [job.messages]):
            self._join(job)
            return
        self._waiting.append(job)
        self._peak = max(self._peak, len(self._waiting) + self._running)
        self._arrived.set()

    def _join(self, job: Job) -> None:
        """Run ``job`` as its own call, which joins the model's running batch at its next step."""
        assert self._pool is not None
        self._running += 1
        future = asyncio.get_running_loop().run_in_executor(
            self._pool, execute, self.model, [job], self._tags
        )

        def ended(done: asyncio.Future[None]) -> None:
            self._running -= 1
            if not done.cancelled() and done.exception() is not None and not job.done:
                logger.error("fmgate serve: a request failed: %r", done.exception())
                job.put(FmgateError("The request failed."))

        future.add_done_callback(ended)

    async def _work(self) -> None:
        while True:
            jobs = await self._next_batch()
            if not jobs:
                continue
            self._running = len(jobs)
            self._peaks.append(self._peak)
            self._peak = len(self._waiting) + self._running
            try:
                await asyncio.to_thread(execute, self.model, jobs, self._tags)
            except Exception:  # a bug here must not leave clients waiting forever
                logger.exception("fmgate serve: a batch of %d failed", len(jobs))
                for job in jobs:
                    if not job.done:
                        job.put(FmgateError("The batch failed."))
            finally:
                self._running = 0
                self._free_since = time.monotonic()

    async def _next_batch(self) -> list[Job]:
        assert self._arrived is not None
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        first = self._waiting[0]
        deadline = max(first.arrived, self._free_since) + self.max_wait_s
        target = min(self.max_batch, max(self._peaks, default=1))
        while self._count(first.key) < target:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                break
        return self._take(first.key)

    def _count(self, key: object) -> int:
        return sum(1 for job in self._waiting if job.key == key)

    def _take(self, key: object) -> list[Job]:
        taken: list[Job] = []
        rest: collections.deque[Job] = collections.deque()
        for job in self._waiting:
            if job.key == key and len(taken) < self.max_batch and not job.closed:
                taken.append(job)
            elif not job.closed:
                rest.append(job)
        self._waiting = rest
        return taken


# -- on the worker thread -------------------------------------------------------------------------


def execute(model: Model, jobs: list[Job], tags: Mapping[str, str]) -> None:
    """Run ``jobs`` as one batch through ``model.generate_many``; each job gets its result.

    A streamed job gets its row's text as the batch decodes it; a job whose client has left says
    so to the batch (its listener returns False), and its record ends ``client_closed``.
    """
    results = model.generate_many(
        [job.messages for job in jobs],
        batch_size=len(jobs),
        return_exceptions=True,
        tags=[tags] * len(jobs),
        on_text=[_listener(job) if job.stream else None for job in jobs],
        **_shared_params(jobs),
    )
    for job, result in zip(jobs, results, strict=True):
        job.put(result)


def _shared_params(jobs: Sequence[Job]) -> dict[str, Any]:
    """The generation parameters of a batch: its jobs share them (the batcher groups by them)."""
    return dict(jobs[0].params)


def _listener(job: Job) -> Callable[[str], bool]:
    def on_text(text: str) -> bool:
        if job.closed:
            return False
        job.put(text)
        return True

    return on_text
