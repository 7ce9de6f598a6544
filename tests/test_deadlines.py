"""``timeout`` is a deadline: a server that drips bytes, sends keep-alive comments forever or an
endless event cannot hold a call past it, and an answer past the size caps is refused."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import fmgate
from fmgate.backends import _deadline

HOLD_S = 10.0  # how long each hostile server would go on if nothing stopped the client
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\n%s\r\n"
SSE = b"text/event-stream"
CHUNK = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
)


def _until_stopped(conn: socket.socket, stop: threading.Event, piece: bytes, gap_s: float) -> None:
    end = time.monotonic() + HOLD_S
    while not stop.is_set() and time.monotonic() < end:
        conn.sendall(piece)
        time.sleep(gap_s)


def drip(conn: socket.socket, stop: threading.Event) -> None:
    """A whole JSON answer, one byte every 50 ms: each read is quick, the answer never ends."""
    body = b'{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[]}' * 40
    head = HEAD % (b"application/json", b"content-length: %d\r\n" % len(body))
    for byte in head + body:
        if stop.is_set():
            return
        conn.sendall(bytes([byte]))
        time.sleep(0.05)


def keepalive(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(HEAD % (SSE, b""))
    _until_stopped(conn, stop, b": keep-alive\n\n", 0.05)


def content_then_keepalive(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(HEAD % (SSE, b"") + CHUNK)
    _until_stopped(conn, stop, b": keep-alive\n\n", 0.05)


def endless_event(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(HEAD % (SSE, b"") + b"data: ")
    _until_stopped(conn, stop, b"x" * 2**20, 0.0)


def huge_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(HEAD % (b"application/json", b"content-length: %d\r\n" % 2**30))
    _until_stopped(conn, stop, b" " * 2**16, 0.0)


@contextlib.contextmanager
def hostile(behaviour: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """A loopback server answering every connection with ``behaviour``; yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # so that the loop sees ``stop`` (close() does not wake accept())
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with conn, contextlib.suppress(OSError):
                conn.recv(65536)  # the request (small enough for one read)
                behaviour(conn, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join(HOLD_S + 5)
        listener.close()


def timed(call: Callable[[], Any]) -> tuple[BaseException, float]:
    t0 = time.monotonic()
    with pytest.raises(fmgate.BackendError) as info:
        call()
    return info.value, time.monotonic() - t0


def model(url: str, **kw: Any) -> fmgate.Model:
    return fmgate.load("vllm:m", base_url=url, max_retries=0, **kw)


def read_all(stream: fmgate.Stream) -> str:
    return "".join(chunk.text for chunk in stream)


def test_a_dripping_answer_is_cut_at_the_deadline() -> None:
    with hostile(drip) as url:
        error, waited = timed(lambda: model(url, timeout=1).generate("hi"))
    assert isinstance(error, fmgate.TimeoutError)
    assert "whole answer (1 s)" in str(error)
    assert waited < HOLD_S / 2  # not held for the drip's length (each byte came within 1 s)


async def test_a_dripping_answer_is_cut_at_the_deadline_async() -> None:
    with hostile(drip) as url:
        t0 = time.monotonic()
        with pytest.raises(fmgate.TimeoutError):
            await model(url, timeout=1).agenerate("hi")
    assert time.monotonic() - t0 < HOLD_S / 2


def test_keep_alive_comments_do_not_count_as_content() -> None:
    with hostile(keepalive) as url:
        error, waited = timed(lambda: read_all(model(url, timeout=1).stream("hi")))
    assert isinstance(error, fmgate.TimeoutError) and "first content (1 s)" in str(error)
    assert waited < HOLD_S / 2
    assert error.record is not None and error.record.outcome.error_type == "TimeoutError"


def test_the_idle_limit_runs_from_the_last_content_event() -> None:
    with hostile(content_then_keepalive) as url:
        stream = model(url, timeout=1).stream("hi")
        error, waited = timed(lambda: read_all(stream))
    assert isinstance(error, fmgate.TimeoutError) and "idle limit" in str(error)
    assert waited < HOLD_S / 2
    assert stream.text == "hi"  # what came before the silence is kept


async def test_the_idle_limit_holds_for_async_streams() -> None:
    with hostile(content_then_keepalive) as url:
        t0 = time.monotonic()
        with pytest.raises(fmgate.TimeoutError, match="idle limit"):
            async for _ in model(url, timeout=1).astream("hi"):
                pass
    assert time.monotonic() - t0 < HOLD_S / 2


def test_an_endless_event_is_refused_at_its_cap_without_a_timeout() -> None:
    with hostile(endless_event) as url:
        error, waited = timed(lambda: read_all(model(url).stream("hi")))
    assert isinstance(error, fmgate.MalformedResponseError) and "16 MiB" in str(error)
    assert waited < HOLD_S / 2  # linear in the event's size: 16 MiB is read in well under that


def test_an_answer_past_the_size_cap_is_refused_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_deadline, "MAX_BODY_BYTES", 2**20)
    with hostile(huge_body) as url:
        error, _ = timed(lambda: model(url).generate("hi"))
    assert isinstance(error, fmgate.MalformedResponseError) and "1 MiB" in str(error)
    assert error.record is not None and error.record.outcome.attempts == 1


def test_a_deadline_still_lets_a_normal_answer_through() -> None:
    from fmgate.testing import stub_server

    with stub_server() as url:
        m = fmgate.load("vllm:m", base_url=url + "/v1", timeout=5)
        assert m.generate("hi").text
        assert read_all(m.stream("hi"))
