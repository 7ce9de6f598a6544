"""The dynamic batcher over a scripted batching backend: what shares a batch, how large batches
get, and how long a lone request waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import openai

import fmgate
from fmgate._errors import FmgateError
from fmgate._types import ChatRequest, Completion
from fmgate.serve import serving
from tests.fakes import FakeBatchingBackend, fake_config


class Batches(FakeBatchingBackend):
    """Batches take ``batch_s`` each and are remembered with their requests."""

    batch_s = 0.8  # room for the queued requests to arrive, even on a loaded machine

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.runs: list[list[ChatRequest]] = []

    def complete_batch(self, requests: Sequence[ChatRequest]) -> list[Completion | FmgateError]:
        self.runs.append(list(requests))
        time.sleep(self.batch_s)
        return super().complete_batch(requests)


def _model() -> tuple[fmgate.Model, Batches]:
    backend = Batches(fake_config())
    return fmgate.Model(backend), backend


async def _send(url: str, bodies: list[dict[str, Any]], *, stream: bool = False) -> list[str]:
    async with openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0) as sdk:

        async def one(body: dict[str, Any]) -> str:
            messages = [{"role": "user", "content": body.pop("content", "x")}]
            if not stream:
                reply = await sdk.chat.completions.create(model="m", messages=messages, **body)
                return reply.choices[0].message.content or ""
            chunks = await sdk.chat.completions.create(
                model="m", messages=messages, stream=True, **body
            )
            return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

        return await asyncio.gather(*(one(dict(b)) for b in bodies))


async def _after_a_blocker(url: str, bodies: list[dict[str, Any]]) -> list[str]:
    """Send one request that holds the model, then ``bodies`` while it runs: they queue up."""
    blocker = asyncio.create_task(_send(url, [{"content": "blocker", "max_tokens": 99}]))
    await asyncio.sleep(0.2)
    texts = await _send(url, bodies)
    await blocker
    return texts


async def test_only_requests_with_the_same_parameters_share_a_batch() -> None:
    model, backend = _model()
    bodies = [{"max_tokens": 5}] * 3 + [{"max_tokens": 6, "temperature": 0.5}] * 2
    with serving({"m": model}, max_batch=8) as url:
        await _after_a_blocker(url, bodies)
    # The blocker first; then one batch per parameter set, in the order the requests arrived.
    assert len(backend.runs[0]) == 1
    assert sorted(len(run) for run in backend.runs[1:]) == [2, 3]
    for run in backend.runs:
        assert all(r.params == run[0].params for r in run)


async def test_batches_hold_at_most_max_batch() -> None:
    model, backend = _model()
    with serving({"m": model}, max_batch=4) as url:
        texts = await _after_a_blocker(url, [{"content": f"n{i}"} for i in range(10)])
    assert texts == [f"N{i}" for i in range(10)]
    assert [len(run) for run in backend.runs] == [1, 4, 4, 2]


async def test_a_seeded_sampled_request_runs_alone() -> None:
    model, backend = _model()
    seeded = {"temperature": 0.8, "seed": 7}
    with serving({"m": model}, max_batch=8) as url:
        await _after_a_blocker(url, [seeded] * 3 + [{"temperature": 0}] * 2)
    assert sorted(len(run) for run in backend.runs) == [1, 1, 1, 1, 2]


async def test_a_lone_request_does_not_wait_for_company() -> None:
    model, backend = _model()
    backend.batch_s = 0
    with serving({"m": model}, max_wait_ms=2000) as url:
        start = time.perf_counter()
        await _send(url, [{}])
        await _send(url, [{}])
    assert time.perf_counter() - start < 1.0


async def test_streams_from_a_backend_that_cannot_stream_batches_go_one_by_one() -> None:
    model, backend = _model()
    with serving({"m": model}) as url:
        texts = await _send(url, [{"content": "a b"}, {"content": "c"}], stream=True)
    assert texts == ["A B ", "C "] and backend.runs == []


async def test_every_request_of_a_batch_has_its_record(memory: fmgate.MemorySink) -> None:
    model, _ = _model()
    with serving({"m": model}) as url:
        await _after_a_blocker(url, [{"content": f"n{i}"} for i in range(5)])
    records = memory.records
    assert len(records) == 6 and all(r.tags == {"fmgate.served": "true"} for r in records)
    assert sorted(r.params["batch_size"] for r in records) == [1, 5, 5, 5, 5, 5]


async def test_pieces_from_many_threads_reach_each_job_whole_and_in_order() -> None:
    """A continuous batch hands every streamed row a piece at each step, from its own thread:
    each request's pieces arrive complete and in order, however the loop's wake-ups are shared,
    and pieces that queued up while a chunk was being sent go out as one chunk."""
    import threading

    from fmgate.serve._app import _next_chunk
    from fmgate.serve._batcher import Job

    jobs = [Job([{"role": "user", "content": "x"}], {}, stream=True) for _ in range(4)]
    end = FmgateError("done")

    def post(job: Job, n: int) -> None:
        for i in range(200):
            job.put(f"{n}:{i} ")
        job.put(end)

    threads = [threading.Thread(target=post, args=(job, n)) for n, job in enumerate(jobs)]
    for t in threads:
        t.start()
    chunks: list[list[str]] = [[] for _ in jobs]
    for n, job in enumerate(jobs):
        while True:
            text, last = await _next_chunk(job)
            chunks[n].append(text)
            if last is not None:
                assert last is end and job.done
                break
    for t in threads:
        t.join()
    for n, got in enumerate(chunks):
        assert "".join(got) == "".join(f"{n}:{i} " for i in range(200))
    assert sum(len(got) for got in chunks) < 4 * 200  # pieces that waited were joined
