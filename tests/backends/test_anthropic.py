"""The Anthropic backend end to end: fmgate.load -> the anthropic SDK -> mocked or loopback HTTP."""

from __future__ import annotations

import asyncio
import email.utils
import json
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import genai_prices
import httpx
import pytest
import respx

import fmgate
from fmgate.backends.anthropic import DEFAULT_MAX_TOKENS, AnthropicBackend, _StreamReader
from tests.backends import anthropic_wire as wire


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", wire.KEY)


@pytest.fixture
def model() -> Iterator[fmgate.Model]:
    m = fmgate.load(wire.SPEC)
    yield m
    m.close()


@pytest.fixture
async def amodel() -> AsyncIterator[fmgate.Model]:
    m = fmgate.load(wire.SPEC)
    yield m
    await m.aclose()


def reply(router: respx.Router, *args: Any, **kwargs: Any) -> respx.Route:
    return router.post(wire.API_URL).mock(return_value=httpx.Response(*args, **kwargs))


def stream_reply(router: respx.Router, events: list[bytes]) -> respx.Route:
    headers = {"content-type": "text/event-stream"}
    return reply(router, 200, headers=headers, content=b"".join(events))


def timeouts(timeout: float | None) -> dict[str, Any]:
    return {} if timeout is None else {"timeout": timeout}


def sent(route: respx.Route) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls.last.request.content)
    return body


# -- non-streaming ---------------------------------------------------------------------------------


def test_generate_reads_text_usage_and_finish_reason(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    reply(httpx2_mock, 200, json=wire.message("Hi there", usage_=wire.usage(12, 6)))

    r = model.generate("Say hi")

    assert r.text == "Hi there"
    assert r.finish_reason == "stop"
    assert r.usage == fmgate.Usage(12, 6, 0, 0, None, "provider")
    record = r.record
    assert record.model_id == wire.MODEL_ID
    assert (record.backend, record.provider) == ("anthropic", "anthropic")
    assert record.distribution == "api"
    assert record.endpoint == "api.anthropic.com:443"
    assert record.outcome.status == "ok" and record.outcome.finish_reason == "stop"
    assert record.access.open_weights is False and record.access.data_leaves_machine is True
    assert (record.environment.backend_library or "").startswith("anthropic ")
    assert memory.records == [record]


def test_request_body_follows_the_messages_api(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = reply(httpx2_mock, 200, json=wire.message())
    prompt = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": "Again"},
    ]

    model.generate(
        prompt,
        system="Be brief.",
        temperature=0.3,
        top_p=0.9,
        stop=["END", "STOP"],
        anthropic_top_k=5,
        anthropic_metadata={"user_id": "u-1"},
    )

    body = sent(route)
    assert body == {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "system": "Be brief.\n\nAnswer in French.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": "Again"},
        ],
        "stop_sequences": ["END", "STOP"],
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 5,
        "metadata": {"user_id": "u-1"},
    }
    headers = route.calls.last.request.headers
    assert headers["anthropic-version"]
    assert headers["x-stainless-retry-count"] == "0"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("timeout", [None, 30.0])
def test_the_request_is_the_one_messages_create_sends(
    httpx2_mock: respx.Router, stream: bool, timeout: float | None
) -> None:
    """client.post skips messages.create's argument processing, not its headers or body."""
    events = wire.stream_events()
    route = (
        stream_reply(httpx2_mock, events)
        if stream
        else reply(httpx2_mock, 200, json=wire.message())
    )
    with fmgate.load(wire.SPEC, **timeouts(timeout)) as m:
        if stream:
            m.stream("Hi", max_tokens=64, temperature=0.5).collect()
        else:
            m.generate("Hi", max_tokens=64, temperature=0.5)
    ours = route.calls.last.request
    sdk = anthropic.Anthropic(
        api_key=wire.KEY, max_retries=0, timeout=timeout or anthropic.NOT_GIVEN
    )
    created = sdk.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=64,
        extra_body={"temperature": 0.5},  # this SDK has no temperature argument
        **({"stream": True} if stream else {}),  # as the backend did: no "stream": false
        messages=[{"role": "user", "content": "Hi"}],
    )
    if stream:
        list(created)
    sdk.close()
    theirs = route.calls.last.request
    assert json.loads(ours.content) == json.loads(theirs.content)
    assert dict(ours.headers) == dict(theirs.headers)
    assert ours.headers["anthropic-version"]
    assert wire.KEY in ours.headers.get("x-api-key", "") + ours.headers.get("authorization", "")


