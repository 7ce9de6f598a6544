"""Payloads in Anthropic's documented Messages API wire format, and a raw loopback server.

Shapes follow https://docs.anthropic.com/en/api/messages (message object, error object) and
https://docs.anthropic.com/en/docs/build-with-claude/streaming (the event stream).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

API_URL = "https://api.anthropic.com/v1/messages"
SPEC = "anthropic:claude-3-5-haiku-latest"
MODEL_ID = "claude-3-5-haiku-20241022"
KEY = "sk-ant-test-0123456789abcdefghij"


def usage(
    input_tokens: int = 12,
    output_tokens: int = 6,
    *,
    cache_read: int | None = 0,
    cache_creation: int | None = 0,
) -> dict[str, Any]:
    """A ``usage`` object; Anthropic's ``input_tokens`` excludes the cached tokens."""
    out: dict[str, Any] = {"input_tokens": input_tokens}
    if cache_creation is not None:
        out["cache_creation_input_tokens"] = cache_creation
    if cache_read is not None:
        out["cache_read_input_tokens"] = cache_read
    out["output_tokens"] = output_tokens
    return out


def message(
    text: str = "Hello! How can I help?",
    *,
    stop_reason: str | None = "end_turn",
    stop_sequence: str | None = None,
    model: str = MODEL_ID,
    usage_: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A message object as returned by ``POST /v1/messages``."""
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "model": model,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_ if usage_ is not None else usage(),
    }


def error_body(kind: str, text: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": text}}


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def message_start(usage_: dict[str, Any] | None = None, model: str = MODEL_ID) -> bytes:
    start_usage = usage_ if usage_ is not None else usage(output_tokens=1)
    return sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
    )


def text_delta(text: str, index: int = 0) -> bytes:
    delta = {"type": "text_delta", "text": text}
    event = {"type": "content_block_delta", "index": index, "delta": delta}
    return sse("content_block_delta", event)


def stream_events(
    texts: Sequence[str] = ("Hello", "!", " How can I help?"),
    *,
    start_usage: dict[str, Any] | None = None,
    output_tokens: int = 15,
    stop_reason: str = "end_turn",
    model: str = MODEL_ID,
) -> list[bytes]:
    """The full event stream of one streamed message, one bytes object per event."""
    return [
        message_start(start_usage, model),
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        sse("ping", {"type": "ping"}),
        *(text_delta(t) for t in texts),
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]


# The example stream from Anthropic's streaming documentation, byte for byte.
DOCUMENTED_STREAM = b"""event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", \
"type": "message", "role": "assistant", "content": [], "model": "claude-3-5-sonnet-20241022", \
"stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, \
"usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}

"""


def chunked_head(content_type: str = "text/event-stream") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n"
    ).encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@contextmanager
def raw_server(reply: bytes | None) -> Iterator[str]:
    """A loopback server answering each connection with ``reply`` and then closing it.

    ``reply=None`` accepts and reads the request but never answers (for timeouts). Yields the
    base URL.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    listener.settimeout(0.1)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                _read_request(conn)
                if reply is None:
                    stop.wait(5)
                else:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        part = conn.recv(65536)
        if not part:
            return
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        part = conn.recv(65536)
        if not part:
            return
        body += part


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
