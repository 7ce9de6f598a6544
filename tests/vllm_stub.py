"""A loopback stand-in for vLLM's OpenAI-compatible server (``vllm serve MODEL``), for tests.

It answers as vLLM does (vllm/entrypoints/openai/protocol.py; newer releases split it into
``models/protocol.py`` and ``chat_completion/protocol.py`` with the same fields):

- ``GET /v1/models``: a ``ModelList`` of one ``ModelCard`` (``owned_by`` "vllm", ``root``,
  ``parent`` null, ``max_model_len``, one ``ModelPermission``);
- ``POST /v1/chat/completions``: a ``ChatCompletionResponse`` dumped whole, nulls included
  (``service_tier``, ``system_fingerprint``, ``prompt_logprobs``, ``prompt_token_ids``,
  ``kv_transfer_params``; the choice's ``stop_reason`` and ``token_ids``), or a stream of
  ``ChatCompletionStreamResponse`` chunks dumped with ``exclude_unset`` (a role chunk, one
  chunk per word, a finish chunk, and with ``stream_options.include_usage`` a last chunk with
  ``choices: []`` and the usage), sent as chunked SSE, each chunk when it is "decoded".

The reply is deterministic: ``answers[prompt]``, else "You asked: <prompt>", one token per word,
cut at ``max_tokens`` (finish_reason "length"). A call takes ``ttft_s`` to its first token and
``token_s`` per further token; the server records each chat request's busy interval
(:attr:`VllmStub.busy`), so a test can price the server's busy time against the records.

The routes, the request log and the server are the route stub of
``tests/backends/test_server_facts.py``; this module adds vLLM's bodies and paced streaming.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fmgate.testing._stub_server import _words
from tests.backends.test_server_facts import Stub, _handler

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
CREATED = 1735142223
TEMPLATE_TOKENS = 5  # what a chat template adds per message, in this stub's token count


@dataclass
class VllmStub:
    """What the stub serves, how fast, and what it saw (see the module's docstring)."""

    model: str = MODEL
    max_model_len: int = 8192
    answers: dict[str, str] = field(default_factory=dict)
    ttft_s: float = 0.0
    token_s: float = 0.0
    busy: list[tuple[float, float]] = field(default_factory=list)  # perf_counter, per chat call
    routes: Stub = field(default_factory=Stub)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _served: int = 0

    @property
    def url(self) -> str:
        """The base URL a client is given: ``http://127.0.0.1:<port>/v1``."""
        return self.routes.url

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.routes.port}"

    def chats(self) -> list[dict[str, Any]]:
        """The chat requests' bodies, in the order they arrived."""
        return [body for _, path, body in self.routes.hits if path == CHAT_PATH]

    def busy_s(self) -> float:
        """The server's busy time: the union of its chat calls' intervals."""
        total, reach = 0.0, float("-inf")
        for start, end in sorted(self.busy):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total

    # -- vLLM's bodies ----------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        """``GET /v1/models`` as vLLM answers it."""
        permission = {
            "id": "modelperm-7c4d6f0d2a7b4f0e9a3c5e1b8d2f6a90",
            "object": "model_permission",
            "created": CREATED,
            "allow_create_engine": False,
            "allow_sampling": True,
            "allow_logprobs": True,
            "allow_search_indices": False,
            "allow_view": True,
            "allow_fine_tuning": False,
            "organization": "*",
            "group": None,
            "is_blocking": False,
        }
        card = {
            "id": self.model,
            "object": "model",
            "created": CREATED,
            "owned_by": "vllm",
            "root": self.model,
            "parent": None,
            "max_model_len": self.max_model_len,
            "permission": [permission],
        }
        return {"object": "list", "data": [card]}

    def reply(self, body: dict[str, Any]) -> tuple[list[str], str]:
        """(the reply's tokens, the finish reason) for a request."""
        prompt = _last_user_text(body.get("messages") or [])
        pieces = _words(self.answers.get(prompt, f"You asked: {prompt}"))
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(limit, int) and 0 < limit < len(pieces):
            return pieces[:limit], "length"
        return pieces, "stop"

    def usage(self, body: dict[str, Any], completion: int) -> dict[str, Any]:
        messages = body.get("messages") or []
        prompt = sum(TEMPLATE_TOKENS + len(_text(m).split()) for m in messages)
        return {
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
            "completion_tokens": completion,
            "prompt_tokens_details": None,
        }

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        """A ``ChatCompletionResponse``, after the call's whole latency."""
        started = time.perf_counter()
        pieces, finish = self.reply(body)
        time.sleep(self.ttft_s + self.token_s * (len(pieces) - 1))
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(pieces),
            "refusal": None,
            "annotations": None,
            "audio": None,
            "function_call": None,
            "tool_calls": [],
            "reasoning_content": None,
        }
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish,
            "stop_reason": None,
            "token_ids": None,
        }
        answer = {
            "id": self._request_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [choice],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": self.usage(body, len(pieces)),
            "prompt_logprobs": None,
            "prompt_token_ids": None,
            "kv_transfer_params": None,
        }
        self._busy(started)
        return answer

    def stream(self, body: dict[str, Any]) -> Iterator[bytes]:
        """The SSE events of a streamed call, each when its token is ready."""
        pieces, finish = self.reply(body)
        head = {
            "id": self._request_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", self.model),
        }

        def chunk(delta: dict[str, Any], **choice: Any) -> bytes:
            entry = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
            return _event({**head, "choices": [{**entry, **choice}]})

        yield chunk({"role": "assistant", "content": ""})
        for i, piece in enumerate(pieces):
            time.sleep(self.ttft_s if i == 0 else self.token_s)
            yield chunk({"content": piece})
        yield chunk({}, finish_reason=finish, stop_reason=None)
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            yield _event({**head, "choices": [], "usage": self.usage(body, len(pieces))})
        yield b"data: [DONE]\n\n"

    def _request_id(self) -> str:
        with self._lock:
            self._served += 1
            return f"chatcmpl-{self._served:032x}"

    def _busy(self, started: float) -> None:
        with self._lock:
            self.busy.append((started, time.perf_counter()))


