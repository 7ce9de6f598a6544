"""The transformers backend on tiny random-weight models: generation, streaming, batching, records,
errors. Greedy decoding on CPU in float32 is deterministic, so texts can be compared exactly."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import fmgate

from .conftest import TinyFactory

if TYPE_CHECKING:
    from fmgate.backends.transformers import TransformersBackend

# torch and transformers are imported by the tests that run, not at collection: a heap of their
# objects would slow every other test module's allocations (garbage collection walks them).
pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("torch", "transformers")),
    reason='needs the local extra: pip install "fmgate[local]"',
)

CAUSAL = ("llama", "gpt2", "gpt_neox")
PROMPTS = ["Hello there", "The small cat sat by the window and", "Say hi", "What is the capital?"]


@pytest.fixture(scope="module")
def models(tiny: TinyFactory) -> dict[str, fmgate.Model]:
    """One loaded Model per causal architecture, shared by the module (loads are cached)."""
    return {arch: fmgate.load(f"transformers:{tiny(arch)}", device="cpu") for arch in CAUSAL}


@pytest.fixture(scope="module")
def llama(models: dict[str, fmgate.Model]) -> fmgate.Model:
    return models["llama"]


def _backend(model: fmgate.Model) -> TransformersBackend:
    from fmgate.backends.transformers import TransformersBackend

    backend = model.backend
    assert isinstance(backend, TransformersBackend)
    return backend


def _generating_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fmgate-generate")]


# -- generation and its record -------------------------------------------------------------------


@pytest.mark.parametrize("arch", CAUSAL)
def test_generate_fills_the_record(tiny: TinyFactory, arch: str) -> None:
    model = fmgate.load(f"transformers:{tiny(arch)}", device="cpu")
    first = model.generate("Hello there", max_tokens=8)
    second = model.generate("Hello there", max_tokens=8)
    record = first.record
    assert record.ok and record.backend == "transformers" and record.provider == "transformers"
    assert record.distribution == "local" and record.endpoint == "in-process"
    assert record.model_id == str(tiny(arch)) and record.params["max_tokens"] == 8
    assert first.usage.source == "tokenizer" and first.usage.output_tokens == 8
    loaded = _backend(model).loaded
    chat = [{"role": "user", "content": "Hello there"}]
    prompt = loaded.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert first.usage.input_tokens == len(loaded.tokenizer(prompt, add_special_tokens=False)[0])
    assert first.finish_reason == "length" and first.text == second.text
    assert record.latency.load_s is not None and second.record.latency.load_s is None
    for r in (first, second):
        latency = r.record.latency
        assert latency.ttft_s is not None and latency.total_s is not None
        assert 0 < latency.ttft_s <= latency.total_s
    assert record.cost.basis == "energy_estimated" and record.cost.amount
    access = record.access
    assert access.parameters == loaded.model.num_parameters()
    assert access.open_weights and access.license == "Apache-2.0"
    assert access.data_leaves_machine is False and access.requires_network is False
    assert access.requires_api_key is False and access.offline_capable is True
    assert access.hardware == "cpu" and access.dtype == "float32"
    assert access.context_window in (1024, 2048) and access.weights_bytes
    assert access.peak_memory_bytes and access.peak_memory_bytes > 10_000_000
    assert record.environment.backend_library.startswith("transformers ")  # type: ignore[union-attr]


def test_default_max_tokens_is_recorded(llama: fmgate.Model) -> None:
    with llama.stream("Hello") as stream:
        next(iter(stream))
    assert stream.record.params["max_tokens"] == 256


def test_the_hf_alias(tiny: TinyFactory) -> None:
    model = fmgate.load(f"hf:{tiny('gpt2')}")
    response = model.generate("Hello", max_tokens=3)
    assert response.record.backend == "hf" and response.record.distribution == "local"


def test_a_plain_prompt_runs_raw_on_a_model_without_chat_template(no_template: Path) -> None:
    model = fmgate.load(f"transformers:{no_template}")
    response = model.generate("The small cat", max_tokens=5)
    tokenizer = _backend(model).loaded.tokenizer
    assert response.usage.input_tokens == len(tokenizer("The small cat")["input_ids"])
    with pytest.raises(fmgate.InvalidRequestError, match="no chat template"):
        model.generate("The small cat", system="Be brief.", max_tokens=5)
    with pytest.raises(fmgate.InvalidRequestError, match="no chat template"):
        model.generate([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])


def test_backend_parameters_pass_through(llama: fmgate.Model) -> None:
    plain = llama.generate("Hello there", max_tokens=12)
    penalised = llama.generate("Hello there", max_tokens=12, transformers_repetition_penalty=5.0)
    assert penalised.record.params["repetition_penalty"] == 5.0
    assert penalised.text != plain.text
    with pytest.raises(fmgate.InvalidRequestError, match="max_new_tokens"):
        llama.generate("Hello", transformers_max_new_tokens=3)


# -- streaming -----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", CAUSAL)
def test_stream_joins_to_the_generated_text(models: dict[str, fmgate.Model], arch: str) -> None:
    model = models[arch]
    expected = model.generate("Hello there", max_tokens=16)
    stream = model.stream("Hello there", max_tokens=16)
    chunks = [chunk.text for chunk in stream]
    assert "".join(chunks) == expected.text and len(chunks) > 1
    record = stream.record
    assert record.stream and record.outcome.chunks == len(chunks)
    assert stream.response.usage == expected.usage
    assert record.outcome.finish_reason == expected.finish_reason
    assert record.latency.ttft_s is not None and record.latency.total_s is not None
    assert 0 < record.latency.ttft_s <= record.latency.total_s


def test_closing_a_stream_stops_generation(llama: fmgate.Model) -> None:
    with llama.stream("Hello there", max_tokens=2000) as stream:
        started = time.perf_counter()
        next(iter(stream))
    assert time.perf_counter() - started < 2.0  # 2000 tokens would take several seconds
    assert stream.record.outcome.finish_reason == "client_closed"
    assert not _generating_threads()
    assert llama.generate("Hello", max_tokens=2).usage.output_tokens == 2  # the lock is free


async def test_astream_joins_and_closes(llama: fmgate.Model) -> None:
    expected = await llama.agenerate("Hello there", max_tokens=16)
    stream = llama.astream("Hello there", max_tokens=16)
    chunks = [chunk.text async for chunk in stream]
    assert "".join(chunks) == expected.text
    assert stream.response.usage == expected.usage
    async with llama.astream("Hello there", max_tokens=2000) as early:
        async for _ in early:
            break
    assert early.record.outcome.finish_reason == "client_closed"
    assert not _generating_threads()


# -- batching ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", CAUSAL)
def test_batching_equals_one_by_one(models: dict[str, fmgate.Model], arch: str) -> None:
    """Static batches (one left-padded generate) and the continuous batch (rows joining and
    leaving a running batch) give each prompt the text it gets alone."""
    model = models[arch]  # continuous batching: the default
    static = fmgate.load(f"transformers:{model.backend.model}", continuous_batching=False)
    one_by_one = [static.generate(p, max_tokens=12) for p in PROMPTS]
    for batched in (
        static.generate_many(PROMPTS, max_tokens=12),
        model.generate_many(PROMPTS, max_tokens=12, batch_size=2),
    ):
        assert [r.text for r in batched] == [r.text for r in one_by_one]
        assert [r.usage for r in batched] == [r.usage for r in one_by_one]
        assert [r.finish_reason for r in batched] == [r.finish_reason for r in one_by_one]
    assert all(
        r.record.params["batch_size"] == len(PROMPTS)
        for r in static.generate_many(PROMPTS, max_tokens=4)
    )
    continuous = model.generate_many(PROMPTS, max_tokens=4)
    assert all(r.record.params["batching"] == "continuous" for r in continuous)
    assert all("batch_size" not in r.record.params for r in continuous)


async def test_async_batching_equals_one_by_one(llama: fmgate.Model) -> None:
    one_by_one = [llama.generate(p, max_tokens=8).text for p in PROMPTS]
    batched = await llama.agenerate_many(PROMPTS, max_tokens=8, batch_size=3)
    assert [r.text for r in batched] == one_by_one


def test_a_batch_with_mixed_parameters_runs_each_set(llama: fmgate.Model) -> None:
    from fmgate._types import ChatRequest, GenerationParams, Message

    def request(text: str, max_tokens: int) -> ChatRequest:
        return ChatRequest((Message("user", text),), GenerationParams(max_tokens=max_tokens))

    completions = _backend(llama).complete_batch(
        [request("Hello", 3), request("Say hi", 5), request("What", 3)]
    )
    assert [c.usage.output_tokens for c in completions] == [3, 5, 3]


# -- stop strings, seeds -------------------------------------------------------------------------


def _text_with_letters(model: fmgate.Model) -> tuple[str, fmgate.Response]:
    """A prompt whose (random-weight) reply holds two letters past its start, for a stop string."""
    for prompt in PROMPTS:
        full = model.generate(prompt, max_tokens=24)
        if re.search(r"[a-z]{2}", full.text[2:]):
            return prompt, full
    raise AssertionError("no reply holds two letters in a row")


@pytest.mark.parametrize("arch", CAUSAL)
def test_stop_strings(models: dict[str, fmgate.Model], arch: str) -> None:
    model = models[arch]
    prompt, full = _text_with_letters(model)
    found = re.search(r"[a-z]{2}", full.text[2:])
    assert found is not None
    stop = found.group()
    cut = full.text[: full.text.find(stop)]
    stopped = model.generate(prompt, max_tokens=24, stop=[stop, "\x00never"])
    assert stopped.text == cut and stopped.finish_reason == "stop"
    assert 0 < stopped.usage.output_tokens < full.usage.output_tokens  # type: ignore[operator]
    streamed = model.stream(prompt, max_tokens=24, stop=[stop, "\x00never"])
    assert "".join(c.text for c in streamed) == cut
    assert streamed.response.finish_reason == "stop"
    assert streamed.response.usage == stopped.usage
    batched = model.generate_many([prompt, "Say hi"], max_tokens=24, stop=[stop])
    assert batched[0].text == cut and batched[0].usage == stopped.usage


def test_a_stop_string_the_token_matcher_cannot_see(llama: fmgate.Model) -> None:
    full = llama.generate("Hello there", max_tokens=24)
    assert "\ufffd" in full.text[1:]
    at = full.text.index("\ufffd", 1)
    stop = full.text[at - 1 : at + 1]
    stopped = llama.generate("Hello there", max_tokens=24, stop=stop)
    assert stopped.text == full.text[: at - 1] and stopped.finish_reason == "stop"
    assert stopped.usage.output_tokens < full.usage.output_tokens  # type: ignore[operator]


def test_long_new_stop_strings_cost_a_request_no_more_than_short_ones(llama: fmgate.Model) -> None:
    """Issue 11: transformers' StopStringCriteria built a table of vocabulary x stop length for
    each new set of stops (1 MB of stops: 10 s and 4.9 GB on this 640-token vocabulary), so one
    request could stall every other user of the model; nor may any cache keep them."""
    import transformers.generation.stopping_criteria as criteria

    llama.generate("Hello", max_tokens=8, stop=["warm-up"])
    started = time.perf_counter()
    for i in range(3):  # new stops each time: nothing cached can help
        stops = [f"{i}{j}" + "ab" * 10_000 for j in range(4)]
        reply = llama.generate("Hello", max_tokens=8, stop=stops)
        assert reply.finish_reason == "length"
    assert time.perf_counter() - started < 2.0
    assert not criteria.STOP_STRING_EMBEDDING_CACHE
    memo = _backend(llama).loaded.memo
    assert not [key for key in memo if key not in ("sentence-transformers", "continuous")]


def test_a_stop_string_of_characters_no_token_holds_is_simply_never_met(
    llama: fmgate.Model,
) -> None:
    reply = llama.generate("Hello", max_tokens=6, stop=["\u4e2d\u6587 never", "\U0001f600"])
    assert reply.finish_reason == "length" and reply.usage.output_tokens == 6


def test_a_stop_string_split_across_streamed_pieces_is_held_back() -> None:
    from fmgate._local.generation import safe_prefix

    assert safe_prefix("hello wor", ("world",)) == "hello "
    assert safe_prefix("aaaa", ("aab",)) == "aa"
    assert safe_prefix("abc", ("x" * 999 + "y",)) == "abc"
    assert safe_prefix("one two", ("two", "e t")) == "on"


@pytest.mark.parametrize("temperature", [1e-300, 5e-324, 1e-6])
def test_a_tiny_temperature_is_greedy_not_a_crash(llama: fmgate.Model, temperature: float) -> None:
    """Issue 11: dividing the logits by 1e-300 overflowed to inf and sampling failed (a 500
    through fmgate serve); such a temperature asks for greedy decoding, to float precision."""
    greedy = llama.generate("Hello", max_tokens=12, temperature=0)
    tiny = llama.generate("Hello", max_tokens=12, temperature=temperature)
    assert tiny.text == greedy.text and tiny.record.params["temperature"] == temperature


def test_ignore_eos_generates_the_whole_budget(llama: fmgate.Model) -> None:
    """vLLM's ignore_eos, as transformers_ignore_eos: a load generator asks for a fixed length."""
    from fmgate._local.generation import eos_ids

    eos = eos_ids(_backend(llama).loaded)[0]
    eager = {"transformers_sequence_bias": [[[eos], 100.0]]}  # EOS first, unless ignored
    stopped = llama.generate("Hello", max_tokens=10, **eager)
    full = llama.generate("Hello", max_tokens=10, transformers_ignore_eos=True, **eager)
    assert (stopped.finish_reason, stopped.usage.output_tokens) == ("stop", 1)
    assert (full.finish_reason, full.usage.output_tokens) == ("length", 10)
    streamed = llama.stream("Hello", max_tokens=10, transformers_ignore_eos=True, **eager)
    assert "".join(c.text for c in streamed) == full.text
    with pytest.raises(fmgate.InvalidRequestError, match="ignore_eos"):
        llama.generate("Hello", max_tokens=4, transformers_ignore_eos="yes")


