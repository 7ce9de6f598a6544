"""A hostile loopback server for the canary-secret tests: every failure echoes the caller's key.

Real services sometimes quote the key they were sent in an error body ("Incorrect API key
provided: sk-..."); this one always does, whole and as the header it came in, so that any path
that prints an error unredacted shows the key. It speaks both wires (``/v1/chat/completions``
and ``/v1/messages``) and picks its answer by the last message's text:

- ``FAIL-<status>`` (400, 401, 403, 429, 500, 503): that status, with the wire's error object.
- ``ERROR-IN-200``: status 200 whose body (or stream) is an error object.
- ``LONG-<n>``: a 400 whose message is ``n`` filler characters, then the key.
- anything else: a 200 reply (plain or streamed), which quotes nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "All quiet."


def _sent_key(headers: dict[str, str]) -> tuple[str, str]:
    """(the key, the header line it came in) as the client sent them."""
    if "x-api-key" in headers:
        return headers["x-api-key"], f"x-api-key: {headers['x-api-key']}"
    auth = headers.get("authorization", "")
    return auth.removeprefix("Bearer "), f"Authorization: {auth}"


def _error(wire: str, kind: str, message: str) -> dict[str, Any]:
    if wire == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _ok(wire: str, model: str) -> dict[str, Any]:
    if wire == "anthropic":
        return {
            "id": "msg_canary",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": REPLY}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 2},
        }
    return {
        "id": "chatcmpl-canary",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def _sse(wire: str, model: str, error: dict[str, Any] | None) -> bytes:
    """A short stream; with ``error``, it breaks off with that error event after one word."""
    if wire == "anthropic":
        start = {**_ok(wire, model), "content": [], "stop_reason": None}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_delta", _anthropic_delta("All")),
        ]
        if error is not None:
            events.append(("error", error))
        else:
            events += [
                ("content_block_delta", _anthropic_delta(" quiet.")),
                ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
                ("message_stop", {"type": "message_stop"}),
            ]
        return b"".join(
            f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events
        )
    chunks: list[dict[str, Any]] = [_openai_chunk(model, "All")]
    if error is not None:
        chunks.append(error)
    else:
        chunks.append(_openai_chunk(model, " quiet.", finish="stop"))
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if error is None else b"")


def _anthropic_delta(text: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }


def _openai_chunk(model: str, text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-canary",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
        "usage": None if finish is None else {"prompt_tokens": 3, "completion_tokens": 2},
    }


_KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body go in two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        headers = {k.lower(): v for k, v in self.headers.items()}
        wire = "anthropic" if self.path.endswith("/messages") else "openai"
        key, header = _sent_key(headers)
        prompt = str(request["messages"][-1]["content"])
        model = str(request.get("model"))
        quote = f"Incorrect API key provided: {key}. The request had {header!r}."
        if prompt.startswith("FAIL-"):
            status = int(prompt.removeprefix("FAIL-"))
            self._send(status, _error(wire, _KINDS[status], quote))
        elif prompt.startswith("LONG-"):
            filler = "x" * int(prompt.removeprefix("LONG-"))
            self._send(400, _error(wire, "invalid_request_error", filler + key))
        elif prompt == "ERROR-IN-200":
            error = _error(wire, "overloaded_error", quote)
            if request.get("stream"):
                self._send_sse(_sse(wire, model, error))
            else:
                self._send(200, error)
        elif request.get("stream"):
            self._send_sse(_sse(wire, model, None))
        else:
            self._send(200, _ok(wire, model))

    def _send(self, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_sse(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def echo_server() -> Iterator[str]:
    """Serve on 127.0.0.1 in a thread; yields the base URL (no ``/v1``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
