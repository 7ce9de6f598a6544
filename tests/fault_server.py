"""A loopback server that fails on purpose, by plan: the other half of tests/test_faults.py.

Each request names its call in the prompt ("call-0042"). The server counts the tries of each call
and answers try n with ``plan[call][n - 1]``, a fault from :data:`FAULTS`, then logs (call, try,
fault); ``GET /_faults/log`` returns that log. It speaks OpenAI's and Anthropic's wires with the
stub server's payload builders, and runs in a child process so that its work does not share the
test's GIL (a slow answer would read as a timeout the plan did not send).

Faults that take a number (``cut:2``) apply to streams: the stream's opening events, then that
many text events, then the fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import re
import socket
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx2

from fmgate.testing._stub_server import (
    _sse,
    anthropic_message,
    anthropic_stream,
    openai_completion,
    openai_stream,
    sse_response,
)

REPLY = "Five words in each reply."
WORDS = [w if i == 0 else " " + w for i, w in enumerate(REPLY.split(" "))]
LOG_PATH = "/_faults/log"
BEYOND = "beyond-plan"  # a try the plan has no fault for: more tries than the cap allows
HANG_S = 30.0  # a hanging answer waits this long at most for the client to hang up

FAULTS: dict[str, str] = {
    "ok": "the documented 200 answer, plain or streamed",
    "429": "429 without Retry-After",
    "429-retry-after-0": "429, Retry-After: 0",
    "429-retry-after-0.02": "429, Retry-After: 0.02",
    "429-retry-after-date": "429, Retry-After as an HTTP date 5 s ago",
    "429-retry-after-ms": "429, retry-after-ms: 10",
    "429-retry-after-120": "429, Retry-After: 120 (longer than a client should wait)",
    "500": "500 with the wire's JSON error object",
    "502-html": "502 with an HTML body, as a proxy sends",
    "503": "503 overloaded",
    "529": "529 overloaded, Anthropic's own status",
    "408": "408 request timeout",
    "400": "400 invalid request",
    "timeout": "no answer until the client hangs up",
    "drop": "the connection closed (FIN) with no answer",
    "reset": "the connection reset (RST) with no answer",
    "nonjson": "200 with an HTML body",
    "truncated": "200 whose body stops 40 bytes short of its content-length; then a close",
    "cut": "stream: N text events, then the connection closes mid-body",
    "short": "stream: N text events, then a clean end of body without the finish",
    "stall": "stream: N text events, then silence until the client hangs up",
    "badsse": "stream: N text events, then an event whose data is not JSON",
    "errevent": "stream: N text events, then the wire's error event (overloaded)",
}

_RETRY_AFTER = {
    "429-retry-after-0": ("retry-after", lambda: "0"),
    "429-retry-after-0.02": ("retry-after", lambda: "0.02"),
    "429-retry-after-date": ("retry-after", lambda: _http_date(-5)),
    "429-retry-after-ms": ("retry-after-ms", lambda: "10"),
    "429-retry-after-120": ("retry-after", lambda: "120"),
}
_STATUS = {"429": 429, "500": 500, "502-html": 502, "503": 503, "529": 529, "408": 408, "400": 400}
_ANTHROPIC_TYPES = {
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
    408: "timeout_error",
    400: "invalid_request_error",
}
_KNOWN = frozenset(HTTPStatus)
_HTML = b"<html><body><h1>Bad gateway</h1></body></html>"
_PREFIX = {"openai": 1, "anthropic": 3}  # the opening events before the first text event
_OVERLOADED = {"type": "overloaded_error", "message": "Overloaded"}
_LAST_EVENT = {  # what ends a stream fault's body
    ("badsse", "openai"): b"data: {not json\n\n",
    ("badsse", "anthropic"): b"event: content_block_delta\ndata: {not json\n\n",
    ("errevent", "openai"): _sse({"error": {**_OVERLOADED, "type": "server_error"}}),
    ("errevent", "anthropic"): _sse({"type": "error", "error": _OVERLOADED}, "error"),
}
_WHOLE = ("short", "badsse", "errevent")  # bodies that end cleanly; a cut or stall stops midway


def kind(fault: str) -> str:
    """The fault's kind: ``cut:2`` -> ``cut``."""
    return fault.partition(":")[0]


def text_events(fault: str) -> int:
    """How many text events a stream fault sends before it strikes."""
    return int(fault.partition(":")[2] or 0)


# -- answers --------------------------------------------------------------------------------------


def _http_date(offset_s: float) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=offset_s), usegmt=True)