def test_the_record_shows_the_default_max_tokens(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = reply(httpx2_mock, 200, json=wire.message())
    record = model.generate("Hi").record
    assert record.params == {"max_tokens": DEFAULT_MAX_TOKENS} == {"max_tokens": 4096}
    assert sent(route)["max_tokens"] == 4096
    assert model.generate("Hi", max_tokens=7).record.params == {"max_tokens": 7}


def test_minimal_body_and_explicit_max_tokens(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    route = reply(httpx2_mock, 200, json=wire.message())

    model.generate("Hi", max_tokens=32)

    assert sent(route) == {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "Hi"}],
    }


def test_defaults_from_load_are_sent(httpx2_mock: respx.Router) -> None:
    route = reply(httpx2_mock, 200, json=wire.message())
    with fmgate.load(wire.SPEC, max_tokens=100, temperature=0.0, anthropic_top_k=3) as m:
        m.generate("Hi")
    body = sent(route)
    assert (body["max_tokens"], body["temperature"], body["top_k"]) == (100, 0.0, 3)


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "pause_turn"),
    ],
)
def test_finish_reasons_use_openai_words(
    model: fmgate.Model, httpx2_mock: respx.Router, stop_reason: str, expected: str
) -> None:
    reply(httpx2_mock, 200, json=wire.message(stop_reason=stop_reason))
    r = model.generate("Hi")
    assert r.finish_reason == expected
    assert r.record.outcome.finish_reason == expected


