"""The OpenAI wire over a scripted model: the SDK works unmodified; bad requests get OpenAI's
error object with the right status and field; keys, body limits and the queue hold."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import fmgate
from fmgate._errors import ServerError
from fmgate._providers import ProviderInfo
from fmgate._retry import NO_RETRIES
from fmgate.backends._base import BackendConfig
from fmgate.serve import build_app, check_bind, keys_from_env, serving
from tests.fakes import FakeBackend, FakeBatchingBackend, fake_config

from .conftest import chat_body, request

KEY = "sk-serve-test-key"


def client(url: str, key: str = "unused", **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, **options)


# -- the SDK, plain and streamed -----------------------------------------------------------------


def test_the_sdk_reads_a_completion(echo_url: str) -> None:
    with client(echo_url) as sdk:
        reply = sdk.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "say hi"}], max_tokens=5
        )
    assert reply.object == "chat.completion" and reply.model == "echo"
    assert reply.id.startswith("chatcmpl-") and reply.created > 0
    choice = reply.choices[0]
    assert choice.message.content == "SAY HI" and choice.message.role == "assistant"
    assert choice.finish_reason == "stop" and choice.index == 0
    assert reply.usage is not None and reply.usage.completion_tokens == 2
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 2


def test_the_sdk_reads_a_stream_with_its_usage_chunk(echo_url: str) -> None:
    with client(echo_url) as sdk:
        chunks = list(
            sdk.chat.completions.create(
                model="echo",
                messages=[{"role": "user", "content": "one two three"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "ONE TWO THREE "
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-2].usage is None
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_a_stream_without_include_usage_has_no_usage_field(echo_url: str) -> None:
    answer = request(echo_url, "POST", "/chat/completions", chat_body(stream=True))
    events = [e for e in answer.body.decode().split("\n\n") if e]
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "data: [DONE]" and '"usage"' not in answer.body.decode()


async def test_the_async_sdk_plain_and_streamed(echo_url: str) -> None:
    async with openai.AsyncOpenAI(base_url=echo_url, api_key="unused") as sdk:
        reply = await sdk.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "a b"}]
        )
        stream = await sdk.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "a b"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    assert reply.choices[0].message.content == "A B"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "A B "
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


def test_models_and_health(echo_url: str) -> None:
    with client(echo_url) as sdk:
        assert [m.id for m in sdk.models.list()] == ["echo"]
        assert sdk.models.retrieve("echo").owned_by == "fmgate"
        with pytest.raises(openai.NotFoundError):
            sdk.models.retrieve("nope")
    health = request(echo_url.removesuffix("/v1"), "GET", "/health")
    assert health.status == 200 and health.json() == {"status": "ok"}


def test_embeddings_as_floats_and_as_the_sdks_default_base64(echo_url: str) -> None:
    with client(echo_url) as sdk:
        default = sdk.embeddings.create(model="echo", input=["ab", "abcd"])
        floats = sdk.embeddings.create(model="echo", input="abc", encoding_format="float")
    assert [d.embedding for d in default.data] == [[2.0, 1.0], [4.0, 1.0]]
    assert [d.index for d in default.data] == [0, 1] and default.object == "list"
    assert floats.data[0].embedding == [3.0, 1.0] and default.usage.prompt_tokens == 2


def test_calls_are_recorded_and_tagged(echo_url: str, memory: fmgate.MemorySink) -> None:
    with client(echo_url) as sdk:
        sdk.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
    (record,) = memory.records
    assert record.ok and record.tags == {"fmgate.served": "true"} and record.stream is False


# -- requests refused ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (chat_body(frobnicate=1), "frobnicate", "Unrecognized request argument"),
        (chat_body(n=2), "n", "n must be 1"),
        (chat_body(temperature=3), "temperature", "[0.0, 2.0]"),
        (chat_body(top_p=0), "top_p", "top_p"),
        (chat_body(max_tokens=0), "max_tokens", "max_tokens"),
        (chat_body(max_completion_tokens="9"), "max_completion_tokens", "integer"),
        (chat_body(stop=["a", "b", "c", "d", "e"]), "stop", "stop"),
        (chat_body(tools=[{"type": "function"}]), "tools[0].function", "Missing required"),
        (chat_body(stream="yes"), "stream", "boolean"),
        (chat_body(stream_options={"include_usage": True}), "stream_options", "only allowed"),
        ({"model": "echo"}, "messages", "messages"),
        ({"model": "echo", "messages": []}, "messages", "messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "model"),
        (
            {"model": "echo", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].role",
            "tool",
        ),
        (
            {"model": "echo", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].image_url",
            "url",
        ),
        (
            {"model": "echo", "messages": [{"role": "user", "content": [{"type": "file"}]}]},
            "messages[0].content[0]",
            "only text and image_url",
        ),
    ],
)
def test_bad_fields_are_400_with_the_field_at_fault(
    echo_url: str, body: dict[str, Any], param: str, words: str
) -> None:
    answer = request(echo_url, "POST", "/chat/completions", body)
    assert answer.status == 400
    assert answer.error["param"] == param and answer.error["type"] == "invalid_request_error"
    assert words in answer.error["message"]


def test_no_op_values_of_unsupported_fields_and_labels_are_accepted(echo_url: str) -> None:
    body = chat_body(
        n=1, logprobs=False, frequency_penalty=0, user="u-1", metadata={"a": "b"}, seed=None
    )
    body["messages"] = [
        {"role": "developer", "content": "be brief"},
        {
            "role": "user",
            "name": "ann",
            "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "you"}],
        },
    ]
    answer = request(echo_url, "POST", "/chat/completions", body)
    assert answer.status == 200, answer.body
    assert answer.json()["choices"][0]["message"]["content"] == "HI YOU"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"", b"[" * 100_000])
def test_a_body_that_is_not_a_json_object_is_400(echo_url: str, body: bytes) -> None:
    answer = request(echo_url, "POST", "/chat/completions", body)
    assert answer.status == 400 and "JSON" in answer.error["message"]


def test_a_prompt_the_model_refuses_is_400(echo_url: str) -> None:
    answer = request(echo_url, "POST", "/chat/completions", chat_body("   "))
    assert answer.status == 400 and "empty" in answer.error["message"]


def test_an_unknown_model_is_404(echo_url: str) -> None:
    with client(echo_url) as sdk, pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"


def test_unknown_routes_and_methods_answer_in_json(echo_url: str) -> None:
    missing = request(echo_url, "POST", "/completions", chat_body())
    wrong = request(echo_url, "GET", "/chat/completions")
    assert (missing.status, wrong.status) == (404, 405)
    assert missing.error["type"] == wrong.error["type"] == "invalid_request_error"


def test_oversize_bodies_are_413_declared_or_chunked(echo: fmgate.Model) -> None:
    big = chat_body("x" * 5000)
    with serving({"echo": echo}, max_body_bytes=4096) as url:
        declared = request(url, "POST", "/chat/completions", big)
        chunked = request(url, "POST", "/chat/completions", big, chunked=True)
        fits = request(url, "POST", "/chat/completions", chat_body("x" * 3000))
    assert declared.status == chunked.status == 413
    assert declared.error["code"] == "request_too_large" and fits.status == 200


# -- keys and where the server listens -----------------------------------------------------------


@pytest.fixture
def keyed_url(echo: fmgate.Model) -> Iterator[str]:
    with serving({"echo": echo}, keys=[KEY, "sk-other"]) as url:
        yield url


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {KEY}", f"Bearer {KEY}x", KEY])
def test_a_missing_or_wrong_key_is_401(keyed_url: str, header: str | None) -> None:
    headers = {"authorization": header} if header is not None else {}
    for method, path in (
        ("POST", "/chat/completions"),
        ("GET", "/models"),
        ("POST", "/embeddings"),
    ):
        answer = request(keyed_url, method, path, chat_body(), headers)
        assert answer.status == 401 and answer.error["code"] == "invalid_api_key"
        assert KEY not in answer.body.decode()


def test_the_sdk_with_a_right_key_passes_and_a_wrong_one_does_not(keyed_url: str) -> None:
    messages = [{"role": "user", "content": "ok"}]
    with client(keyed_url, "sk-other") as sdk:
        assert sdk.chat.completions.create(model="echo", messages=messages).choices
    with client(keyed_url, "sk-bad") as sdk, pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="echo", messages=messages)
    health = request(keyed_url.removesuffix("/v1"), "GET", "/health")
    assert health.status == 200


def test_a_non_loopback_address_needs_a_key() -> None:
    for host in ("0.0.0.0", "::", "192.168.1.5", "myhost.example"):
        with pytest.raises(fmgate.ConfigurationError, match="FMGATE_SERVE_KEYS"):
            check_bind(host, ())
        check_bind(host, ["k"])
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        check_bind(host, ())


def test_keys_come_comma_separated_from_the_environment() -> None:
    assert keys_from_env({"FMGATE_SERVE_KEYS": " a, b ,,c "}) == ("a", "b", "c")
    assert keys_from_env({}) == ()


def test_bad_settings_are_configuration_errors(echo: fmgate.Model) -> None:
    with pytest.raises(fmgate.ConfigurationError, match="max_batch"):
        build_app({"echo": echo}, max_batch=0)
    with pytest.raises(fmgate.ConfigurationError, match="at least one"):
        build_app({})


# -- failures, the queue, shutdown ---------------------------------------------------------------


def test_a_backend_failure_is_500_without_its_internals(echo: fmgate.Model) -> None:
    assert isinstance(echo.backend, FakeBackend)
    echo.backend.fail = RuntimeError("/srv/secret/path exploded")
    with serving({"echo": echo}) as url:
        plain = request(url, "POST", "/chat/completions", chat_body())
        streamed = request(url, "POST", "/chat/completions", chat_body(stream=True))
    for answer in (plain, streamed):
        assert answer.status == 500 and answer.error["type"] == "server_error"
        assert "secret" not in answer.body.decode()


def test_an_api_model_failing_behind_the_gateway_is_502() -> None:
    row = ProviderInfo(name="remote", wire="fake", distribution="api", base_url="http://x")
    backend = FakeBackend(BackendConfig(name="remote", model="m", provider=row))
    backend.fail = ServerError("upstream said: internal detail", provider="remote")
    model = fmgate.Model(backend, retry=NO_RETRIES)
    with serving({"remote": model}) as url:
        answer = request(url, "POST", "/chat/completions", chat_body(model="remote"))
    assert answer.status == 502 and "internal detail" not in answer.body.decode()


def test_a_stream_that_fails_midway_ends_with_an_error_event(echo: fmgate.Model) -> None:
    assert isinstance(echo.backend, FakeBackend)
    echo.backend.cut_after = 1
    with serving({"echo": echo}) as url, client(url) as sdk:
        stream = sdk.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "a b c"}], stream=True
        )
        with pytest.raises(openai.APIError, match="failed"):
            for _ in stream:
                pass


class SlowBatches(FakeBatchingBackend):
    def complete_batch(self, requests: Any) -> Any:
        time.sleep(0.3)
        return super().complete_batch(requests)


@pytest.mark.parametrize("batched", [False, True])
async def test_a_full_queue_is_429(batched: bool) -> None:
    backend = (SlowBatches if batched else FakeBackend)(fake_config())
    backend.delay_s = 0.3
    model = fmgate.Model(backend)
    with serving({"echo": model}, max_queue=2, max_batch=1) as url:
        async with openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0) as sdk:
            calls = [
                sdk.chat.completions.create(
                    model="echo", messages=[{"role": "user", "content": "x"}]
                )
                for _ in range(4)
            ]
            results = await asyncio.gather(*calls, return_exceptions=True)
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(refused) == 2 and sum(not isinstance(r, Exception) for r in results) == 2


def test_shutdown_lets_in_flight_requests_finish(echo: fmgate.Model) -> None:
    assert isinstance(echo.backend, FakeBackend)
    echo.backend.delay_s = 0.5
    answers: list[Any] = []
    with serving({"echo": echo}) as url:
        worker = threading.Thread(
            target=lambda: answers.append(request(url, "POST", "/chat/completions", chat_body()))
        )
        worker.start()
        while echo.backend.in_flight == 0:
            time.sleep(0.01)
    worker.join()
    assert answers[0].status == 200 and answers[0].json()["choices"][0]["message"]["content"]
