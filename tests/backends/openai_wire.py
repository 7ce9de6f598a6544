"""Payloads in OpenAI's documented wire format, and a loopback server that serves them.

Shapes follow https://platform.openai.com/docs/api-reference/chat (the chat.completion object,
chat.completion.chunk events sent as ``data: {...}\\n\\n`` and ended by ``data: [DONE]``, the
error object ``{"error": {"message", "type", "param", "code"}}``) and /embeddings.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_SNAPSHOT = "gpt-4o-mini-2024-07-18"


def usage(
    prompt: int = 12, completion: int = 5, *, cached: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion(
    text: str | None = "Hello! How can I help?",
    *,
    model: str = MODEL_SNAPSHOT,
    finish_reason: str = "stop",
    usage_: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_ if usage_ is not None else usage(),
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
    }


def chunk(
    delta: dict[str, Any] | None,
    *,
    finish_reason: str | None = None,
    usage_: dict[str, Any] | None = None,
    model: str = MODEL_SNAPSHOT,
) -> dict[str, Any]:
    """One chat.completion.chunk; ``delta=None`` gives the usage-only chunk (choices == [])."""
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    )
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": model,
        "system_fingerprint": "fp_44709d6fcb",
        "choices": choices,
        "usage": usage_,
    }


def stream_chunks(
    pieces: Sequence[str], *, usage_: dict[str, Any] | None = None, model: str = MODEL_SNAPSHOT
) -> list[dict[str, Any]]:
    """A whole stream as OpenAI sends it with stream_options.include_usage."""
    out = [chunk({"role": "assistant", "content": "", "refusal": None}, model=model)]
    out += [chunk({"content": piece}, model=model) for piece in pieces]
    out.append(chunk({}, finish_reason="stop", model=model))
    out.append(chunk(None, usage_=usage_ or usage(12, len(pieces)), model=model))
    return out


def sse(events: Sequence[dict[str, Any]], *, done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return body + (b"data: [DONE]\n\n" if done else b"")


def error_body(
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def embedding_list(vectors: Sequence[Sequence[float]], *, prompt_tokens: int = 8) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": list(v)} for i, v in enumerate(vectors)
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


# -- a loopback server ---------------------------------------------------------------------------


@dataclass
class Reply:
    """What the server sends: a JSON body, an SSE stream, or SSE bytes cut off mid-stream."""

    status: int = 200
    json_body: Any = None
    sse_body: bytes | None = None
    cut_after: bytes | None = None  # send these SSE bytes, then drop the connection


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    client_port: int


@dataclass
class LoopbackServer:
    """A real HTTP/1.1 server on 127.0.0.1 answering each POST with the next queued Reply."""

    replies: list[Reply] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def _handler(state: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.seen.append(Seen(self.path, headers, body, self.client_address[1]))
            reply = state.replies.pop(0) if state.replies else Reply(404, error_body("no reply"))
            if reply.json_body is not None:
                self._send_json(reply)
            else:
                self._send_sse(reply)

        def _send_json(self, reply: Reply) -> None:
            data = json.dumps(reply.json_body).encode()
            self.send_response(reply.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_sse(self, reply: Reply) -> None:
            self.send_response(reply.status)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            data = reply.cut_after if reply.cut_after is not None else reply.sse_body or b""
            if data:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            if reply.cut_after is not None:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")

    return Handler


def serve(state: LoopbackServer) -> Iterator[LoopbackServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