def test_seed_makes_sampling_reproducible(llama: fmgate.Model) -> None:
    import torch

    state = torch.random.get_rng_state()
    a = llama.generate("Hello", max_tokens=24, temperature=1.0, seed=7)
    b = llama.generate("Hello", max_tokens=24, temperature=1.0, seed=7)
    c = llama.generate("Hello", max_tokens=24, temperature=1.0, seed=8)
    assert a.text == b.text and a.text != c.text
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched
    assert a.record.params["seed"] == 7 and a.record.params["temperature"] == 1.0


# -- async and threads ---------------------------------------------------------------------------


async def test_agenerate_does_not_block_the_loop(llama: fmgate.Model) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    response = await llama.agenerate("Hello there", max_tokens=120)
    elapsed = time.perf_counter() - started
    task.cancel()
    assert response.usage.output_tokens == 120
    assert ticks >= max(3, int(elapsed / 0.005 / 4))


async def test_cancelling_agenerate_stops_the_generation(llama: fmgate.Model) -> None:
    task = asyncio.create_task(llama.agenerate("Hello", max_tokens=2000))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.perf_counter()
    await llama.agenerate("Hello", max_tokens=2)  # waits for the lock: the other call gave up
    assert time.perf_counter() - started < 2.0


def test_concurrent_threads_get_their_own_answers(llama: fmgate.Model) -> None:
    expected = {p: llama.generate(p, max_tokens=10).text for p in PROMPTS}
    results: dict[str, str] = {}

    def call(prompt: str) -> None:
        results[prompt] = llama.generate(prompt, max_tokens=10).text

    threads = [threading.Thread(target=call, args=(p,)) for p in PROMPTS * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


# -- loading -------------------------------------------------------------------------------------


def test_a_second_load_reuses_the_model_in_memory(tiny: TinyFactory) -> None:
    folder = tiny("gpt_neox")
    first = fmgate.load(f"transformers:{folder}", device="cpu", dtype="float32")
    started = time.perf_counter()
    second = fmgate.load(f"transformers:{folder}", device="cpu", dtype="auto")
    assert time.perf_counter() - started < 0.5
    assert _backend(second).loaded is _backend(first).loaded
    load_s = second.generate("Hello", max_tokens=2).record.latency.load_s
    assert load_s is not None and load_s < 0.5
    other = fmgate.load(f"transformers:{folder}", device="cpu", dtype="bfloat16")
    assert _backend(other).loaded is not _backend(first).loaded
    assert other.access.dtype == "bfloat16"


def test_close_lets_go_of_the_model(tiny: TinyFactory) -> None:
    model = fmgate.load(f"transformers:{tiny('gpt2')}")
    model.close()
    with pytest.raises(fmgate.InvalidRequestError, match="closed"):
        model.generate("Hello", max_tokens=2)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("device", "gpu", "device must be 'auto', 'cpu', 'cuda'"),
        ("device", "cuda:99", "cuda:99"),
        ("dtype", "int8", "dtype must be 'auto', 'float32'"),
        ("revision", "main", "applies to Hugging Face repo ids"),
    ],
)
def test_bad_settings(tiny: TinyFactory, setting: str, value: str, message: str) -> None:
    settings: dict[str, Any] = {setting: value}
    with pytest.raises(fmgate.InvalidRequestError, match=message):
        fmgate.load(f"transformers:{tiny('gpt2')}", **settings)


