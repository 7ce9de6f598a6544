"""The call record: flat round-trip, derived latency numbers, and the JSONL sink."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

import fmgate
from fmgate import Access, CallRecord, Cost, Latency, Outcome, Usage
from fmgate._record import SCHEMA_VERSION


def full_record() -> CallRecord:
    return CallRecord(
        id="abc",
        started_at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        backend="openai",
        model_id="gpt-4o-mini-2024-07-18",
        alias="assistant",
        provider="openai",
        revision="fp_1",
        distribution="api",
        endpoint="api.openai.com:443",
        params={"temperature": 0.0, "stop": ["\n"]},
        stream=True,
        usage=Usage(10, 5, cache_read_tokens=2, source="provider"),
        latency=Latency.measure(1.0, ttft_s=0.2, load_s=0.05, output_tokens=5),
        cost=Cost(Decimal("0.0000045"), "list_price", source="genai-prices 0.2.3"),
        access=Access(open_weights=False, context_window=128000, data_leaves_machine=True),
        outcome=Outcome("ok", "stop", chunks=5),
        environment=fmgate.Environment("0.1.0", "openai 3.57.0", "3.11.7"),
    )


def test_flat_dict_round_trips_exactly() -> None:
    rec = full_record()
    flat = rec.to_dict()
    assert all(not isinstance(v, dict) for k, v in flat.items() if k not in ("params", "tags"))
    assert flat["usage_input_tokens"] == 10 and flat["cost_amount"] == "0.0000045"
    assert flat["started_at"] == "2026-11-26T12:00:00+00:00"
    assert CallRecord.from_dict(json.loads(json.dumps(flat))) == rec


def test_from_dict_tolerates_unknown_keys_and_missing_groups() -> None:
    flat = {
        "id": "x",
        "started_at": "2026-01-01T00:00:00+00:00",
        "backend": "b",
        "model_id": "m",
        "future_field": 1,
    }
    rec = CallRecord.from_dict(flat)
    assert rec.usage == Usage() and rec.cost.amount is None and rec.cost.basis == "unknown"


@pytest.mark.parametrize(("operation", "task"), [("chat", "chat"), ("embeddings", "embed")])
def test_a_record_written_before_tasks_reads_back_with_its_task(operation: str, task: str) -> None:
    flat = full_record().to_dict()
    del flat["task"], flat["usage_items"]  # a JSONL line of schema 4
    flat["operation"] = operation
    rec = CallRecord.from_dict(flat)
    assert rec.task == task and rec.usage.items is None


def test_a_classify_record_round_trips_with_its_items() -> None:
    rec = dataclasses.replace(
        full_record(), operation="classify", task="classify", usage=Usage(items=64)
    )
    back = CallRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == rec and back.schema_version == SCHEMA_VERSION


def test_latency_follows_vllm_definitions() -> None:
    lat = Latency.measure(1.0, ttft_s=0.2, output_tokens=5)
    assert lat.decode_tokens_per_s == pytest.approx(4 / 0.8)
    assert lat.e2e_per_token_s == pytest.approx(0.2)
    assert Latency.measure(1.0, output_tokens=0).e2e_per_token_s is None
    assert Latency.measure(1.0, ttft_s=0.2, output_tokens=1).decode_tokens_per_s is None


def test_usage_total_is_unknown_when_a_part_is() -> None:
    assert Usage(3, 4).total_tokens == 7
    assert Usage(3, None).total_tokens is None


def test_records_are_frozen() -> None:
    with pytest.raises(AttributeError):
        full_record().id = "y"  # type: ignore[misc]


def test_jsonl_sink_appends_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "out" / "records.jsonl"
    sink = fmgate.JsonlSink(path)
    a, b = full_record(), CallRecord.from_dict({**full_record().to_dict(), "id": "def"})
    sink.write(a)
    sink.write(b)
    sink.close()
    assert fmgate.JsonlSink.read(path) == [a, b]
    assert len(path.read_text().splitlines()) == 2