def _answer(
    status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> bytes:
    phrase = HTTPStatus(status).phrase if status in _KNOWN else "Overloaded"  # 529
    lines = [f"HTTP/1.1 {status} {phrase}", f"content-type: {content_type}"]
    extra = {**(headers or {}), "x-request-id": "req_fault"}
    lines += [f"{name}: {value}" for name, value in extra.items()]
    lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _error_answer(fault: str, wire: str) -> bytes:
    status = _STATUS.get(fault, 429)
    headers = {}
    if fault in _RETRY_AFTER:
        name, value = _RETRY_AFTER[fault]
        headers[name] = value()
    if fault == "502-html":
        return _answer(status, _HTML, "text/html", headers)
    message = f"injected fault {fault}"
    data: dict[str, Any]
    if wire == "anthropic":
        data = {"type": "error", "error": {"type": _ANTHROPIC_TYPES[status], "message": message}}
    else:
        data = {"error": {"message": message, "type": "fault", "param": None, "code": None}}
    return _answer(status, json.dumps(data).encode(), "application/json", headers)


def _ok(wire: str, model: str, stream: bool) -> bytes:
    if stream:
        return sse_response(_events(wire, model))
    make = openai_completion if wire == "openai" else anthropic_message
    return _answer(200, json.dumps(make(model, 10, REPLY)).encode(), "application/json")


def _events(wire: str, model: str) -> list[bytes]:
    if wire == "openai":
        return openai_stream(model, 10, True, REPLY)
    return anthropic_stream(model, 10, REPLY)


def _partial(wire: str, model: str, fault: str) -> bytes:
    """A stream's opening events, its first N text events and the fault's last event, if any."""
    events = _events(wire, model)[: _PREFIX[wire] + text_events(fault)]
    last = _LAST_EVENT.get((kind(fault), wire))
    if last is not None:
        events.append(last)
    body = sse_response(events)
    return body if kind(fault) in _WHOLE else body.removesuffix(b"0\r\n\r\n")


# -- the server -----------------------------------------------------------------------------------

_WIRES = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}
_CALL = re.compile(rb"call-\d+")


class FaultServer:
    """Answers by plan; keeps a connection alive unless the fault ends it."""

    def __init__(self, plan: dict[str, list[str]]) -> None:
        self.plan = plan
        self.tries: Counter[str] = Counter()
        self.log: list[tuple[str, int, str]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # the client hung up
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        target = head.split(" ", 2)[1]
        found = re.search(r"(?im)^content-length:\s*(\d+)", head)
        body = await reader.readexactly(int(found.group(1)) if found else 0)
        if target == LOG_PATH:
            writer.write(_answer(200, json.dumps(self.log).encode(), "application/json"))
            return True
        if target.split("?")[0] not in _WIRES:  # not a call: a self-hosted row's GET /v1/models
            writer.write(_answer(404, b'{"error": {"message": "not found"}}', "application/json"))
            return True
        fault = self._next_fault(body)
        request = json.loads(body)
        wire, stream = _WIRES[target.split("?")[0]], request.get("stream") is True
        return await self._send(fault, wire, str(request["model"]), stream, reader, writer)

    def _next_fault(self, body: bytes) -> str:
        match = _CALL.search(body)
        call = match.group().decode() if match else "no-call-id"
        self.tries[call] += 1
        tries = self.tries[call]
        planned = self.plan.get(call, [])
        fault = planned[tries - 1] if tries <= len(planned) else BEYOND
        self.log.append((call, tries, fault))
        return fault

    async def _send(
        self,
        fault: str,
        wire: str,
        model: str,
        stream: bool,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one try; False when the connection must end."""
        name = kind(fault)
        if name == "drop":
            return False
        if name == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if name in ("timeout", "stall"):
            if name == "stall":
                writer.write(_partial(wire, model, fault))
                await writer.drain()
            await asyncio.wait_for(reader.read(), HANG_S)  # until the client hangs up
            return False
        writer.write(self._body(fault, wire, model, stream))
        await writer.drain()
        return name not in ("cut", "truncated")

    def _body(self, fault: str, wire: str, model: str, stream: bool) -> bytes:
        name = kind(fault)
        if name == "ok":
            return _ok(wire, model, stream)
        if name == "nonjson":
            return _answer(200, _HTML, "text/html")
        if name == "truncated":
            whole = _ok(wire, model, stream=False)
            return whole[: len(whole) - 40]  # the head promises 40 bytes more than come
        if name in ("cut", *_WHOLE):
            return _partial(wire, model, fault)
        if fault == BEYOND:
            return _answer(500, b"beyond the plan", "text/plain")
        return _error_answer(fault, wire)


_READY = "faults listening on "


async def _serve(plan: dict[str, list[str]]) -> None:
    server = FaultServer(plan)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, backlog=1024)
    host, port = listener.sockets[0].getsockname()[:2]
    print(f"{_READY}http://{host}:{port}", flush=True)
    async with listener:
        await listener.serve_forever()


class Running:
    """The server as the test sees it: its base URL, and its log of tries."""

    def __init__(self, url: str) -> None:
        self.url = url

    def log(self) -> list[tuple[str, int, str]]:
        with httpx2.Client() as client:
            return [tuple(entry) for entry in client.get(self.url + LOG_PATH).json()]  # type: ignore[misc]


@contextlib.contextmanager
def serve(plan: dict[str, list[str]]) -> Iterator[Running]:
    """Run the server in a child process on 127.0.0.1 (the plan goes in on stdin)."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(plan))
        proc.stdin.close()
        line = proc.stdout.readline()
        if not line.startswith(_READY):
            raise RuntimeError(f"the fault server did not start (exit code {proc.poll()})")
        yield Running(line[len(_READY) :].strip())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def main() -> None:
    plan = json.loads(sys.stdin.read())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(plan))


if __name__ == "__main__":
    main()
