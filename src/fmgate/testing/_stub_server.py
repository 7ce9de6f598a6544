"""A zero-delay loopback server speaking OpenAI's and Anthropic's chat wire formats.

For tests, benchmarks and offline demos: it answers ``POST /v1/chat/completions`` (OpenAI) and
``POST /v1/messages`` (Anthropic), plain or streamed (SSE), with a canned reply and usage counted
from the request size, as fast as a stdlib HTTP/1.1 keep-alive server can.

Tools and structured output follow the schemas, deterministically: offered tools (unless
``tool_choice`` is ``none``, or the last message is already a tool result) get one call to the
chosen tool, or the first, with the smallest arguments valid against its schema; after a tool
result the reply is ``"The tool said: <result>"``; a JSON schema asked for (OpenAI's
``response_format``, Anthropic's ``output_format``) gets the smallest valid instance as the reply.
Messages with images (OpenAI's ``image_url`` parts, Anthropic's ``image`` blocks) get "I see
<n> images." instead of the canned reply.

``POST /v1/images/generations`` (OpenAI's Images API; ``size`` or Together's ``width`` and
``height``) answers ``n`` flat PNGs in ``b64_json``, their colour from the prompt, the seed and
the image's index, so the same request draws the same images; ``gpt-image`` models also get a
``usage`` object as OpenAI reports it. ``response_format="url"`` is refused (no files here).

It runs in a child process so that its work does not share the caller's GIL:

    from fmgate.testing import stub_server
    with stub_server() as base_url:            # "http://127.0.0.1:<random port>"
        load("openai:gpt-4o-mini", base_url=f"{base_url}/v1")
        load("anthropic:claude-3-5-haiku-latest", base_url=base_url)

``GET /_loopback/stats`` (or :func:`stats`) counts connections and requests. The replies are not
a model's: use it to exercise fmgate, never to compare models.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from typing import Any

REPLY = "Hello! How can I help you today?"
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
_CREATED = int(time.time())
_READY = "loopback listening on "
# GET it for {"connections": opened so far, "open": open now, "requests": answered so far}.
STATS_PATH = "/_loopback/stats"

# -- the two wire formats ----------------------------------------------------------------------


def _words(text: str) -> list[str]:
    """The reply cut into stream pieces that join back to ``text``."""
    parts = text.split(" ")
    return [p if i == 0 else " " + p for i, p in enumerate(parts)]


def _input_tokens(body: bytes) -> int:
    return max(1, len(body) // 16)


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def openai_completion(model: str, input_tokens: int, text: str = REPLY) -> dict[str, Any]:
    output_tokens = len(_words(text))
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": _CREATED,
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
                "finish_reason": "stop",
            }
        ],
        "usage": _openai_usage(input_tokens, output_tokens),
        "service_tier": "default",
        "system_fingerprint": "fp_loopback",
    }


def _openai_usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_stream(
    model: str, input_tokens: int, include_usage: bool, text: str = REPLY
) -> list[bytes]:
    """SSE events: a role chunk, one chunk per word, a finish chunk, the usage chunk, [DONE]."""
    words = _words(text)

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": "chatcmpl-loopback",
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_loopback",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            data["usage"] = None
        return data

    events = [_sse(chunk({"role": "assistant", "content": "", "refusal": None}))]
    events += [_sse(chunk({"content": w})) for w in words]
    events.append(_sse(chunk({}, "stop")))
    if include_usage:
        last = chunk({})
        last["choices"] = []
        last["usage"] = _openai_usage(input_tokens, len(words))
        events.append(_sse(last))
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_message(model: str, input_tokens: int, text: str = REPLY) -> dict[str, Any]:
    return {
        "id": "msg_loopback",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(input_tokens, len(_words(text))),
    }


def _anthropic_usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    }


def anthropic_stream(model: str, input_tokens: int, text: str = REPLY) -> list[bytes]:
    """SSE events as the Messages API sends them, one ``text_delta`` per word."""
    words = _words(text)
    start = anthropic_message(model, input_tokens, text)
    start.update(content=[], stop_reason=None)
    start["usage"] = _anthropic_usage(input_tokens, 1)
    events = [
        _sse({"type": "message_start", "message": start}, "message_start"),
        _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
        _sse({"type": "ping"}, "ping"),
    ]
    events += [
        _sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}},
            "content_block_delta",
        )
        for w in words
    ]
    events += [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return events


# -- tools and structured output -------------------------------------------------------------------


def example(schema: Any, defs: dict[str, Any] | None = None) -> Any:
    """The smallest value valid against a JSON schema (the common subset: types, enum, const,
    required properties, minItems, anyOf/oneOf, $ref to $defs)."""
    if not isinstance(schema, dict):
        return None
    defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
    if "$ref" in schema:
        return example(defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {}), defs)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example(schema[key][0], defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: example(props[name], defs) for name in props}
    if kind == "array":
        return [example(schema.get("items", {}), defs)] * int(schema.get("minItems", 0))
    if kind in ("number", "integer"):
        low = float(schema.get("minimum", schema.get("exclusiveMinimum", 0)) or 0)
        value = max(1.0, low + (1 if "exclusiveMinimum" in schema else 0))
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "x" * max(1, int(schema.get("minLength", 1)))


def _openai_plan(request: dict[str, Any]) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """(text, tool calls) for an OpenAI request."""
    messages = request.get("messages") or [{}]
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    if last.get("role") == "tool":
        return f"The tool said: {last.get('content')}", []
    tools = [t.get("function", {}) for t in request.get("tools") or [] if isinstance(t, dict)]
    choice = request.get("tool_choice")
    if tools and choice != "none":
        named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        tool = next((t for t in tools if t.get("name") == named), tools[0])
        return "", [(str(tool.get("name")), example(tool.get("parameters", {})))]
    fmt = request.get("response_format") or {}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return json.dumps(example(fmt.get("json_schema", {}).get("schema", {}))), []
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return "{}", []
    return _plain_reply(messages, "image_url"), []


def _anthropic_plan(request: dict[str, Any]) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """(text, tool calls) for an Anthropic request."""
    messages = request.get("messages") or [{}]
    content = messages[-1].get("content") if isinstance(messages[-1], dict) else None
    results = [b for b in content or [] if isinstance(b, dict) and b.get("type") == "tool_result"]
    if isinstance(content, list) and results:
        said = results[-1].get("content")
        if isinstance(said, list):
            said = " ".join(str(b.get("text", "")) for b in said if isinstance(b, dict))
        return f"The tool said: {said}", []
    tools = [t for t in request.get("tools") or [] if isinstance(t, dict) and "input_schema" in t]
    choice = request.get("tool_choice") or {}
    if tools and choice.get("type") != "none":
        tool = next((t for t in tools if t.get("name") == choice.get("name")), tools[0])
        return "", [(str(tool.get("name")), example(tool.get("input_schema", {})))]
    fmt = request.get("output_format") or (request.get("output_config") or {}).get("format") or {}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return json.dumps(example(fmt.get("schema", {}))), []
    return _plain_reply(messages, "image"), []


def _plain_reply(messages: list[Any], image_type: str) -> str:
    """REPLY, or, when the messages hold images (content parts of ``image_type``), how many:
    "I see 2 images." A test can tell that the images arrived."""
    count = sum(
        1
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        for part in m["content"]
        if isinstance(part, dict) and part.get("type") == image_type
    )
    if not count:
        return REPLY
    return f"I see {count} image{'s' if count != 1 else ''}."


def _openai_calls(calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_loopback_{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }
        for i, (name, args) in enumerate(calls)
    ]


def openai_tool_completion(
    model: str, input_tokens: int, calls: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    data = openai_completion(model, input_tokens, "")
    choice = data["choices"][0]
    choice["message"].update(content=None, tool_calls=_openai_calls(calls))
    choice["finish_reason"] = "tool_calls"
    data["usage"] = _openai_usage(input_tokens, 8 * len(calls))
    return data


def openai_tool_stream(
    model: str, input_tokens: int, include_usage: bool, calls: list[tuple[str, dict[str, Any]]]
) -> list[bytes]:
    """A role chunk, then per call its id and name, and its arguments in two pieces."""
    events = openai_stream(model, input_tokens, include_usage, "")
    head, rest = events[0], events[1:]
    pieces: list[bytes] = []
    for i, call in enumerate(_openai_calls(calls)):
        text = call["function"]["arguments"]
        first = {
            **call,
            "index": i,
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        half = len(text) // 2
        for delta in (first, {"index": i, "function": {"arguments": text[:half]}},
                      {"index": i, "function": {"arguments": text[half:]}}):  # fmt: skip
            pieces.append(_sse(_openai_chunk(model, {"tool_calls": [delta]}, None)))
    pieces.append(_sse(_openai_chunk(model, {}, "tool_calls")))
    # the plain stream's empty-text chunk and stop chunk are replaced; usage and [DONE] stay
    tail = [e for e in rest if b'"usage":{' in e or e.startswith(b"data: [DONE]")]
    return [head, *pieces, *tail]


def _openai_chunk(model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def anthropic_tool_message(
    model: str, input_tokens: int, calls: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    data = anthropic_message(model, input_tokens, "")
    data["content"] = [
        {"type": "tool_use", "id": f"toolu_loopback_{i}", "name": name, "input": args}
        for i, (name, args) in enumerate(calls)
    ]
    data["stop_reason"] = "tool_use"
    return data


def anthropic_tool_stream(
    model: str, input_tokens: int, calls: list[tuple[str, dict[str, Any]]]
) -> list[bytes]:
    start = anthropic_tool_message(model, input_tokens, calls)
    start.update(content=[], stop_reason=None)
    events = [_sse({"type": "message_start", "message": start}, "message_start")]
    for i, (name, args) in enumerate(calls):
        block = {"type": "tool_use", "id": f"toolu_loopback_{i}", "name": name, "input": {}}
        text = json.dumps(args)
        events.append(
            _sse(
                {"type": "content_block_start", "index": i, "content_block": block},
                "content_block_start",
            )  # fmt: skip
        )
        for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
            delta = {"type": "input_json_delta", "partial_json": piece}
            events.append(
                _sse(
                    {"type": "content_block_delta", "index": i, "delta": delta},
                    "content_block_delta",
                )  # fmt: skip
            )
        events.append(_sse({"type": "content_block_stop", "index": i}, "content_block_stop"))
    events += [
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 8 * len(calls)},
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return events


# -- HTTP/1.1 -------------------------------------------------------------------------------------

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    501: "Not Implemented",
}


def _head(status: int, content_type: str, extra: str) -> bytes:
    return (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: {content_type}\r\n"
        f"x-request-id: req_loopback\r\nrequest-id: req_loopback\r\n{extra}\r\n"
    ).encode()


def json_response(status: int, data: Any) -> bytes:
    body = json.dumps(data, separators=(",", ":")).encode()
    return _head(status, "application/json", f"content-length: {len(body)}\r\n") + body


def sse_response(events: list[bytes]) -> bytes:
    """A chunked ``text/event-stream`` body, one HTTP chunk per event, as the real APIs send."""
    chunks = [b"%x\r\n%b\r\n" % (len(e), e) for e in events]
    head = _head(
        200,
        "text/event-stream; charset=utf-8",
        "transfer-encoding: chunked\r\ncache-control: no-cache\r\n",
    )
    return head + b"".join(chunks) + b"0\r\n\r\n"


def _error(status: int, wire: str, message: str) -> bytes:
    if wire == "anthropic":
        data: dict[str, Any] = {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": message},
        }
    else:
        data = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    return json_response(status, data)


_ROUTES = {
    b"/v1/chat/completions": "openai",
    b"/v1/messages": "anthropic",
    b"/v1/images/generations": "images",
}
MAX_SIDE = 2048  # a stub image is flat, but still width x height bytes to compress


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A flat RGB PNG, written with the standard library (the stub needs no PIL)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(row * height, 6)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def images_response(request: dict[str, Any], input_tokens: int) -> bytes:
    """OpenAI's ImagesResponse for an images request: n flat PNGs, the same for the same
    prompt, seed, size and index."""
    if request.get("response_format") == "url":
        return _error(400, "openai", "the stub answers b64_json only")
    try:
        if "width" in request:
            width, height = int(request["width"]), int(request["height"])
        else:
            width, height = (int(side) for side in str(request.get("size", "1024x1024")).split("x"))
        n = int(request.get("n", 1))
        key = f"{request['prompt']}|{request.get('seed')}".encode()
    except (KeyError, TypeError, ValueError):
        return _error(400, "openai", "an images request needs a prompt and a size 'WxH'")
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE and 0 < n <= 16):
        return _error(400, "openai", f"size up to {MAX_SIDE} a side and n from 1 to 16")
    data = []
    for index in range(n):
        tint = zlib.crc32(key + bytes([index])).to_bytes(4, "big")
        data.append(
            {"b64_json": base64.b64encode(png(width, height, (tint[0], tint[1], tint[2]))).decode()}
        )
    answer: dict[str, Any] = {"created": _CREATED, "data": data}
    if str(request["model"]).startswith("gpt-image"):
        output_tokens = 272 * n  # a low-quality square's tokens, per image
        answer["usage"] = {
            "total_tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_tokens_details": {"text_tokens": input_tokens, "image_tokens": 0},
        }
    return json_response(200, answer)


def respond(method: bytes, target: bytes, body: bytes) -> bytes:
    """The full HTTP response (head and body) to one request."""
    path = target.split(b"?", 1)[0]
    wire = _ROUTES.get(path)
    if wire is None:
        return _error(404, "openai", f"no route for {path.decode(errors='replace')}")
    if method != b"POST":
        return _error(405, wire, "use POST")
    try:
        request = json.loads(body)
        model = str(request["model"])
    except (ValueError, KeyError, TypeError):
        return _error(400, wire, "the body must be JSON with a 'model'")
    stream = request.get("stream") is True
    tokens = _input_tokens(body)
    if wire == "images":
        return images_response(request, tokens)
    if wire == "openai":
        text, calls = _openai_plan(request)
        options = request.get("stream_options") or {}
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        if calls:
            if not stream:
                return json_response(200, openai_tool_completion(model, tokens, calls))
            return sse_response(openai_tool_stream(model, tokens, include_usage, calls))
        if not stream:
            return json_response(200, openai_completion(model, tokens, text))
        return sse_response(openai_stream(model, tokens, include_usage, text))
    text, calls = _anthropic_plan(request)
    if calls:
        if not stream:
            return json_response(200, anthropic_tool_message(model, tokens, calls))
        return sse_response(anthropic_tool_stream(model, tokens, calls))
    if not stream:
        return json_response(200, anthropic_message(model, tokens, text))
    return sse_response(anthropic_stream(model, tokens, text))


class _Server:
    """Answers by (method, target, body), cached: a benchmark sends the same few requests many
    times. Counts connections and requests for ``GET /_loopback/stats``."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._answers: dict[tuple[bytes, bytes, bytes], bytes] = {}
        self.connections = 0
        self.open = 0
        self.requests = 0

    def answer(self, method: bytes, target: bytes, body: bytes) -> bytes:
        self.requests += 1
        if target == STATS_PATH.encode():
            stats = {"connections": self.connections, "open": self.open, "requests": self.requests}
            return json_response(200, stats)
        return self._get(method, target, body)

    def _get(self, method: bytes, target: bytes, body: bytes) -> bytes:
        key = (method, target, body)
        answer = self._answers.get(key)
        if answer is None:
            answer = respond(method, target, body)
            if len(self._answers) >= self._size:
                self._answers.clear()
            self._answers[key] = answer
        return answer


class HTTPProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining; request bodies by ``Content-Length`` only."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections += 1
        self._server.open += 1

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None and self._handle_one():
            pass

    def _handle_one(self) -> bool:
        """Answer the first complete request in the buffer; False when it is not all here yet."""
        assert self._transport is not None
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                self._close(json_response(413, {"error": "headers too large"}))
            return False
        lines = bytes(self._buffer[:end]).split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ", 2)
        except ValueError:
            self._close(json_response(400, {"error": "bad request line"}))
            return False
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"transfer-encoding" in headers:
            self._close(json_response(501, {"error": "chunked request bodies are not supported"}))
            return False
        try:
            length = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._close(json_response(400, {"error": "bad or too large content-length"}))
            return False
        start = end + 4
        if len(self._buffer) < start + length:
            return False
        body = bytes(self._buffer[start : start + length])
        del self._buffer[: start + length]
        answer = self._server.answer(method, target, body)
        connection = headers.get(b"connection", b"").lower()
        if connection == b"close" or (version == b"HTTP/1.0" and connection != b"keep-alive"):
            self._close(answer)
            return False
        self._transport.write(answer)
        return True

    def _close(self, answer: bytes) -> None:
        assert self._transport is not None
        self._transport.write(answer)
        self._transport.close()
        self._transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._server.open -= 1


async def run_server(host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until cancelled; prints the base URL on one line once listening."""
    state = _Server()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HTTPProtocol(state), host, port, backlog=1024)
    bound = server.sockets[0].getsockname()
    print(f"{_READY}http://{bound[0]}:{bound[1]}", flush=True)
    async with server:
        await server.serve_forever()


# -- the separate process -------------------------------------------------------------------------


_CHILD = "import sys; from fmgate.testing._stub_server import main; main(sys.argv[1:])"


@contextlib.contextmanager
def serve(port: int = 0, *, timeout: float = 10.0) -> Iterator[str]:
    """Run the server in a child process on 127.0.0.1; yield its base URL (no ``/v1``)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield _wait_ready(proc, timeout)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_ready(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(_READY):
            return line[len(_READY) :].strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"the loopback server did not start (exit code {proc.poll()})")


def stats(base_url: str) -> dict[str, int]:
    """The server's counters: connections opened, open now, requests answered (this one too)."""
    import httpx2

    with httpx2.Client() as client:
        data: dict[str, int] = client.get(f"{base_url}{STATS_PATH}").json()
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fmgate's loopback stub server")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_server(port=args.port))


if __name__ == "__main__":
    main()
