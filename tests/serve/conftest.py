"""Servers on a free loopback port, over scripted backends and a tiny random-weight model."""

from __future__ import annotations

import http.client
import importlib.util
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import fmgate
from fmgate.backends._base import EmbeddingResult
from fmgate.serve import serving
from tests.fakes import FakeBackend, fake_config

if not all(importlib.util.find_spec(name) for name in ("starlette", "uvicorn")):
    collect_ignore_glob = ["test_*.py"]  # needs the serve extra: pip install 'fmgate[serve]'


@pytest.fixture(scope="session")
def llama_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from fmgate.testing import make_tiny_model

    return make_tiny_model("llama", tmp_path_factory.mktemp("serve-tiny") / "llama")


@pytest.fixture(scope="module")
def llama(llama_path: Path) -> fmgate.Model:
    return fmgate.load(f"transformers:{llama_path}", device="cpu")


class Echo(FakeBackend):
    """Answers the last message in capitals; embeds a text as [its length, 1]."""

    async def aembed(self, texts: Sequence[str]) -> EmbeddingResult:
        return self.embed(texts)


@pytest.fixture
def echo() -> fmgate.Model:
    return fmgate.Model(Echo(fake_config()))


@pytest.fixture
def echo_url(echo: fmgate.Model) -> Iterator[str]:
    with serving({"echo": echo}) as url:
        yield url


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.json()["error"]
        return error


def request(
    url: str,
    method: str,
    path: str,
    body: bytes | Any = None,
    headers: dict[str, str] | None = None,
    *,
    chunked: bool = False,
) -> Answer:
    """One raw HTTP request, for what the SDK would refuse to send (bad JSON, huge bodies);
    ``path`` is relative to ``url`` (the base URL, ``.../v1``)."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    sent = {"content-type": "application/json", **(headers or {})}
    try:
        if chunked:
            conn.request(method, parts.path + path, body=iter([data or b""]), headers=sent)
        else:
            conn.request(method, parts.path + path, body=data, headers=sent)
        response = conn.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def chat_body(content: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": content}], **extra}
