"""vLLM as the scale-out path, end to end against a loopback stand-in for ``vllm serve``: its
``vllm:`` rows run through run_compare, ``fmgate compare`` and ``fmgate bench`` as self-hosted
models, with the server's ``max_model_len`` in every record's access, and its calls priced by
the server's busy time when the user states an hourly rate (unknown otherwise)."""

from __future__ import annotations

import asyncio
import csv
import json
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

import fmgate
from fmgate._compare import PromptItem, get_scorer, run_compare
from fmgate._tags import CONCURRENCY, PROMPT, SWEEP, WARMUP
from fmgate.cli import main
from tests.vllm_stub import CHAT_PATH, MODELS_PATH, VllmStub, serving_vllm

WINDOW = 12288  # not Llama 3.1's own 131072: the served window is the one vLLM was started with
RATE = Decimal("3.6")  # USD per hour: $0.001 per second of the server's time
ITEMS = [PromptItem(f"q{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(6)]
# q5 gets the stub's default reply ("You asked: What is 5 + 5?"), which does not contain "10"
ANSWERS = {item.prompt: f"{i} + {i} is {2 * i}." for i, item in enumerate(ITEMS[:5])}


@pytest.fixture
def vllm() -> Iterator[VllmStub]:
    stub = VllmStub(max_model_len=WINDOW, answers=ANSWERS, ttft_s=0.06, token_s=0.01)
    with serving_vllm(stub) as served:
        yield served


def alias(vllm: VllmStub, tmp_path: Path, rate: Decimal | None = None) -> Path:
    """An fmgate.toml whose ``box`` is the stub's model on the vllm row."""
    config = tmp_path / "fmgate.toml"
    text = f'[models.box]\nbackend = "vllm"\nmodel = "{vllm.model}"\nbase_url = "{vllm.url}"\n'
    config.write_text(text + (f"hardware_usd_per_hour = {rate}\n" if rate is not None else ""))
    return config


def prompt_file(tmp_path: Path) -> Path:
    path = tmp_path / "sums.jsonl"
    rows = [{"id": i.id, "prompt": i.prompt, "expected": i.expected} for i in ITEMS]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def most_in_flight(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def test_a_vllm_server_is_compared_as_a_self_hosted_model(vllm: VllmStub, tmp_path: Path) -> None:
    """No warm-up, four in flight, and a server slow to list its models: the calls that come
    while the first asks wait for the answer, so every record has the served window."""
    vllm.routes.delay_s[MODELS_PATH] = 0.3
    model = fmgate.load("box", config=alias(vllm, tmp_path))
    run = run_compare([model], ITEMS, warmup=0, concurrency=4, scorer=get_scorer("contains"))
    assert run.errors == 0 and len(run.records) == 6
    for record in run.records:
        assert (record.distribution, record.endpoint) == ("self_hosted", vllm.endpoint)
        assert record.backend == "vllm" and record.model_id == vllm.model
        assert record.access.context_window == WINDOW
        assert record.access.data_leaves_machine is False
        assert (record.cost.basis, record.cost.amount) == ("unknown", None)
        assert record.usage.source == "provider"
    # "What is 0 + 0?": 5 words + 5 for the chat template; "0 + 0 is 0.": 5 words
    usage = {r.tags[PROMPT]: (r.usage.input_tokens, r.usage.output_tokens) for r in run.records}
    assert usage["q0"] == (10, 5) and usage["q5"] == (10, 7)  # "You asked: What is 5 + 5?"
    assert Counter(s.value for s in run.scores) == {1.0: 5, 0.0: 1}
    assert vllm.routes.count(MODELS_PATH) == 1
    assert 2 <= most_in_flight(vllm.busy) <= 4


def test_an_hourly_rate_prices_the_servers_busy_time(vllm: VllmStub, tmp_path: Path) -> None:
    """Each call is billed its share of the time the server was busy with this client's
    calls (processor sharing), so the bills add up to the rate x the server's busy time: at
    $3.60/h, $0.001 per busy second. The client's view of a call holds the server's, so the sum
    is never less, and exceeds it only by what the wire and the client add."""
    model = fmgate.load("box", config=alias(vllm, tmp_path, RATE))
    run = run_compare([model], ITEMS, repeat=2, warmup=1, concurrency=4)
    assert run.errors == 0 and len(run.records) == 13
    billed = Decimal(0)
    for record in run.records:
        cost, total_s = record.cost, record.latency.total_s
        assert cost.basis == "hardware_time" and cost.amount is not None and total_s is not None
        assert cost.amount <= Decimal(repr(total_s)) / 1000  # never more than its own time
        billed += cost.amount
    busy = Decimal(repr(vllm.busy_s())) / 1000
    assert busy <= billed <= busy * Decimal("1.25")


def test_fmgate_compare_reports_a_vllm_alias(
    vllm: VllmStub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alias(vllm, tmp_path, RATE)  # tests run in tmp_path: the fmgate.toml found there
    out = tmp_path / "report"
    argv = ["compare", "-m", "box", "--prompts", str(prompt_file(tmp_path)), "--concurrency", "4"]
    code = main([*argv, "--scorer", "contains", "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(rows) == 7  # one warm-up and six prompts
    for row in rows:
        assert (row["distribution"], row["endpoint"]) == ("self_hosted", vllm.endpoint)
        assert row["access_context_window"] == WINDOW
        assert row["access_data_leaves_machine"] is False
        assert row["cost_basis"] == "hardware_time" and Decimal(row["cost_amount"]) > 0
    report = (out / "report.md").read_text()
    summary = next(line for line in report.splitlines() if line.startswith("| box | 6 |"))
    assert "| hardware_time | 0.833 | contains, n=6 |" in summary
    access = [line for line in report.splitlines() if line.startswith("| box | self_hosted |")]
    assert len(access) == 1 and "| no | 0/6 |" in access[0]  # data leaves: no; sent off: 0/6
    assert "self_hosted" in stdout and "hardware_time" in stdout


def test_without_a_rate_the_report_says_the_cost_is_unknown(
    vllm: VllmStub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alias(vllm, tmp_path)
    code = main(["compare", "-m", "box", "--prompts", str(prompt_file(tmp_path)), "--out", "r"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in Path("r/records.jsonl").read_text().splitlines()]
    assert {(r["cost_basis"], r["cost_amount"]) for r in rows} == {("unknown", None)}
    summary = next(
        line for line in Path("r/report.md").read_text().splitlines() if "| box |" in line
    )
    assert "| unknown |" in summary


def test_fmgate_bench_sweeps_a_vllm_server(
    vllm: VllmStub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alias(vllm, tmp_path, RATE)
    out = tmp_path / "bench"
    argv = ["bench", "box", "--prompts", str(prompt_file(tmp_path)), "--max-concurrency", "4"]
    code = main([*argv, "--calls", "8", "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    with (out / "bench.csv").open() as file:
        levels = list(csv.DictReader(file))
    assert [(row["concurrency"], row["calls"], row["ok"]) for row in levels] == [
        ("1", "8", "8"),
        ("2", "8", "8"),
        ("4", "8", "8"),
    ]
    # the stub serves calls side by side, as vLLM's continuous batching does: more in flight,
    # more calls per second
    assert float(levels[2]["calls_per_s"]) > float(levels[0]["calls_per_s"])
    assert most_in_flight(vllm.busy) == 4
    records = [r for r in fmgate.records(alias="box") if WARMUP not in r.tags]
    assert sorted(r.tags[CONCURRENCY] for r in records) == ["1"] * 8 + ["2"] * 8 + ["4"] * 8
    assert len({r.tags[SWEEP] for r in records}) == 1
    for record in records:
        assert record.distribution == "self_hosted" and record.access.context_window == WINDOW
        assert record.cost.basis == "hardware_time"
    assert "capacity: " in stdout


def test_a_streamed_call_reads_vllms_chunks(vllm: VllmStub) -> None:
    """vLLM streams a role chunk, a chunk per token, a finish chunk and, when asked with
    stream_options.include_usage, the usage in a last chunk without choices."""
    model = fmgate.load(f"vllm:{vllm.model}", base_url=vllm.url)
    stream = model.stream(ITEMS[1].prompt, max_tokens=3)
    assert "".join(chunk.text for chunk in stream) == "1 + 1"
    (body,) = vllm.chats()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    record = stream.record
    assert record.stream and record.outcome.finish_reason == "length"
    assert (record.usage.input_tokens, record.usage.output_tokens) == (10, 3)
    assert record.usage.source == "provider"
    ttft, total = record.latency.ttft_s, record.latency.total_s
    assert ttft is not None and total is not None
    # the first token after 60 ms, then 10 ms a token: TTFT is measured here, at the client
    assert 0.06 <= ttft < total and total >= 0.08
    assert record.access.context_window == WINDOW
    assert CHAT_PATH in {path for _, path, _ in vllm.routes.hits}


async def test_async_calls_wait_for_the_servers_facts_too(vllm: VllmStub) -> None:
    vllm.routes.delay_s[MODELS_PATH] = 0.3
    async with fmgate.load(f"vllm:{vllm.model}", base_url=vllm.url) as model:
        responses = await asyncio.gather(*(model.agenerate(i.prompt) for i in ITEMS[:4]))
    assert [r.record.access.context_window for r in responses] == [WINDOW] * 4
    assert vllm.routes.count(MODELS_PATH) == 1


def test_the_stub_speaks_vllms_shapes() -> None:
    """The stand-in's bodies are valid OpenAI objects (the SDK's own types), with vLLM's
    extra fields, and its model list gives the served window."""
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    from fmgate.backends._server_facts import models_facts

    stub = VllmStub(max_model_len=WINDOW)
    body = {"model": stub.model, "messages": [{"role": "user", "content": "hi"}]}
    plain = stub.completion(body)
    ChatCompletion.model_validate(plain)
    assert plain["id"].startswith("chatcmpl-") and plain["kv_transfer_params"] is None
    assert (plain["system_fingerprint"], plain["service_tier"]) == (None, None)
    assert plain["choices"][0]["stop_reason"] is None
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    events = [e.removeprefix(b"data: ").strip() for e in stub.stream(streamed)]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert "usage" not in chunks[0]  # vLLM leaves unset fields out of a chunk
    assert models_facts(stub.models(), stub.model) == {"context_window": WINDOW}