def test_text_joins_text_blocks_and_skips_others(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    body = wire.message(stop_reason="tool_use")
    body["content"] = [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Let me check. "},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "text", "text": "Done."},
    ]
    reply(httpx2_mock, 200, json=body)
    assert model.generate("Weather?").text == "Let me check. Done."


# -- usage and cost --------------------------------------------------------------------------------


def test_cached_tokens_count_as_input(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    body = wire.message(usage_=wire.usage(100, 50, cache_read=2000, cache_creation=500))
    reply(httpx2_mock, 200, json=body)

    r = model.generate("Hi")

    assert r.usage == fmgate.Usage(
        input_tokens=2600,
        output_tokens=50,
        cache_read_tokens=2000,
        cache_write_tokens=500,
        source="provider",
    )
    # genai-prices reads Anthropic's usage the same way.
    extracted = genai_prices.extract_usage(body, provider_id="anthropic")
    assert extracted.usage.input_tokens == 2600
    assert extracted.usage.cache_read_tokens == 2000
    assert extracted.usage.cache_write_tokens == 500


def test_absent_cache_fields_stay_unknown(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    body = wire.message(usage_=wire.usage(10, 5, cache_read=None, cache_creation=None))
    reply(httpx2_mock, 200, json=body)
    usage = model.generate("Hi").usage
    assert usage.input_tokens == 10
    assert usage.cache_read_tokens is None and usage.cache_write_tokens is None


def test_cost_is_the_genai_prices_list_price(
    model: fmgate.Model, httpx2_mock: respx.Router
) -> None:
    reply(
        httpx2_mock,
        200,
        json=wire.message(usage_=wire.usage(1000, 100, cache_read=2000, cache_creation=500)),
    )

    r = model.generate("Hi")

    expected = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=3500, output_tokens=100, cache_read_tokens=2000, cache_write_tokens=500
        ),
        wire.MODEL_ID,
        provider_id="anthropic",
    )
    assert r.record.cost.basis == "list_price"
    assert r.record.cost.amount == expected.total_price
    # Fresh input, cache reads and cache writes each at their own price (the prices are read from
    # the installed genai-prices, which may change them between releases).
    price = expected.model_price
    published = (
        1000 * price.input_mtok
        + 2000 * price.cache_read_mtok
        + 500 * price.cache_write_mtok
        + 100 * price.output_mtok
    ) / 1_000_000
    assert r.record.cost.amount == published


# -- streaming -------------------------------------------------------------------------------------


def test_stream_yields_text_then_usage_and_finish_reason(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    start = wire.usage(25, 1, cache_read=1000, cache_creation=200)
    route = stream_reply(httpx2_mock, wire.stream_events(("Hel", "lo", "!"), start_usage=start))

    stream = model.stream("Hi", max_tokens=20)
    chunks = [c.text for c in stream]

    assert chunks == ["Hel", "lo", "!"]
    assert sent(route)["stream"] is True
    r = stream.response
    assert r.text == "Hello!"
    assert r.finish_reason == "stop"
    assert r.usage == fmgate.Usage(1225, 15, 1000, 200, None, "provider")
    record = stream.record
    assert record.stream is True and record.model_id == wire.MODEL_ID
    assert record.outcome.status == "ok" and record.outcome.chunks == 3
    assert record.latency.ttft_s is not None and record.latency.total_s is not None
    assert 0 <= record.latency.ttft_s <= record.latency.total_s
    assert record.cost.basis == "list_price"
    assert memory.records == [record]


def test_documented_stream_example(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    stream_reply(httpx2_mock, [wire.DOCUMENTED_STREAM])
    stream = model.stream("Hi")
    assert "".join(c.text for c in stream) == "Hello!"
    assert stream.record.model_id == "claude-3-5-sonnet-20241022"
    assert stream.response.usage == fmgate.Usage(25, 15, None, None, None, "provider")


def test_message_delta_usage_is_cumulative(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    events = wire.stream_events(("a",))
    # Newer API versions repeat the input counts in message_delta: the last value wins.
    events[-2] = wire.sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
            "usage": {"input_tokens": 30, "cache_read_input_tokens": 4, "output_tokens": 9},
        },
    )
    stream_reply(httpx2_mock, events)
    stream = model.stream("Hi")
    stream.collect()
    assert stream.response.finish_reason == "length"
    assert stream.response.usage == fmgate.Usage(34, 9, 4, 0, None, "provider")


def test_stream_skips_non_text_deltas(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    thinking = wire.sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Let me think"},
        },
    )
    tool = wire.sse(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"city":'},
        },
    )
    future = wire.sse("some_future_event", {"type": "some_future_event"})
    events = wire.stream_events(("Hi",))
    stream_reply(httpx2_mock, [events[0], thinking, future, *events[1:-2], tool, *events[-2:]])
    assert [c.text for c in model.stream("Hi")] == ["Hi"]


async def test_astream(amodel: fmgate.Model, httpx2_mock: respx.Router) -> None:
    stream_reply(httpx2_mock, wire.stream_events(("One", " two")))

    stream = amodel.astream("Count")
    chunks = [c.text async for c in stream]

    assert chunks == ["One", " two"]
    assert stream.response.finish_reason == "stop"
    assert stream.response.usage == fmgate.Usage(12, 15, 0, 0, None, "provider")
    assert stream.record.outcome.chunks == 2


async def test_agenerate(amodel: fmgate.Model, httpx2_mock: respx.Router) -> None:
    route = reply(httpx2_mock, 200, json=wire.message("Async hi"))
    r = await amodel.agenerate("Hi", system="Be nice.")
    assert r.text == "Async hi" and r.finish_reason == "stop"
    assert sent(route)["system"] == "Be nice."


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_sse_split_anywhere_gives_the_same_deltas(size: int) -> None:
    payload = b"".join(wire.stream_events(("Hé", "llo", " 🌍")))
    for data in (payload, payload.replace(b"\n", b"\r\n"), payload.replace(b"\n", b"\r")):
        reader = _StreamReader("anthropic")
        deltas = [d for i in range(0, len(data), size) for d in reader.feed(data[i : i + size])]
        assert [d.text for d in deltas] == ["Hé", "llo", " 🌍"]
        (final,) = reader.finish()
        assert final.finish_reason == "stop" and final.model_id == wire.MODEL_ID


