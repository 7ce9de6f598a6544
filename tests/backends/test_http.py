"""What the HTTP backends share (``fmgate.backends._http``), alone and through both backends."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx2
import pytest

import fmgate
from fmgate._types import Delta
from fmgate.backends._http import EventReader, PerLoop, retry_after_s
from fmgate.testing import stub_server
from fmgate.testing._stub_server import REPLY

# -- Retry-After ---------------------------------------------------------------------------------


def test_retry_after_forms() -> None:
    assert retry_after_s(httpx2.Headers({"retry-after": "2.5"})) == 2.5
    assert retry_after_s(httpx2.Headers({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    later = datetime.now(UTC) + timedelta(seconds=30)
    from_date = retry_after_s(httpx2.Headers({"retry-after": format_datetime(later, usegmt=True)}))
    assert from_date is not None and 25 < from_date <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after_s(httpx2.Headers({"retry-after": past})) == 0.0
    assert retry_after_s(httpx2.Headers({"retry-after": "soon"})) is None
    assert retry_after_s(httpx2.Headers({"retry-after": "nan"})) is None
    assert retry_after_s(httpx2.Headers({"retry-after-ms": "-5"})) == 0.0
    assert retry_after_s(httpx2.Headers()) is None


# -- one client per event loop -------------------------------------------------------------------


class Client:
    """Stands for an SDK's async client."""

    def __init__(self) -> None:
        self.closed_on: asyncio.AbstractEventLoop | None = None

    async def close(self) -> None:
        self.closed_on = asyncio.get_running_loop()


def holder() -> tuple[PerLoop[Client], list[Client]]:
    built: list[Client] = []

    def build() -> Client:
        built.append(Client())
        return built[-1]

    return PerLoop(build, Client.close), built


def test_a_client_per_loop_built_once_and_closed_as_its_loop_shuts_down() -> None:
    clients, built = holder()

    async def use() -> tuple[Client, asyncio.AbstractEventLoop]:
        got = await asyncio.gather(*(clients.get() for _ in range(5)))
        assert len({id(c) for c in got}) == 1 and await clients.get() is got[0]
        assert got[0].closed_on is None
        return got[0], asyncio.get_running_loop()

    (first, loop1), (second, loop2) = asyncio.run(use()), asyncio.run(use())
    assert built == [first, second]
    assert (first.closed_on, second.closed_on) == (loop1, loop2)
    assert not clients


def test_threads_get_their_own_clients() -> None:
    clients, built = holder()
    barrier = threading.Barrier(4)

    async def use() -> Client:
        barrier.wait()
        return await clients.get()

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: asyncio.run(use()), range(4)))
    assert len({id(c) for c in got}) == 4 and sorted(map(id, built)) == sorted(map(id, got))
    assert all(c.closed_on is not None for c in got)


def test_aclose_closes_the_running_loops_client_now_and_the_others_on_their_loops() -> None:
    clients, _ = holder()
    ready, release = threading.Event(), threading.Event()
    other: list[Client] = []

    async def elsewhere() -> None:
        other.append(await clients.get())
        ready.set()
        while not release.is_set():
            await asyncio.sleep(0.005)

    thread = threading.Thread(target=lambda: asyncio.run(elsewhere()))
    thread.start()
    ready.wait(5)

    async def here() -> Client:
        client = await clients.get()
        await clients.aclose()
        assert client.closed_on is asyncio.get_running_loop() and not clients
        return client

    asyncio.run(here())
    for _ in range(200):  # the other loop closes its client at its next turn
        if other[0].closed_on is not None:
            break
        threading.Event().wait(0.005)
    release.set()
    thread.join(5)
    assert other[0].closed_on is not None


async def test_a_dropped_holder_still_closes_its_clients() -> None:
    clients, built = holder()
    await clients.get()
    del clients
    gc.collect()
    await asyncio.sleep(0)  # the loop runs the closer it was handed
    await asyncio.sleep(0)
    assert built[0].closed_on is asyncio.get_running_loop()


# -- through both backends, on real keep-alive connections ---------------------------------------

SPECS = ["openai:gpt-4o-mini", "anthropic:claude-3-5-haiku-latest"]


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with stub_server() as url:
        yield url