def test_missing_or_broken_folders(tmp_path: Path, tiny: TinyFactory) -> None:
    with pytest.raises(fmgate.ConfigurationError, match="does not exist") as missing:
        fmgate.load(f"transformers:{tmp_path / 'nowhere'}")
    assert str(tmp_path / "nowhere") in str(missing.value)
    with pytest.raises(fmgate.ConfigurationError, match="does not exist"):
        fmgate.load("transformers:./models/not-here")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(fmgate.ConfigurationError, match="no config.json"):
        fmgate.load(f"transformers:{empty}")
    (empty / "config.json").write_text((tiny("gpt2") / "config.json").read_text())
    with pytest.raises(fmgate.ConfigurationError, match="no weights"):
        fmgate.load(f"transformers:{empty}")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny("gpt2"), corrupt)
    (corrupt / "model.safetensors").write_bytes(b"this is not a safetensors file")
    with pytest.raises(fmgate.ConfigurationError, match="could not load the model"):
        fmgate.load(f"transformers:{corrupt}")


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, offline, with every connection attempt counted."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    seen: list[Any] = []
    guarded_connect, guarded_resolve = socket.socket.connect, socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        seen.append(address)
        return guarded_connect(self, address)

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(host)
        return guarded_resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    yield seen


def test_offline_with_an_uncached_repo_is_a_clear_error(
    hub_cache: Path, attempts: list[Any]
) -> None:
    with pytest.raises(fmgate.ConfigurationError, match="HF_HUB_OFFLINE=1") as info:
        fmgate.load("transformers:fmgate-tests/not-cached")
    assert "fmgate-tests/not-cached" in str(info.value)
    assert attempts == []