def test_sse_comments_and_multiline_data() -> None:
    reader = _StreamReader("anthropic")
    events = wire.stream_events(())
    multiline = (
        b": keep-alive comment\n"
        b"event: content_block_delta\n"
        b'data: {"type": "content_block_delta", "index": 0,\n'
        b'data:  "delta": {"type": "text_delta", "text": "x"}}\n\n'
    )
    deltas = [d for e in [events[0], multiline, *events[1:]] for d in reader.feed(e)]
    assert [d.text for d in deltas] == ["x"]


# -- closing early ---------------------------------------------------------------------------------


def capture_responses(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Keep the HTTP responses the backend opens, to check that they get closed."""
    opened: list[Any] = []
    post, apost = AnthropicBackend._post, AnthropicBackend._apost

    def spy(self: AnthropicBackend, body: dict[str, Any], **kw: Any) -> Any:
        opened.append(post(self, body, **kw))
        return opened[-1]

    async def aspy(self: AnthropicBackend, body: dict[str, Any], **kw: Any) -> Any:
        opened.append(await apost(self, body, **kw))
        return opened[-1]

    monkeypatch.setattr(AnthropicBackend, "_post", spy)
    monkeypatch.setattr(AnthropicBackend, "_apost", aspy)
    return opened


def test_closing_a_stream_early_closes_the_response(
    model: fmgate.Model, httpx2_mock: respx.Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = capture_responses(monkeypatch)
    stream_reply(httpx2_mock, wire.stream_events(("a", "b", "c")))

    with model.stream("Hi") as stream:
        first = next(iter(stream))

    assert first.text == "a"
    assert opened and opened[0].is_closed
    assert stream.record.outcome.status == "ok"
    assert stream.record.outcome.finish_reason == "client_closed"
    assert stream.response.text == "a"


async def test_closing_an_astream_early_closes_the_response(
    amodel: fmgate.Model, httpx2_mock: respx.Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = capture_responses(monkeypatch)
    stream_reply(httpx2_mock, wire.stream_events(("a", "b", "c")))

    async with amodel.astream("Hi") as stream:
        async for _ in stream:
            break

    assert opened and opened[0].is_closed
    assert stream.record.outcome.finish_reason == "client_closed"


def test_a_finished_stream_closes_the_response(
    model: fmgate.Model, httpx2_mock: respx.Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = capture_responses(monkeypatch)
    stream_reply(httpx2_mock, wire.stream_events())
    model.stream("Hi").collect()
    assert opened[0].is_closed


# -- errors ----------------------------------------------------------------------------------------

HTTP_ERRORS = [
    (401, "authentication_error", "invalid x-api-key", fmgate.AuthenticationError),
    (403, "permission_error", "Your API key does not have permission", fmgate.AuthenticationError),
    (404, "not_found_error", "model: claude-nope", fmgate.NotFoundError),
    (
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your rate limit",
        fmgate.RateLimitError,
    ),
    (500, "api_error", "Internal server error", fmgate.ServerError),
    (529, "overloaded_error", "Overloaded", fmgate.ServerError),
    (
        400,
        "invalid_request_error",
        "prompt is too long: 210000 tokens > 200000 maximum",
        fmgate.ContextLengthError,
    ),
    (
        400,
        "invalid_request_error",
        "input length and `max_tokens` exceed context limit: 197000 + 8192 > 200000, decrease "
        "input length or `max_tokens` and try again",
        fmgate.ContextLengthError,
    ),
    (400, "invalid_request_error", "messages: roles must alternate", fmgate.BadRequestError),
    (
        413,
        "request_too_large",
        "Request exceeds the maximum allowed number of bytes",
        fmgate.BadRequestError,
    ),
    (402, "billing_error", "Your credit balance is too low", fmgate.BadRequestError),
]


@pytest.mark.parametrize(("status", "kind", "text", "error"), HTTP_ERRORS)
def test_http_errors_map_by_type_and_are_recorded(
    model: fmgate.Model,
    httpx2_mock: respx.Router,
    memory: fmgate.MemorySink,
    status: int,
    kind: str,
    text: str,
    error: type[fmgate.BackendError],
) -> None:
    reply(httpx2_mock, status, json=wire.error_body(kind, text), headers={"request-id": "req_1"})

    with pytest.raises(error) as info:
        model.generate("Hi")

    assert type(info.value) is error
    assert info.value.status_code == status and info.value.provider == "anthropic"
    assert text in str(info.value) and kind in str(info.value) and "req_1" in str(info.value)
    assert info.value.__cause__ is not None
    (record,) = memory.records
    assert record.outcome.status == "error"
    assert record.outcome.error_type == error.__name__
    assert record.outcome.http_status == status


@pytest.mark.parametrize(("status", "kind", "text", "error"), HTTP_ERRORS[:6])
def test_http_errors_on_a_stream(
    model: fmgate.Model,
    httpx2_mock: respx.Router,
    memory: fmgate.MemorySink,
    status: int,
    kind: str,
    text: str,
    error: type[fmgate.BackendError],
) -> None:
    reply(httpx2_mock, status, json=wire.error_body(kind, text))
    stream = model.stream("Hi")
    with pytest.raises(error):
        stream.collect()
    assert stream.record.outcome.error_type == error.__name__
    assert memory.records[-1].outcome.http_status == status


async def test_http_errors_async(amodel: fmgate.Model, httpx2_mock: respx.Router) -> None:
    reply(httpx2_mock, 529, json=wire.error_body("overloaded_error", "Overloaded"))
    with pytest.raises(fmgate.ServerError) as info:
        await amodel.agenerate("Hi")
    assert info.value.retryable and info.value.status_code == 529


def test_retry_after_seconds(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    reply(
        httpx2_mock,
        429,
        json=wire.error_body("rate_limit_error", "slow down"),
        headers={"retry-after": "7"},
    )
    with pytest.raises(fmgate.RateLimitError) as info:
        model.generate("Hi")
    assert info.value.retry_after_s == 7.0 and info.value.retryable


def test_retry_after_http_date(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    reply(
        httpx2_mock,
        429,
        json=wire.error_body("rate_limit_error", "slow down"),
        headers={"retry-after": when},
    )
    with pytest.raises(fmgate.RateLimitError) as info:
        model.generate("Hi")
    assert info.value.retry_after_s is not None and 25 <= info.value.retry_after_s <= 31


def test_unparseable_retry_after_is_unknown(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    reply(
        httpx2_mock,
        429,
        json=wire.error_body("rate_limit_error", "slow down"),
        headers={"retry-after": "soon"},
    )
    with pytest.raises(fmgate.RateLimitError) as info:
        model.generate("Hi")
    assert info.value.retry_after_s is None


def test_non_json_error_body(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    reply(httpx2_mock, 502, text="<html>Bad Gateway</html>")
    with pytest.raises(fmgate.ServerError) as info:
        model.generate("Hi")
    assert info.value.status_code == 502


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json</html>",
        b"",
        b"[1, 2]",
        json.dumps({**wire.message(), "usage": None}).encode(),
        json.dumps({**wire.message(), "usage": {"output_tokens": 3}}).encode(),
        json.dumps({**wire.message(), "usage": wire.usage(-1, 3)}).encode(),
        json.dumps({**wire.message(), "content": [{"type": "text"}]}).encode(),
        json.dumps({**wire.message(), "model": None}).encode(),
        json.dumps({**wire.message(), "stop_reason": 3}).encode(),
        json.dumps(wire.error_body("api_error", "oops")).encode(),
    ],
)
def test_malformed_bodies(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink, body: bytes
) -> None:
    reply(httpx2_mock, 200, content=body, headers={"content-type": "application/json"})
    with pytest.raises(fmgate.MalformedResponseError) as info:
        model.generate("Hi")
    assert info.value.provider == "anthropic"
    assert memory.records[-1].outcome.error_type == "MalformedResponseError"


def test_stream_ending_before_message_stop(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    stream_reply(httpx2_mock, wire.stream_events(("a", "b"))[:-1])
    stream = model.stream("Hi")
    received = []
    with pytest.raises(fmgate.MalformedResponseError, match="message_stop"):
        for c in stream:
            received.append(c.text)
    assert received == ["a", "b"]
    record = memory.records[-1]
    assert record.outcome.error_type == "MalformedResponseError" and record.outcome.chunks == 2


def test_stream_cut_by_the_server(memory: fmgate.MemorySink) -> None:
    events = wire.stream_events(("a", "b", "c"))
    cut = wire.chunked_head() + wire.chunk(b"".join(events[:4]))  # start, block, ping, "a"
    with raw_model(cut) as m:
        stream = m.stream("Hi")
        with pytest.raises(fmgate.MalformedResponseError) as info:
            stream.collect()
    assert isinstance(info.value.__cause__, Exception)
    assert "RemoteProtocolError" in str(info.value)
    record = memory.records[-1]
    assert record.outcome.status == "error" and record.outcome.chunks == 1
    assert stream.response.text == "a"


def test_a_stream_dropped_before_any_event_is_a_connection_error(
    memory: fmgate.MemorySink,
) -> None:
    # Nothing of the answer arrived: the same request may well succeed again (retryable).
    with raw_model(wire.chunked_head()) as m:
        with pytest.raises(fmgate.ConnectionError, match="before the stream began") as info:
            m.stream("Hi").collect()
    assert info.value.retryable
    assert memory.records[-1].outcome.error_type == "ConnectionError"


async def test_astream_cut_by_the_server(memory: fmgate.MemorySink) -> None:
    events = wire.stream_events(("a", "b"))
    cut = wire.chunked_head() + wire.chunk(b"".join(events[:4]))
    with raw_model(cut) as m:
        with pytest.raises(fmgate.MalformedResponseError):
            await m.astream("Hi").collect()
        await m.aclose()
    assert memory.records[-1].outcome.error_type == "MalformedResponseError"


def test_whole_stream_over_a_real_socket() -> None:
    events = wire.stream_events(("x", "y"))
    body = wire.chunked_head() + b"".join(wire.chunk(e) for e in events) + b"0\r\n\r\n"
    with raw_model(body) as m:
        stream = m.stream("Hi")
        assert "".join(c.text for c in stream) == "xy"
        assert (stream.record.endpoint or "").startswith("127.0.0.1:")
        assert stream.record.access.data_leaves_machine is False


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("overloaded_error", fmgate.ServerError),
        ("api_error", fmgate.ServerError),
        ("rate_limit_error", fmgate.RateLimitError),
        ("invalid_request_error", fmgate.BadRequestError),
        ("something_new", fmgate.ServerError),
    ],
)
def test_error_event_mid_stream(
    model: fmgate.Model,
    httpx2_mock: respx.Router,
    memory: fmgate.MemorySink,
    kind: str,
    error: type[fmgate.BackendError],
) -> None:
    events = wire.stream_events(("a", "b"))
    failure = wire.sse("error", wire.error_body(kind, "Overloaded"))
    stream_reply(httpx2_mock, [*events[:4], failure, *events[4:]])
    stream = model.stream("Hi")

    with pytest.raises(error) as info:
        stream.collect()

    assert type(info.value) is error and kind in str(info.value)
    record = memory.records[-1]
    assert record.outcome.status == "error" and record.outcome.error_type == error.__name__
    assert record.outcome.chunks == 1


def test_context_length_error_event(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    text = "prompt is too long: 210000 tokens > 200000 maximum"
    failure = wire.sse("error", wire.error_body("invalid_request_error", text))
    stream_reply(httpx2_mock, [wire.stream_events()[0], failure])
    with pytest.raises(fmgate.ContextLengthError, match="prompt is too long") as info:
        model.stream("Hi").collect()
    assert info.value.status_code is None


async def test_error_event_mid_astream(amodel: fmgate.Model, httpx2_mock: respx.Router) -> None:
    events = wire.stream_events(("a",))
    failure = wire.sse("error", wire.error_body("overloaded_error", "Overloaded"))
    stream_reply(httpx2_mock, [*events[:3], failure])
    with pytest.raises(fmgate.ServerError):
        await amodel.astream("Hi").collect()


def test_malformed_event_data(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    events = wire.stream_events(("a",))
    stream_reply(httpx2_mock, [*events[:3], b"event: content_block_delta\ndata: {oops\n\n"])
    with pytest.raises(fmgate.MalformedResponseError):
        model.stream("Hi").collect()


def test_connection_refused() -> None:
    with fmgate.load(wire.SPEC, base_url=f"http://127.0.0.1:{wire.free_port()}") as m:
        with pytest.raises(fmgate.ConnectionError) as info:
            m.generate("Hi")
    assert info.value.retryable and info.value.provider == "anthropic"
    assert m.backend.endpoint.startswith("127.0.0.1:")


def test_timeout(memory: fmgate.MemorySink) -> None:
    with wire.raw_server(None) as url, fmgate.load(wire.SPEC, base_url=url, timeout=0.3) as m:
        with pytest.raises(fmgate.TimeoutError):
            m.generate("Hi")
    assert memory.records[-1].outcome.error_type == "TimeoutError"


def test_the_sdk_refuses_a_long_non_streaming_call(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    # No route: httpx2_mock fails any request that reaches it.
    with pytest.raises(fmgate.InvalidRequestError, match="stream"):
        model.generate("Hi", max_tokens=64000)
    assert not httpx2_mock.calls
    assert memory.records[-1].outcome.error_type == "InvalidRequestError"


def test_a_long_call_is_sent_when_streamed_or_given_a_timeout(httpx2_mock: respx.Router) -> None:
    route = stream_reply(httpx2_mock, wire.stream_events())
    with fmgate.load(wire.SPEC) as m:
        m.stream("Hi", max_tokens=64000).collect()
    assert sent(route)["max_tokens"] == 64000
    reply(httpx2_mock, 200, json=wire.message())
    with fmgate.load(wire.SPEC, timeout=900) as m:
        m.generate("Hi", max_tokens=64000)
    assert sent(route)["max_tokens"] == 64000


@pytest.mark.parametrize("model_id", ["claude-3-5-haiku-latest", "claude-opus-4-0"])
@pytest.mark.parametrize("timeout", [None, 30.0])
def test_the_long_call_guard_matches_the_sdks(
    httpx2_mock: respx.Router, model_id: str, timeout: float | None
) -> None:
    """fmgate refuses exactly what the SDK's messages.create refuses (client.post checks none)."""
    reply(httpx2_mock, 200, json=wire.message())
    sdk = anthropic.Anthropic(
        api_key=wire.KEY, max_retries=0, timeout=timeout or anthropic.NOT_GIVEN
    )
    with fmgate.load(f"anthropic:{model_id}", **timeouts(timeout)) as m:
        for max_tokens in (4096, 8192, 8193, 21333, 21334, 64000):
            kwargs: Any = {"model": model_id, "max_tokens": max_tokens, "messages": []}
            try:
                sdk.messages.create(**kwargs)
            except ValueError:
                refused = True
            else:
                refused = False
            try:
                m.generate("Hi", max_tokens=max_tokens)
            except fmgate.InvalidRequestError:
                assert refused, max_tokens
            else:
                assert not refused, max_tokens
    sdk.close()


def test_a_deprecated_model_warns_as_the_sdk_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK's list changes between releases: test against a made-up entry in the installed
    # list, and against whatever the installed release lists, never a hard-coded model.
    from anthropic._data import DEPRECATED_MODELS

    monkeypatch.setitem(DEPRECATED_MODELS, "claude-made-up-0", "January 1st, 2099")
    for model, date in DEPRECATED_MODELS.items():
        with pytest.warns(DeprecationWarning, match=f"{model}.*end-of-life on {date}"):
            fmgate.load(f"anthropic:{model}").close()


def test_a_current_model_does_not_warn() -> None:
    from anthropic._data import DEPRECATED_MODELS

    current = "claude-made-up-current-0"
    assert current not in DEPRECATED_MODELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fmgate.load(f"anthropic:{current}").close()


# -- requests refused before sending ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"seed": 7}, "no seed parameter"),
        ({"temperature": 1.5}, r"temperature must lie in \[0.0, 1.0\]"),
        ({"anthropic_max_tokens": 5}, "use max_tokens="),
        ({"anthropic_stream": True}, r"use Model.stream\(\)"),
    ],
)
def test_refused_before_sending(
    model: fmgate.Model,
    httpx2_mock: respx.Router,
    memory: fmgate.MemorySink,
    params: dict[str, Any],
    match: str,
) -> None:
    # No route: httpx2_mock fails any request that reaches it.
    with pytest.raises(fmgate.InvalidRequestError, match=match):
        model.generate("Hi", **params)
    with pytest.raises(fmgate.InvalidRequestError, match=match):
        model.stream("Hi", **params).collect()
    assert not httpx2_mock.calls
    assert [r.outcome.error_type for r in memory.records] == ["InvalidRequestError"] * 2