@pytest.fixture
def model(
    stub_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[fmgate.Model]:
    spec: str = request.param
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-not-a-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-loopback-not-a-key")
    base_url = f"{stub_url}/v1" if spec.startswith("openai") else stub_url
    with fmgate.load(spec, base_url=base_url) as m:
        yield m


def count_builds(backend: Any) -> list[Any]:
    """The async clients ``backend`` builds from now on."""
    built: list[Any] = []
    build = backend._aclients._build

    def counting() -> Any:
        built.append(build())
        return built[-1]

    backend._aclients._build = counting
    return built


async def two_calls(m: fmgate.Model) -> tuple[list[str], Any]:
    texts = [(await m.agenerate("x")).text, (await m.agenerate("y")).text]
    return texts, await m.backend._aclients.get()  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", SPECS, indirect=True)
def test_one_model_across_several_event_loops(model: fmgate.Model) -> None:
    built = count_builds(model.backend)
    # asyncio.run() twice: a client bound to the first, closed loop must not be reused.
    (texts, first), (more, second) = asyncio.run(two_calls(model)), asyncio.run(two_calls(model))
    assert texts == more == [REPLY, REPLY]
    assert built == [first, second] and first is not second
    # Each loop's client was closed as its loop shut down: no connection is left behind.
    assert first.is_closed() and second.is_closed()
    assert not model.backend._aclients  # type: ignore[attr-defined]


@pytest.mark.parametrize("model", SPECS, indirect=True)
def test_threads_with_their_own_loops(model: fmgate.Model) -> None:
    built = count_builds(model.backend)
    barrier = threading.Barrier(4)

    def run() -> tuple[list[str], Any]:
        barrier.wait()
        return asyncio.run(two_calls(model))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run(), range(4)))
    assert [texts for texts, _ in results] == [[REPLY, REPLY]] * 4
    clients = [client for _, client in results]
    assert len(built) == len({id(c) for c in clients}) == 4  # one per loop, each reused
    assert all(c.is_closed() for c in clients)


# -- event streams -------------------------------------------------------------------------------


class Reader(EventReader):
    """Each event's data as a delta's text, its name as the finish reason; "end" finishes."""

    def event(self, name: str | None, data: bytes) -> Delta | None:
        if data == b"end":
            self.done = True
            return None
        return Delta(data.decode(), finish_reason=name)

    def end(self) -> Delta | None:
        if not self.done:
            raise ValueError("no end")
        return None


def read(body: bytes, size: int) -> list[tuple[str, str | None]]:
    reader = Reader("test")
    deltas = [d for i in range(0, len(body), size) for d in reader.feed(body[i : i + size])]
    deltas += reader.finish()
    return [(d.text, d.finish_reason) for d in deltas]


BODY = (
    b": keep-alive\n\n"
    b"data: one\n\n"
    b"event: named\nid: 7\ndata: two\n\n"
    b"retry: 10\n\n"
    b"data:three\ndata: lines\n\n"
    b"data\n\n"
    b"data: end\n\n"
    b"data: after the end\n\n"
)
EXPECTED = [("one", None), ("two", "named"), ("three\nlines", None), ("", None)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_events_split_anywhere_and_with_any_line_end(size: int, newline: bytes) -> None:
    assert read(BODY.replace(b"\n", newline), size) == EXPECTED


def test_an_unfinished_event_is_dropped_and_a_cut_stream_is_malformed() -> None:
    with pytest.raises(fmgate.MalformedResponseError, match="no end") as info:
        read(b"data: one\n\ndata: two", 1000)
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize(
    ("exc", "started", "done", "error"),
    [
        (httpx2.ReadTimeout("slow"), True, False, fmgate.TimeoutError),
        (httpx2.ReadTimeout("slow"), False, False, fmgate.TimeoutError),
        (httpx2.RemoteProtocolError("gone"), False, False, fmgate.ConnectionError),
        (httpx2.RemoteProtocolError("gone"), True, False, fmgate.MalformedResponseError),
        (httpx2.RemoteProtocolError("gone"), True, True, None),
        (httpx2.ReadTimeout("slow"), True, True, None),
    ],
)
def test_read_failures(
    exc: Exception, started: bool, done: bool, error: type[Exception] | None
) -> None:
    reader = Reader("test")
    reader.started, reader.done = started, done
    failure = reader.failure(exc)
    assert type(failure) is error if error is not None else failure is None
