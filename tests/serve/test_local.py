"""A tiny random-weight llama behind the server: the SDK gets what an in-process call gets (greedy
decoding on CPU is deterministic), concurrent requests run in batches that change no output, and
each side records its own calls."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import fmgate
from fmgate.serve import serving

from .conftest import request

PROMPTS = [f"Say {word} to the small cat" for word in ("hi", "hello", "bye", "yes", "no")]


@pytest.fixture(scope="module")
def url(llama: fmgate.Model) -> Iterator[str]:
    with serving({"tiny": llama}, max_batch=16, max_wait_ms=50) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def direct(llama: fmgate.Model) -> dict[str, fmgate.Response]:
    """Each prompt run alone, in-process, greedy: what the server must give back."""
    return {p: llama.generate(p, max_tokens=12, temperature=0) for p in PROMPTS}


def _messages(prompt: str) -> list[Any]:
    return [{"role": "user", "content": prompt}]


def test_plain_and_streamed_replies_equal_in_process_calls(
    url: str, direct: dict[str, fmgate.Response]
) -> None:
    prompt = PROMPTS[0]
    with openai.OpenAI(base_url=url, api_key="-") as sdk:
        reply = sdk.chat.completions.create(
            model="tiny", messages=_messages(prompt), max_tokens=12, temperature=0
        )
        chunks = list(
            sdk.chat.completions.create(
                model="tiny",
                messages=_messages(prompt),
                max_completion_tokens=12,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    expected = direct[prompt]
    assert reply.choices[0].message.content == expected.text
    assert reply.choices[0].finish_reason == expected.finish_reason
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        expected.usage.input_tokens,
        expected.usage.output_tokens,
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected.text
    last = chunks[-1].usage
    assert last is not None  # its token counts are the reply's; usage.fmgate is each call's own
    assert last.model_dump(exclude={"fmgate"}) == reply.usage.model_dump(exclude={"fmgate"})


async def test_fifty_concurrent_streams_complete_with_correct_usage(
    url: str, direct: dict[str, fmgate.Response], memory: fmgate.MemorySink
) -> None:
    async def one(sdk: openai.AsyncOpenAI, prompt: str) -> tuple[str, Any]:
        stream = await sdk.chat.completions.create(
            model="tiny",
            messages=_messages(prompt),
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage = [], None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        return "".join(pieces), usage

    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(50)]
    async with openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0) as sdk:
        results = await asyncio.gather(*(one(sdk, p) for p in prompts))
    for prompt, (text, usage) in zip(prompts, results, strict=True):
        assert text == direct[prompt].text
        assert usage.prompt_tokens == direct[prompt].usage.input_tokens
        assert usage.completion_tokens == direct[prompt].usage.output_tokens
    records = [r for r in memory.records if r.tags.get("fmgate.served") == "true"]
    assert len(records) == 50 and all(r.ok and r.stream for r in records)
    assert all(r.latency.ttft_s is not None and r.outcome.chunks for r in records)
    sizes = collections.Counter(_together(r) for r in records)
    assert max(sizes) > 1, sizes


async def test_batched_outputs_equal_unbatched_ones(
    url: str, direct: dict[str, fmgate.Response], memory: fmgate.MemorySink
) -> None:
    async with openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0) as sdk:
        replies = await asyncio.gather(
            *(
                sdk.chat.completions.create(
                    model="tiny", messages=_messages(p), max_tokens=12, temperature=0
                )
                for p in PROMPTS * 3
            )
        )
    assert [r.choices[0].message.content for r in replies] == [direct[p].text for p in PROMPTS * 3]
    assert max(_together(r) for r in memory.records) > 1


async def test_a_batch_mixes_streams_and_plain_calls(url: str, memory: fmgate.MemorySink) -> None:
    async with openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0) as sdk:
        # A long call holds the model, so that the two below wait, and then run, together.
        blocker = asyncio.create_task(
            sdk.chat.completions.create(
                model="tiny", messages=_messages(PROMPTS[0]), max_tokens=400
            )
        )
        await asyncio.sleep(0.1)

        async def streamed() -> str:
            stream = await sdk.chat.completions.create(
                model="tiny", messages=_messages("Hello"), max_tokens=6, stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        plain = sdk.chat.completions.create(model="tiny", messages=_messages("Hello"), max_tokens=6)
        text, reply = await asyncio.gather(streamed(), plain)
        await blocker
    assert text == reply.choices[0].message.content
    pair = [r for r in memory.records if r.params["max_tokens"] == 6]
    assert sorted(r.stream for r in pair) == [False, True]
    assert all(_together(r) >= 2 for r in pair)  # beside each other (and the long call)


def test_stop_strings_cut_the_text_as_in_process(url: str, llama: fmgate.Model) -> None:
    prompt = "The small cat sat by the window and"
    whole = llama.generate(prompt, max_tokens=16).text
    stop = whole[3:6]
    expected = llama.generate(prompt, max_tokens=16, stop=[stop])
    with openai.OpenAI(base_url=url, api_key="-") as sdk:
        reply = sdk.chat.completions.create(
            model="tiny", messages=_messages(prompt), max_tokens=16, stop=stop
        )
        streamed = sdk.chat.completions.create(
            model="tiny", messages=_messages(prompt), max_tokens=16, stop=[stop], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert reply.choices[0].message.content == text == expected.text
    assert reply.choices[0].finish_reason == "stop"


def test_a_prompt_longer_than_the_window_is_400(url: str) -> None:
    body = {"model": "tiny", "messages": _messages("cat " * 3000), "max_tokens": 4}
    for stream in (False, True):
        answer = request(url, "POST", "/chat/completions", {**body, "stream": stream})
        assert answer.status == 400 and answer.error["code"] == "context_length_exceeded"
        assert answer.error["param"] == "messages" and "/" not in answer.error["message"]


def test_each_channel_records_its_own_calls(url: str, memory: fmgate.MemorySink) -> None:
    """The client's record says self_hosted; the server's, local and served: the comparison."""
    with fmgate.load("vllm:tiny", base_url=url) as client:
        response = client.generate("Hello there", max_tokens=5, temperature=0)
    served = [r for r in memory.records if r.tags.get("fmgate.served")]
    own = [r for r in memory.records if not r.tags]
    assert len(served) == len(own) == 1
    assert own[0].distribution == "self_hosted" and own[0].usage.source == "provider"
    assert served[0].distribution == "local" and served[0].endpoint == "in-process"
    assert own[0].usage.output_tokens == served[0].usage.output_tokens == 5
    assert response.text and response.usage.input_tokens == served[0].usage.input_tokens
    assert own[0].latency.total_s is not None and served[0].latency.total_s is not None
    assert own[0].latency.total_s >= served[0].latency.total_s


def test_an_encoder_serves_embeddings(tmp_path: Any) -> None:
    from fmgate.testing import make_tiny_model

    folder = make_tiny_model("minilm", tmp_path / "minilm")
    model = fmgate.load(f"transformers:{folder}", device="cpu")
    direct = model.embed(["a small cat", "the rain"]).vectors
    with (
        serving({"minilm": model}) as base_url,
        openai.OpenAI(base_url=base_url, api_key="-") as sdk,
    ):
        served = sdk.embeddings.create(model="minilm", input=["a small cat", "the rain"])
        chat = request(
            base_url, "POST", "/chat/completions", {"model": "minilm", "messages": _messages("hi")}
        )
    for got, want in zip(served.data, direct, strict=True):
        assert got.embedding == pytest.approx(want, abs=1e-6)
    assert chat.status == 400 and "embed" in chat.error["message"]
    assert str(folder) not in chat.body.decode()


def test_a_client_leaving_a_batched_stream_is_recorded_as_client_closed(
    url: str, memory: fmgate.MemorySink
) -> None:
    with openai.OpenAI(base_url=url, api_key="-") as sdk:
        stream = sdk.chat.completions.create(
            model="tiny", messages=_messages(PROMPTS[1]), max_tokens=400, stream=True
        )
        next(iter(stream))
        stream.close()
    deadline = time.monotonic() + 10
    while not memory.records and time.monotonic() < deadline:
        time.sleep(0.02)
    (record,) = memory.records
    assert record.ok and record.stream and record.outcome.finish_reason == "client_closed"


def _together(record: fmgate.CallRecord) -> int:
    """The most calls a call ran beside: in the continuous batch, the most rows while it ran
    (``batch_peak``); in a static batch, its size."""
    together: int = record.params.get("batch_peak", record.params.get("batch_size", 1))
    return together