def test_temperature_one_is_allowed(model: fmgate.Model, httpx2_mock: respx.Router) -> None:
    route = reply(httpx2_mock, 200, json=wire.message())
    model.generate("Hi", temperature=1)
    assert sent(route)["temperature"] == 1.0


# -- keys and client setup -------------------------------------------------------------------------


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(fmgate.MissingAPIKeyError, match="ANTHROPIC_API_KEY") as info:
        fmgate.load(wire.SPEC)
    assert info.value.env_var == "ANTHROPIC_API_KEY"


def test_api_key_env_override(monkeypatch: pytest.MonkeyPatch, httpx2_mock: respx.Router) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.setenv("CLAUDE_WORK_KEY", "sk-ant-work-0123456789abcdef")
    route = reply(httpx2_mock, 200, json=wire.message())
    with fmgate.load(wire.SPEC, api_key_env="CLAUDE_WORK_KEY") as m:
        m.generate("Hi")
    auth = route.calls.last.request.headers.get("authorization", "")
    api_key = route.calls.last.request.headers.get("x-api-key", "")
    assert "sk-ant-work-0123456789abcdef" in auth + api_key


def test_the_key_never_appears_in_errors_or_records(
    model: fmgate.Model, httpx2_mock: respx.Router, memory: fmgate.MemorySink
) -> None:
    reply(httpx2_mock, 401, json=wire.error_body("authentication_error", f"invalid key {wire.KEY}"))
    with pytest.raises(fmgate.AuthenticationError) as info:
        model.generate("Hi")
    assert wire.KEY not in str(info.value)
    assert "***" in str(info.value)
    dumped = json.dumps([r.to_dict() for r in memory.records])
    assert wire.KEY not in dumped
    assert wire.KEY not in repr(model.backend.__dict__)


