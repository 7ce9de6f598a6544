"""What the clients users run against OpenAI-compatible servers send and expect (issue 11):
guidellm's vLLM extensions, and OpenAI's wording of a context overflow, which LiteLLM reads."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fmgate
from fmgate.serve import serving

from .conftest import chat_body, request

# What guidellm 0.8 sends for a chat benchmark with a fixed output length.
GUIDELLM = {
    "stream": True,
    "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    "max_completion_tokens": 6,
    "stop": None,
    "ignore_eos": True,
}


def _chunks(body: bytes) -> list[dict[str, Any]]:
    events = [e.removeprefix("data: ") for e in body.decode().split("\n\n") if e]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_a_guidellm_request_is_served_with_usage_in_every_chunk(echo_url: str) -> None:
    """Issue 11: guidellm got a 400 on every request (ignore_eos, continuous_usage_stats)."""
    answer = request(echo_url, "POST", "/chat/completions", chat_body("one two", **GUIDELLM))
    assert answer.status == 200, answer.body
    chunks = _chunks(answer.body)
    assert all("usage" in c for c in chunks)
    *pieces, finish, last = chunks
    assert all(c["usage"]["completion_tokens"] is None for c in pieces)  # unknown: not a guess
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["usage"] == last["usage"] and last["choices"] == []
    assert last["usage"]["completion_tokens"] == 2 and last["usage"]["prompt_tokens"] > 0


def test_continuous_usage_needs_include_usage_as_in_vllm(echo_url: str) -> None:
    options = {"continuous_usage_stats": True}
    body = chat_body(stream=True, stream_options=options)
    answer = request(echo_url, "POST", "/chat/completions", body)
    assert answer.status == 200 and b'"usage"' not in answer.body


@pytest.mark.parametrize(
    "extension",
    [
        {"skip_special_tokens": True},
        {"include_stop_str_in_output": False},
        {"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0},
        {"echo": False, "add_generation_prompt": True, "min_tokens": 0},
    ],
)
def test_vllm_extensions_that_change_nothing_are_accepted(
    echo_url: str, extension: dict[str, Any]
) -> None:
    answer = request(echo_url, "POST", "/chat/completions", chat_body(**extension))
    assert answer.status == 200, answer.body


@pytest.mark.parametrize(
    "extension",
    [{"top_k": 5}, {"repetition_penalty": 1.3}, {"include_stop_str_in_output": True}],
)
def test_vllm_extensions_that_would_change_the_reply_are_refused(
    echo_url: str, extension: dict[str, Any]
) -> None:
    answer = request(echo_url, "POST", "/chat/completions", chat_body(**extension))
    (field,) = extension
    assert answer.status == 400 and answer.error["param"] == field


def test_ignore_eos_on_a_gateway_model_is_accepted_and_ignored(
    echo_url: str, memory: fmgate.MemorySink
) -> None:
    answer = request(echo_url, "POST", "/chat/completions", chat_body(ignore_eos=True))
    assert answer.status == 200
    (record,) = memory.records
    assert not any("ignore_eos" in key for key in record.params)


@pytest.fixture(scope="module")
def eager_llama(llama_path: Path) -> fmgate.Model:
    """The tiny Llama made to end its reply at once (a strong bias towards its EOS token)."""
    model = fmgate.load(f"transformers:{llama_path}", device="cpu")
    from fmgate._local.generation import eos_ids

    eos = eos_ids(model.backend.loaded)[0]  # type: ignore[attr-defined]
    return fmgate.load(
        f"transformers:{llama_path}", device="cpu", transformers_sequence_bias=[[[eos], 100.0]]
    )


@pytest.fixture(scope="module")
def eager_url(eager_llama: fmgate.Model) -> Iterator[str]:
    with serving({"llama": eager_llama}) as url:
        yield url


@pytest.mark.parametrize("stream", [False, True])
def test_ignore_eos_makes_a_local_model_generate_max_tokens(
    eager_url: str, stream: bool, memory: fmgate.MemorySink
) -> None:
    body = {"model": "llama", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 7}
    if stream:
        body["stream_options"] = {"include_usage": True}
    short = request(eager_url, "POST", "/chat/completions", {**body, "stream": stream})
    full = request(
        eager_url, "POST", "/chat/completions", {**body, "stream": stream, "ignore_eos": True}
    )
    assert short.status == full.status == 200
    used = [(_chunks(a.body)[-1] if stream else a.json())["usage"] for a in (short, full)]
    assert [u["completion_tokens"] for u in used] == [1, 7]
    assert memory.records[-1].params.get("ignore_eos") is True


OVERFLOW = re.compile(
    r"This model's maximum context length is (\d+) tokens\. However, you requested (\d+) "
    r"tokens \((\d+) in the messages, (\d+) in the completion\)\. Please reduce the length of "
    r"the messages or completion\."
)


@pytest.mark.parametrize("stream", [False, True])
def test_a_context_overflow_speaks_openais_words(eager_url: str, stream: bool) -> None:
    """LiteLLM raises ContextWindowExceededError (what users' fallbacks act on) only from the
    words: the code alone is not enough."""
    body = {
        "model": "llama",
        "messages": [{"role": "user", "content": "the cat sat on the mat " * 400}],
        "max_tokens": 9,
        "stream": stream,
    }
    answer = request(eager_url, "POST", "/chat/completions", body)
    assert answer.status == 400 and answer.error["code"] == "context_length_exceeded"
    found = OVERFLOW.fullmatch(answer.error["message"])
    assert found is not None, answer.error["message"]
    window, total, prompt, completion = map(int, found.groups())
    assert prompt >= window and completion == 9 and total == prompt + completion