def test_a_cached_repo_loads_offline_with_its_commit(
    hub_cache: Path, attempts: list[Any], tiny: TinyFactory
) -> None:
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub_cache / "models--fmgate-tests--tiny-llama"
    shutil.copytree(tiny("llama"), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    model = fmgate.load("transformers:fmgate-tests/tiny-llama")
    assert _backend(model).revision == commit
    response = model.generate("Hello", max_tokens=3)
    assert response.record.model_id == "fmgate-tests/tiny-llama"
    assert response.record.access.license == "Apache-2.0"
    assert response.record.revision == commit
    assert attempts == []


def test_missing_local_extra_names_the_pip_command(tiny: TinyFactory) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import fmgate\n"
        "try:\n"
        f"    fmgate.load('transformers:{tiny('gpt2')}')\n"
        "except fmgate.MissingExtraError as exc:\n"
        "    print(type(exc).__name__, exc.extra, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("MissingExtraError local "), out.stderr
    assert 'pip install "fmgate[local]"' in out.stdout


# -- model kinds and limits ----------------------------------------------------------------------


def test_encoders_embed_and_do_not_generate(tiny: TinyFactory, llama: fmgate.Model) -> None:
    encoder = fmgate.load(f"transformers:{tiny('bert')}", device="cpu")
    result = encoder.embed(["a cat", "a kitten", "revenue"])
    assert len(result.vectors) == 3
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in result.vectors)
    assert result.usage.source == "tokenizer" and result.usage.output_tokens == 0
    assert result.usage.input_tokens and result.record.operation == "embeddings"
    assert result.record.cost.basis == "energy_estimated"
    with pytest.raises(fmgate.InvalidRequestError, match="encoder"):
        encoder.generate("Hello")
    with pytest.raises(fmgate.InvalidRequestError, match="encoder"):
        list(encoder.stream("Hello"))
    with pytest.raises(fmgate.InvalidRequestError, match="causal language model"):
        llama.embed("a cat")