def test_access_and_endpoint_without_a_call(httpx2_mock: respx.Router) -> None:
    with fmgate.load(wire.SPEC) as m:
        access = m.access
    assert m.backend.endpoint == "api.anthropic.com:443"
    assert access.open_weights is False and access.context_window == 200000
    assert access.requires_api_key and access.requires_network
    assert not httpx2_mock.calls


def test_sync_client_is_built_once_and_reused(httpx2_mock: respx.Router) -> None:
    reply(httpx2_mock, 200, json=wire.message())
    with fmgate.load(wire.SPEC) as m:
        backend = m.backend
        assert isinstance(backend, AnthropicBackend)
        client = backend._client
        m.generate("a")
        m.generate("b")
        assert backend._client is client and client.max_retries == 0
        assert not backend._aclients  # the async client is built on first async use only


async def test_async_client_is_built_once_per_loop_and_closed(httpx2_mock: respx.Router) -> None:
    reply(httpx2_mock, 200, json=wire.message())
    m = fmgate.load(wire.SPEC, timeout=12.5)
    backend = m.backend
    assert isinstance(backend, AnthropicBackend)
    await asyncio.gather(*(m.agenerate("a") for _ in range(8)))
    client = await backend._aclients.get()
    await m.agenerate("b")
    assert len(backend._aclients) == 1 and await backend._aclients.get() is client
    assert client.max_retries == 0
    assert client.timeout == 12.5 and backend._client.timeout == 12.5
    await m.aclose()
    assert client.is_closed() and backend._client.is_closed()


# -- helpers ---------------------------------------------------------------------------------------


@contextmanager
def raw_model(reply_bytes: bytes) -> Iterator[fmgate.Model]:
    """A model whose base URL is a raw loopback server sending ``reply_bytes``."""
    with wire.raw_server(reply_bytes) as url, fmgate.load(wire.SPEC, base_url=url) as m:
        yield m