def _text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _last_user_text(messages: list[Any]) -> str:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return _text(users[-1]) if users else ""


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _vllm_handler(vllm: VllmStub) -> type[BaseHTTPRequestHandler]:
    """The route stub's handler, with streamed chats sent chunk by chunk as they are made."""
    base: Any = _handler(vllm.routes)

    class Handler(base):  # type: ignore[misc]
        # as uvicorn's asyncio sockets: without it, a body written after its head waits for
        # the client's delayed ACK (40 ms on Linux), a latency no vLLM server has
        disable_nagle_algorithm = True

        def _answer(self, method: str, body: Any) -> None:
            if (method, self.path) != ("POST", CHAT_PATH) or not body.get("stream"):
                super()._answer(method, body)
                return
            vllm.routes.hits.append((method, self.path, body))
            started = time.perf_counter()
            self.send_response(200)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for event in vllm.stream(body):
                self.wfile.write(b"%x\r\n%b\r\n" % (len(event), event))
            self.wfile.write(b"0\r\n\r\n")
            vllm._busy(started)

    return Handler


@contextlib.contextmanager
def serving_vllm(vllm: VllmStub | None = None) -> Iterator[VllmStub]:
    """Serve ``vllm`` (a default stub when None) on a free loopback port until the block ends."""
    vllm = vllm if vllm is not None else VllmStub()
    vllm.routes.routes = {("GET", MODELS_PATH): vllm.models(), ("POST", CHAT_PATH): vllm.completion}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _vllm_handler(vllm))
    server.daemon_threads = True
    vllm.routes.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield vllm
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