async def test_aembed(tiny: TinyFactory) -> None:
    encoder = fmgate.load(f"transformers:{tiny('minilm')}")
    result = await encoder.aembed(["a cat"])
    assert result.vectors == encoder.embed(["a cat"]).vectors


def test_a_prompt_longer_than_the_context_window(models: dict[str, fmgate.Model]) -> None:
    model = models["gpt2"]  # 1024 positions
    with pytest.raises(fmgate.ContextLengthError, match="1024"):
        model.generate("the cat " * 1100, max_tokens=5)
    tokenizer = _backend(model).loaded.tokenizer

    def tokens(repeats: int) -> int:
        chat = [{"role": "user", "content": "the cat " * repeats}]
        text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    per = tokens(101) - tokens(100)
    repeats = (1024 - tokens(1)) // per - 2
    room = 1024 - tokens(repeats)
    assert 0 < room < 50
    # min_new_tokens keeps the random-weight model from ending early on an end-of-sequence token
    response = model.generate("the cat " * repeats, max_tokens=60, transformers_min_new_tokens=room)
    assert response.usage.output_tokens == room and response.finish_reason == "length"


def test_a_context_overflow_is_refused_before_generating_and_recorded(
    models: dict[str, fmgate.Model], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models["gpt2"]
    generated: list[object] = []
    monkeypatch.setattr(_backend(model).loaded.model, "generate", generated.append)
    with pytest.raises(fmgate.ContextLengthError, match="shorten the prompt") as plain:
        model.generate("the cat " * 1100, max_tokens=5)
    with pytest.raises(fmgate.ContextLengthError) as streamed:
        "".join(chunk.text for chunk in model.stream("the cat " * 1100, max_tokens=5))
    assert generated == []  # counted with the real tokenizer, refused before model.generate
    for error in (plain.value, streamed.value):
        record = error.record
        assert record is not None and record.outcome.status == "error"
        assert record.outcome.error_type == "ContextLengthError"
        assert not error.retryable


def test_a_prompt_too_long_fails_alone_in_a_batch(models: dict[str, fmgate.Model]) -> None:
    model = models["gpt2"]
    rs = model.generate_many(
        ["hello", "the cat " * 1100, "hi there"], max_tokens=3, return_exceptions=True
    )
    assert isinstance(rs[1], fmgate.ContextLengthError)
    assert all(isinstance(r, fmgate.Response) for r in (rs[0], rs[2]))


def test_on_cuda(tiny: TinyFactory) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model = fmgate.load(f"transformers:{tiny('llama')}")  # device and dtype "auto"
    loaded = _backend(model).loaded
    assert loaded.device.startswith("cuda:")
    expected_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert loaded.dtype == expected_dtype
    response = model.generate("Hello there", max_tokens=16)
    record = response.record
    assert record.access.hardware == f"cuda:{torch.cuda.get_device_name(0)}"
    assert record.access.dtype == str(expected_dtype).removeprefix("torch.")
    assert record.access.peak_memory_bytes == torch.cuda.max_memory_allocated(loaded.device)
    assert record.cost.basis != "unknown" and record.cost.amount
    stream = model.stream("Hello there", max_tokens=16)
    assert "".join(c.text for c in stream) == response.text
    batched = model.generate_many(PROMPTS, max_tokens=8)
    assert all(r.usage.output_tokens for r in batched)
    a = model.generate("Hello", max_tokens=16, temperature=1.0, seed=3)
    b = model.generate("Hello", max_tokens=16, temperature=1.0, seed=3)
    assert a.text == b.text
    fp32 = fmgate.load(f"transformers:{tiny('llama')}", dtype="float32")
    one_by_one = [fp32.generate(p, max_tokens=8).text for p in PROMPTS]
    assert [r.text for r in fp32.generate_many(PROMPTS, max_tokens=8)] == one_by_one
