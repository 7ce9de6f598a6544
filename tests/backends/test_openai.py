"""The OpenAI wire backend, end to end through ``fmgate.load`` with mocked or loopback HTTP."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import genai_prices
import httpx
import httpx2
import openai
import pytest
import respx

import fmgate
from fmgate._providers import providers
from fmgate._types import ChatRequest, GenerationParams, Message
from fmgate.backends import BackendConfig
from fmgate.backends.openai import OpenAIBackend

from . import openai_wire as wire

CHAT_URL = "https://api.openai.com/v1/chat/completions"
KEY = "sk-test-canary0123456789abcdefABCDEF"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.fixture
def server() -> Iterator[wire.LoopbackServer]:
    yield from wire.serve(wire.LoopbackServer())


def _json(route: respx.Route, body: Any, status: int = 200, **headers: str) -> respx.Route:
    return route.mock(return_value=httpx.Response(status, json=body, headers=headers))


def _sse(route: respx.Route, body: bytes) -> respx.Route:
    headers = {"content-type": "text/event-stream"}
    return route.mock(return_value=httpx.Response(200, content=body, headers=headers))


def _sent(route: respx.Route) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls.last.request.content)
    return body


# -- non-streaming ---------------------------------------------------------------------------------


def test_generate_returns_text_usage_and_a_record(
    httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    usage = wire.usage(20, 5, cached=8, reasoning=2)
    _json(httpx2_mock.post(CHAT_URL), wire.chat_completion("Hi there", usage_=usage))
    m = fmgate.load("openai:gpt-4o-mini")
    r = m.generate("Say hi")
    assert (r.text, r.finish_reason) == ("Hi there", "stop")
    assert r.usage == fmgate.Usage(
        20, 5, cache_read_tokens=8, reasoning_tokens=2, source="provider"
    )
    record = r.record
    assert memory.records == [record]
    assert record.model_id == wire.MODEL_SNAPSHOT
    assert (record.backend, record.provider, record.distribution) == ("openai", "openai", "api")
    assert record.endpoint == "api.openai.com:443"
    assert (record.outcome.status, record.outcome.finish_reason) == ("ok", "stop")
    assert record.outcome.chunks is None and not record.stream
    assert record.environment.backend_library is not None
    assert record.environment.backend_library.startswith("openai ")
    assert record.access.open_weights is False and record.access.data_leaves_machine is True


def test_request_body_and_headers(httpx2_mock: respx.Router) -> None:
    route = _json(httpx2_mock.post(CHAT_URL), wire.chat_completion())
    m = fmgate.load("openai:gpt-4o-mini", system="Be brief.", temperature=0.5)
    m.generate(
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
        max_tokens=16,
        top_p=0.9,
        stop="END",
        seed=7,
        openai_logprobs=True,
    )
    assert _sent(route) == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
        "max_completion_tokens": 16,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["END"],
        "logprobs": True,
    }
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert "openai-organization" not in request.headers  # no OPENAI_ORG_ID set


def test_fmgate_owned_body_keys_cannot_be_overridden(
    httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    m = fmgate.load("openai:gpt-4o-mini")  # no route: a request would fail the test
    with pytest.raises(fmgate.InvalidRequestError, match="'stream'"):
        m.generate("x", openai_stream=True)
    assert memory.records[-1].outcome.error_type == "InvalidRequestError"


def test_refusal_is_the_text_when_content_is_null(httpx2_mock: respx.Router) -> None:
    body = wire.chat_completion(None)
    body["choices"][0]["message"]["refusal"] = "I can't help with that."
    _json(httpx2_mock.post(CHAT_URL), body)
    assert fmgate.load("openai:gpt-4o-mini").generate("x").text == "I can't help with that."


async def test_agenerate(httpx2_mock: respx.Router) -> None:
    route = _json(httpx2_mock.post(CHAT_URL), wire.chat_completion("async hi"))
    async with fmgate.load("openai:gpt-4o-mini") as m:
        r = await m.agenerate("x", max_tokens=3)
        again = await m.agenerate("y")
        backend: Any = m.backend
        assert len(backend._aclients) == 1  # one client for this loop, built once and reused
    assert (r.text, again.text) == ("async hi", "async hi")
    assert r.record.outcome.status == "ok" and r.usage.output_tokens == 5
    assert route.call_count == 2
    assert json.loads(route.calls[0].request.content)["max_completion_tokens"] == 3


# -- cost ------------------------------------------------------------------------------------------


def test_cost_is_genai_prices_list_price(httpx2_mock: respx.Router) -> None:
    usage = wire.usage(1000, 200, cached=400)
    _json(httpx2_mock.post(CHAT_URL), wire.chat_completion(usage_=usage))
    record = fmgate.load("openai:gpt-4o-mini").generate("x").record
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=400),
        wire.MODEL_SNAPSHOT,
        provider_id="openai",
    )
    assert record.cost.amount == expected.total_price
    assert record.cost.basis == "list_price"
    assert record.cost.source is not None and "genai-prices" in record.cost.source


def test_unpriced_model_has_unknown_cost(httpx2_mock: respx.Router) -> None:
    _json(httpx2_mock.post(CHAT_URL), wire.chat_completion(model="ft:my-own-model-xyz"))
    record = fmgate.load("openai:ft:my-own-model-xyz").generate("x").record
    assert record.cost.amount is None and record.cost.basis == "unknown"


def test_huggingface_route_picks_the_price_provider(
    monkeypatch: pytest.MonkeyPatch, httpx2_mock: respx.Router
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_test0123456789abcdefgh")
    model = "meta-llama/Llama-3.1-8B-Instruct"
    routed = fmgate.load(f"huggingface:{model}:novita")
    assert routed.backend.price_provider == "huggingface_novita"
    assert fmgate.load(f"huggingface:{model}").backend.price_provider is None
    route = httpx2_mock.post("https://router.huggingface.co/v1/chat/completions")
    _json(route, wire.chat_completion(model=model, usage_=wire.usage(100, 50)))
    r = routed.generate("x")
    assert _sent(route)["model"] == f"{model}:novita"
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=100, output_tokens=50),
        model,
        provider_id="huggingface_novita",
    )
    assert r.record.cost.amount == expected.total_price
    assert r.record.access.open_weights is True


# -- providers over the same wire ------------------------------------------------------------------


def test_groq_row_uses_its_url_key_and_max_tokens(
    monkeypatch: pytest.MonkeyPatch, httpx2_mock: respx.Router
) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk_test0123456789abcdefgh")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-secret-of-openai")
    route = httpx2_mock.post("https://api.groq.com/openai/v1/chat/completions")
    _json(route, wire.chat_completion(model="llama-3.1-8b-instant"))
    r = fmgate.load("groq:llama-3.1-8b-instant").generate("x", max_tokens=9)
    assert _sent(route)["max_tokens"] == 9 and "max_completion_tokens" not in _sent(route)
    headers = route.calls.last.request.headers
    assert headers["authorization"] == "Bearer gsk_test0123456789abcdefgh"
    assert "openai-organization" not in headers
    assert r.record.endpoint == "api.groq.com:443" and r.record.provider == "groq"
    assert fmgate.load("groq:llama-3.1-8b-instant").backend.price_provider == "groq"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_the_max_tokens_key_is_the_rows(httpx2_mock: respx.Router, field: str) -> None:
    row = dataclasses.replace(providers()["vllm"], max_tokens_param=field)
    route = _json(
        httpx2_mock.post("http://localhost:8000/v1/chat/completions"), wire.chat_completion()
    )
    backend = OpenAIBackend(BackendConfig(name="vllm", model="my-llama", provider=row))
    backend.complete(ChatRequest((Message("user", "x"),), GenerationParams(max_tokens=5)))
    assert _sent(route)[field] == 5 and len(_sent(route)) == 3  # model, messages and that one
    backend.close()


def test_openai_row_sends_the_org_header(
    monkeypatch: pytest.MonkeyPatch, httpx2_mock: respx.Router
) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-abc")
    route = _json(httpx2_mock.post(CHAT_URL), wire.chat_completion())
    fmgate.load("openai:gpt-4o-mini").generate("x")
    assert route.calls.last.request.headers["openai-organization"] == "org-abc"


def test_keyless_vllm_on_loopback(server: wire.LoopbackServer) -> None:
    server.replies.append(wire.Reply(json_body=wire.chat_completion("local", model="my-llama")))
    m = fmgate.load("vllm:my-llama", base_url=server.base_url)
    r = m.generate("x", max_tokens=4)
    assert r.text == "local"
    seen = server.seen[-1]
    assert seen.path == "/v1/chat/completions" and seen.body["max_tokens"] == 4
    assert seen.headers["authorization"] == "Bearer EMPTY"
    record = r.record
    assert record.distribution == "self_hosted"
    assert record.endpoint == f"127.0.0.1:{server.port}"
    assert record.access.data_leaves_machine is False
    assert record.access.requires_api_key is False and record.access.offline_capable is True
    assert record.cost.amount is None and record.cost.basis == "unknown"


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(fmgate.MissingAPIKeyError, match="OPENAI_API_KEY") as info:
        fmgate.load("openai:gpt-4o-mini")
    assert info.value.env_var == "OPENAI_API_KEY"


@pytest.mark.parametrize("url", ["not a url", "ftp://host/v1", "http://[::1/v1", "http:///v1"])
def test_bad_base_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(fmgate.ConfigurationError, match="base_url"):
        fmgate.load("openai:gpt-4o-mini", base_url=url)


def test_timeout_setting_reaches_the_client() -> None:
    default: Any = fmgate.load("openai:gpt-4o-mini").backend
    assert default._client.timeout == openai.DEFAULT_TIMEOUT
    m = fmgate.load("openai:gpt-4o-mini", timeout=3.5)
    assert m.backend._client.timeout == 3.5  # type: ignore[attr-defined]
    assert m.backend._client.max_retries == 0  # type: ignore[attr-defined]


# -- streaming -------------------------------------------------------------------------------------


def test_stream_concatenates_chunks_and_takes_usage_from_the_last(
    httpx2_mock: respx.Router,
) -> None:
    pieces = ["Hel", "lo", ", ", "world"]
    route = _sse(httpx2_mock.post(CHAT_URL), wire.sse(wire.stream_chunks(pieces)))
    m = fmgate.load("openai:gpt-4o-mini")
    with m.stream("x", max_tokens=8) as s:
        texts = [c.text for c in s]
    assert texts == pieces
    r = s.response
    assert r.text == "Hello, world" and r.finish_reason == "stop"
    assert r.usage == fmgate.Usage(
        12, 4, cache_read_tokens=0, reasoning_tokens=0, source="provider"
    )
    record = s.record
    assert record.stream and record.outcome.chunks == 4 and record.model_id == wire.MODEL_SNAPSHOT
    ttft, total = record.latency.ttft_s, record.latency.total_s
    assert ttft is not None and total is not None and 0 < ttft <= total
    sent = _sent(route)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_completion_tokens"] == 8


def test_stream_skips_comments_and_other_fields(httpx2_mock: respx.Router) -> None:
    events = wire.stream_chunks(["a", "b"])
    crlf = wire.sse(events).replace(b"\n\n", b"\r\n\r\n")
    body = b": keep-alive\n\nevent: message\nid: 1\n" + crlf
    _sse(httpx2_mock.post(CHAT_URL), body)
    s = fmgate.load("openai:gpt-4o-mini").stream("x")
    assert "".join(c.text for c in s) == "ab" and s.response.usage.output_tokens == 2


async def test_astream(httpx2_mock: respx.Router) -> None:
    _sse(httpx2_mock.post(CHAT_URL), wire.sse(wire.stream_chunks(["x", "y", "z"])))
    m = fmgate.load("openai:gpt-4o-mini")
    s = m.astream("x")
    texts = [c.text async for c in s]
    assert texts == ["x", "y", "z"]
    assert s.record.outcome.chunks == 3 and s.record.usage.output_tokens == 3
    assert s.record.outcome.finish_reason == "stop"
    await m.aclose()


def test_stream_without_usage_chunk_still_finishes(httpx2_mock: respx.Router) -> None:
    events = wire.stream_chunks(["a"])[:-1]  # a server that ignores include_usage
    _sse(httpx2_mock.post(CHAT_URL), wire.sse(events))
    s = fmgate.load("openai:gpt-4o-mini").stream("x")
    assert [c.text for c in s] == ["a"]
    assert s.record.outcome.status == "ok" and s.record.usage.input_tokens is None


def test_closing_a_stream_early_closes_the_response(
    httpx2_mock: respx.Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[httpx2.Response] = []
    real_close = httpx2.Response.close

    def spy(self: httpx2.Response) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(httpx2.Response, "close", spy)
    _sse(httpx2_mock.post(CHAT_URL), wire.sse(wire.stream_chunks(["one", "two", "three"])))
    with fmgate.load("openai:gpt-4o-mini").stream("x") as s:
        for chunk in s:
            assert chunk.text == "one"
            break
    assert closed and closed[-1].is_closed
    assert s.record.outcome.status == "ok"
    assert s.record.outcome.finish_reason == "client_closed"
    assert s.response.text == "one"


async def test_closing_an_async_stream_early(httpx2_mock: respx.Router) -> None:
    _sse(httpx2_mock.post(CHAT_URL), wire.sse(wire.stream_chunks(["one", "two"])))
    async with fmgate.load("openai:gpt-4o-mini").astream("x") as s:
        async for _ in s:
            break
    assert s.record.outcome.finish_reason == "client_closed"


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "http_status"),
    [
        (
            401,
            wire.error_body("Incorrect API key provided.", code="invalid_api_key"),
            fmgate.AuthenticationError,
            401,
        ),
        (
            403,
            wire.error_body("Country not supported.", code="unsupported_country"),
            fmgate.AuthenticationError,
            403,
        ),
        (
            404,
            wire.error_body("The model `gpt-9` does not exist.", code="model_not_found"),
            fmgate.NotFoundError,
            404,
        ),
        (
            500,
            wire.error_body("The server had an error.", type_="server_error"),
            fmgate.ServerError,
            500,
        ),
        (503, wire.error_body("Overloaded.", type_="server_error"), fmgate.ServerError, 503),
        (
            400,
            wire.error_body(
                "This model's maximum context length is 128000 tokens.",
                code="context_length_exceeded",
                param="messages",
            ),
            fmgate.ContextLengthError,
            400,
        ),
        (
            400,
            wire.error_body("Invalid value for 'temperature'.", param="temperature"),
            fmgate.BadRequestError,
            400,
        ),
        (422, wire.error_body("Unprocessable."), fmgate.BadRequestError, 422),
        (408, wire.error_body("Request timed out."), fmgate.TimeoutError, 408),
    ],
)
def test_http_errors_map_by_type_and_are_recorded(
    httpx2_mock: respx.Router,
    memory: fmgate.MemorySink,
    status: int,
    body: Any,
    error: type[fmgate.BackendError],
    http_status: int,
) -> None:
    _json(httpx2_mock.post(CHAT_URL), body, status)
    m = fmgate.load("openai:gpt-4o-mini")
    with pytest.raises(error) as info:
        m.generate("x")
    assert type(info.value) is error
    assert info.value.status_code == http_status and info.value.provider == "openai"
    assert isinstance(info.value.__cause__, Exception)
    assert body["error"]["message"] in str(info.value)
    (record,) = memory.records
    assert record.outcome.status == "error" and record.outcome.error_type == error.__name__
    assert record.outcome.http_status == http_status


def test_rate_limit_carries_retry_after(
    httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    body = wire.error_body("Rate limit reached.", type_="requests", code="rate_limit_exceeded")
    _json(httpx2_mock.post(CHAT_URL), body, 429, **{"retry-after": "7"})
    with pytest.raises(fmgate.RateLimitError) as info:
        fmgate.load("openai:gpt-4o-mini").generate("x")
    assert info.value.retry_after_s == 7.0 and info.value.retryable
    assert memory.records[-1].outcome.error_type == "RateLimitError"


async def test_async_errors_map_too(httpx2_mock: respx.Router) -> None:
    _json(httpx2_mock.post(CHAT_URL), wire.error_body("nope", code="model_not_found"), 404)
    with pytest.raises(fmgate.NotFoundError):
        await fmgate.load("openai:gpt-4o-mini").agenerate("x")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"<html>Bad gateway</html>", "not JSON"),
        (b'{"id": "x", "object": "chat.completion"}', "missing 'choices'"),
        (b'{"choices": [], "model": "m"}', "no choices"),
        (b'{"choices": [{"message": {"content": 3}}]}', "str"),
        (b'{"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": "9"}}', "int"),
    ],
)
def test_unreadable_200_body_is_malformed(
    httpx2_mock: respx.Router, memory: fmgate.MemorySink, content: bytes, match: str
) -> None:
    reply = httpx.Response(200, content=content, headers={"content-type": "application/json"})
    httpx2_mock.post(CHAT_URL).mock(return_value=reply)
    with pytest.raises(fmgate.MalformedResponseError, match=match):
        fmgate.load("openai:gpt-4o-mini").generate("x")
    assert memory.records[-1].outcome.error_type == "MalformedResponseError"


def test_error_object_in_a_200_body(httpx2_mock: respx.Router) -> None:
    _json(httpx2_mock.post(CHAT_URL), wire.error_body("upstream failed", type_="server_error"))
    with pytest.raises(fmgate.ServerError, match="upstream failed"):
        fmgate.load("openai:gpt-4o-mini").generate("x")


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx2.ConnectTimeout("timed out"), fmgate.TimeoutError),
        (httpx2.ReadTimeout("timed out"), fmgate.TimeoutError),
        (httpx2.ConnectError("refused"), fmgate.ConnectionError),
    ],
)
def test_transport_failures(
    httpx2_mock: respx.Router, memory: fmgate.MemorySink, exc: Exception, error: type[Exception]
) -> None:
    httpx2_mock.post(CHAT_URL).mock(side_effect=exc)
    with pytest.raises(error):
        fmgate.load("openai:gpt-4o-mini").generate("x")
    assert memory.records[-1].outcome.error_type == error.__name__


def test_stream_ending_without_finish_or_usage_is_malformed(
    httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    events = wire.stream_chunks(["a", "b", "c"])[:3]
    _sse(httpx2_mock.post(CHAT_URL), wire.sse(events, done=False))
    s = fmgate.load("openai:gpt-4o-mini").stream("x")
    got: list[str] = []
    with pytest.raises(fmgate.MalformedResponseError, match="cut short"):
        for c in s:
            got.append(c.text)
    assert got == ["a", "b"]
    record = memory.records[-1]
    assert record.outcome.status == "error" and record.outcome.chunks == 2
    assert record.outcome.error_type == "MalformedResponseError"


def test_connection_dropped_mid_stream_is_malformed(
    server: wire.LoopbackServer, memory: fmgate.MemorySink
) -> None:
    partial = wire.sse(wire.stream_chunks(["a", "b", "c"])[:3], done=False)
    server.replies.append(wire.Reply(cut_after=partial))
    s = fmgate.load("openai:gpt-4o-mini", base_url=server.base_url).stream("x")
    with pytest.raises(fmgate.MalformedResponseError, match="cut short"):
        for _ in s:
            pass
    assert s.record.outcome.error_type == "MalformedResponseError"
    assert memory.records[-1].outcome.status == "error"


def test_connection_dropped_before_any_event_is_a_connection_error(
    server: wire.LoopbackServer,
) -> None:
    server.replies.append(wire.Reply(cut_after=b""))
    s = fmgate.load("openai:gpt-4o-mini", base_url=server.base_url).stream("x")
    with pytest.raises(fmgate.ConnectionError, match="before the stream began"):
        s.collect()
    assert s.record.outcome.error_type == "ConnectionError"


async def test_async_connection_dropped_mid_stream(server: wire.LoopbackServer) -> None:
    partial = wire.sse(wire.stream_chunks(["a", "b"])[:2], done=False)
    server.replies.append(wire.Reply(cut_after=partial))
    s = fmgate.load("openai:gpt-4o-mini", base_url=server.base_url).astream("x")
    with pytest.raises(fmgate.MalformedResponseError, match="cut short"):
        async for _ in s:
            pass


def test_stream_over_loopback_reuses_the_connection(server: wire.LoopbackServer) -> None:
    body = wire.sse(wire.stream_chunks(["a"]))
    server.replies += [wire.Reply(sse_body=body), wire.Reply(sse_body=body)]
    m = fmgate.load("openai:gpt-4o-mini", base_url=server.base_url)
    for _ in range(2):
        assert m.stream("x").collect().text == "a"
    assert len(server.seen) == 2
    assert server.seen[0].client_port == server.seen[1].client_port


def test_read_timeout_mid_stream(httpx2_mock: respx.Router) -> None:
    def body() -> Iterator[bytes]:
        yield wire.sse(wire.stream_chunks(["a", "b"])[:2], done=False)
        raise httpx2.ReadTimeout("read timed out")

    reply = httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})
    httpx2_mock.post(CHAT_URL).mock(return_value=reply)
    s = fmgate.load("openai:gpt-4o-mini").stream("x")
    with pytest.raises(fmgate.TimeoutError, match="stalled"):
        s.collect()
    assert s.record.outcome.error_type == "TimeoutError" and s.text == "a"


def test_error_event_mid_stream(httpx2_mock: respx.Router) -> None:
    events = [*wire.stream_chunks(["a"])[:2], wire.error_body("overloaded", type_="server_error")]
    _sse(httpx2_mock.post(CHAT_URL), wire.sse(events, done=False))
    with pytest.raises(fmgate.ServerError, match="overloaded"):
        fmgate.load("openai:gpt-4o-mini").stream("x").collect()


def test_malformed_chunk(httpx2_mock: respx.Router) -> None:
    _sse(httpx2_mock.post(CHAT_URL), b"data: {not json}\n\n")
    with pytest.raises(fmgate.MalformedResponseError, match="chat.completion.chunk"):
        fmgate.load("openai:gpt-4o-mini").stream("x").collect()


def test_stream_http_error_is_mapped(httpx2_mock: respx.Router) -> None:
    body = wire.error_body("Rate limit reached.", code="rate_limit_exceeded")
    _json(httpx2_mock.post(CHAT_URL), body, 429, **{"retry-after": "1"})
    s = fmgate.load("openai:gpt-4o-mini").stream("x")
    with pytest.raises(fmgate.RateLimitError):
        s.collect()
    assert s.record.outcome.http_status == 429


# -- secrets ---------------------------------------------------------------------------------------


def test_key_never_reaches_messages_or_records(
    httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    echoed = wire.error_body(f"Incorrect API key provided: {KEY}.", code="invalid_api_key")
    _json(httpx2_mock.post(CHAT_URL), echoed, 401)
    m = fmgate.load("openai:gpt-4o-mini")
    with pytest.raises(fmgate.AuthenticationError) as info:
        m.generate("x")
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert KEY not in json.dumps(memory.records[-1].to_dict())
    assert KEY not in repr(m) and KEY not in repr(m.backend)
    assert "Incorrect API key provided" in str(info.value)


def test_a_key_echoed_in_success_fields_is_not_recorded(
    httpx2_mock: respx.Router, memory: fmgate.MemorySink, tmp_path: Path
) -> None:
    store = fmgate.SqliteStore(tmp_path / "own" / "s.db")
    body = wire.chat_completion(model=f"gpt-4o-mini {KEY}", finish_reason=f"stop {KEY}")
    _json(httpx2_mock.post(CHAT_URL), body)
    record = fmgate.load("openai:gpt-4o-mini", sinks=[store]).generate("x").record
    assert record.model_id == "gpt-4o-mini ***" and record.outcome.finish_reason == "stop ***"
    store.close()
    for path in (tmp_path / "own").iterdir():  # the database, and its WAL where one is left
        assert KEY.encode() not in path.read_bytes(), path


def test_a_lone_surrogate_from_the_server_is_stored_replaced_and_flagged(
    httpx2_mock: respx.Router, tmp_path: Path
) -> None:
    store = fmgate.SqliteStore(tmp_path / "s.db")
    body = json.dumps(wire.chat_completion(model="gpt-\ud800x"))  # ASCII: "\\ud800" on the wire
    headers = {"content-type": "application/json"}
    httpx2_mock.post(CHAT_URL).mock(return_value=httpx.Response(200, content=body, headers=headers))
    record = fmgate.load("openai:gpt-4o-mini", sinks=[store]).generate("x").record
    assert record.model_id == "gpt-\ufffdx"
    assert record.tags["fmgate.sanitized"] == "model_id"
    assert [r.model_id for r in store.records()] == ["gpt-\ufffdx"]


@pytest.mark.parametrize("count", [-5, 2**62, 2**64])
def test_an_impossible_token_count_is_unknown_and_never_priced(
    httpx2_mock: respx.Router, count: int
) -> None:
    usage = {"prompt_tokens": count, "completion_tokens": 3, "total_tokens": count + 3}
    _json(httpx2_mock.post(CHAT_URL), wire.chat_completion(usage_=usage))
    record = fmgate.load("openai:gpt-4o-mini").generate("x").record
    assert record.usage.input_tokens is None and record.usage.output_tokens == 3
    assert record.cost.amount is None and record.cost.basis == "unknown"
    assert record.tags["fmgate.sanitized"] == "usage_input_tokens"


# -- embeddings ------------------------------------------------------------------------------------


def test_embed(httpx2_mock: respx.Router, memory: fmgate.MemorySink) -> None:
    route = httpx2_mock.post("https://api.openai.com/v1/embeddings")
    _json(route, wire.embedding_list([[0.1, 0.2], [0.3, 0.4]], prompt_tokens=6))
    e = fmgate.load("openai:text-embedding-3-small").embed(["a", "b"])
    assert e.vectors == [[0.1, 0.2], [0.3, 0.4]]
    assert e.usage == fmgate.Usage(6, 0, source="provider", items=2)
    assert _sent(route) == {
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
        "encoding_format": "float",
    }
    record = memory.records[-1]
    assert record.operation == "embeddings" and record.model_id == "text-embedding-3-small"
    assert record.cost.basis == "list_price"


async def test_aembed_and_order_by_index(httpx2_mock: respx.Router) -> None:
    body = wire.embedding_list([[1.0], [2.0]])
    body["data"].reverse()
    _json(httpx2_mock.post("https://api.openai.com/v1/embeddings"), body)
    e = await fmgate.load("openai:text-embedding-3-small").aembed(["a", "b"])
    assert e.vectors == [[1.0], [2.0]]


def test_embed_count_mismatch_is_malformed(httpx2_mock: respx.Router) -> None:
    route = httpx2_mock.post("https://api.openai.com/v1/embeddings")
    _json(route, wire.embedding_list([[1.0]]))
    with pytest.raises(fmgate.MalformedResponseError, match="1 embeddings for 2 inputs"):
        fmgate.load("openai:text-embedding-3-small").embed(["a", "b"])


# -- the class itself ------------------------------------------------------------------------------


async def test_close_and_aclose_close_the_clients(httpx2_mock: respx.Router) -> None:
    _json(httpx2_mock.post(CHAT_URL), wire.chat_completion())
    m = fmgate.load("openai:gpt-4o-mini")
    await m.agenerate("x")
    backend: Any = m.backend
    sync_client, async_client = backend._client, await backend._aclients.get()
    await m.aclose()
    assert sync_client.is_closed() and async_client.is_closed()
    m2 = fmgate.load("openai:gpt-4o-mini")
    m2.close()
    assert m2.backend._client.is_closed()  # type: ignore[attr-defined]


def test_class_attributes_and_access() -> None:
    assert (OpenAIBackend.wire, OpenAIBackend.library) == ("openai", "openai")
    assert OpenAIBackend.supports_embeddings
    m = fmgate.load("openai:gpt-4o")
    assert m.access.context_window == 128000 and m.access.requires_api_key is True
    m.close()


# -- what other servers say when they fail ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"detail": "Model qwen is not loaded"}, "Model qwen is not loaded"),  # transformers serve
        ({"detail": [{"loc": ["body", "x"], "msg": "Field required"}]}, "Field required"),
        ({"error": "model 'llama9' not found"}, "model 'llama9' not found"),  # Ollama
        ("upstream connect error", "upstream connect error"),  # a proxy's plain text
    ],
)
def test_a_non_openai_error_body_keeps_its_explanation(
    httpx2_mock: respx.Router, memory: fmgate.MemorySink, body: Any, said: str
) -> None:
    route = httpx2_mock.post(CHAT_URL)
    if isinstance(body, str):
        route.mock(return_value=httpx.Response(400, text=body))
    else:
        _json(route, body, 400)
    with pytest.raises(fmgate.BadRequestError, match=re.escape(said)):
        fmgate.load("openai:gpt-4o-mini").generate("x")
    assert said in (memory.records[-1].outcome.error_message or "")


def test_an_error_body_answering_a_stream_says_what_the_server_said(
    httpx2_mock: respx.Router,
) -> None:
    _json(httpx2_mock.post(CHAT_URL), {"detail": "streaming is not supported here"})
    with pytest.raises(fmgate.ServerError, match="streaming is not supported here"):
        "".join(c.text for c in fmgate.load("openai:gpt-4o-mini").stream("x"))


def test_a_stream_without_usage_is_counted_and_says_it_is_an_estimate(
    httpx2_mock: respx.Router,
) -> None:
    events = wire.stream_chunks(["One", " two", " three"])[:-1]  # no usage-only chunk at the end
    _sse(httpx2_mock.post(CHAT_URL), wire.sse(events))  # as from a server that ignores it
    stream = fmgate.load("openai:gpt-4o-mini").stream("x")
    assert "".join(c.text for c in stream) == "One two three"
    usage = stream.record.usage
    assert (usage.input_tokens, usage.output_tokens, usage.source) == (None, 3, "estimate")
