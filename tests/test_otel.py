"""The OpenTelemetry sink, checked with the SDK's in-memory exporter (never the global provider)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import fmgate
from fmgate import _registry
from fmgate._otel import OpenTelemetrySink, span_attributes
from fmgate._record import (
    Access,
    CallRecord,
    Cost,
    Environment,
    Latency,
    Outcome,
    OutputCheck,
    ToolUse,
    Usage,
)
from tests.fakes import FakeBackend

GROUPS = ("usage", "latency", "cost", "access", "outcome", "environment", "tools", "output")


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def sink(exporter: InMemorySpanExporter) -> OpenTelemetrySink:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OpenTelemetrySink(provider)


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch, sink: OpenTelemetrySink) -> fmgate.Model:
    monkeypatch.setattr(_registry, "_plugins", lambda: {"fake": "tests.fakes:FakeBackend"})
    return fmgate.load("fake:echo", sinks=[sink])


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    return spans[0]


def epoch_ns(when: datetime) -> int:
    return round(when.timestamp() * 1_000_000) * 1_000


BASE = CallRecord(
    id="r1",
    started_at=datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    backend="gemini",
    model_id="gemini-2.0-flash",
    provider="gemini",
    endpoint="generativelanguage.googleapis.com:443",
)


def record(**changes: Any) -> CallRecord:
    return dataclasses.replace(BASE, **changes)


def test_a_chat_call_is_one_span_with_the_semconv_attributes(
    model: fmgate.Model, exporter: InMemorySpanExporter
) -> None:
    rec = model.generate("say hi", max_tokens=5, temperature=0).record
    span = only_span(exporter)
    assert span.name == "chat fake-1"
    assert span.kind is SpanKind.INTERNAL  # the fake runs in this process
    assert span.status.status_code is StatusCode.UNSET
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "fake"
    assert attrs["gen_ai.request.model"] == attrs["gen_ai.response.model"] == "fake-1"
    assert attrs["gen_ai.usage.input_tokens"] == rec.usage.input_tokens
    assert attrs["gen_ai.usage.output_tokens"] == 2
    assert attrs["gen_ai.request.max_tokens"] == 5
    assert attrs["gen_ai.request.temperature"] == 0.0
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["fmgate.record_id"] == rec.id
    assert attrs["fmgate.distribution"] == "local"
    assert attrs["fmgate.access.open_weights"] is True
    assert attrs["fmgate.access.data_leaves_machine"] is False
    assert attrs["fmgate.outcome.attempts"] == 1
    assert attrs["fmgate.cost.basis"] == rec.cost.basis
    assert "server.address" not in attrs  # in-process
    assert "gen_ai.request.stream" not in attrs  # set only on streams
    assert span.start_time == epoch_ns(rec.started_at)
    assert rec.latency.total_s is not None and span.end_time is not None
    assert span.end_time - span.start_time == round(rec.latency.total_s * 1e9)


def test_a_failed_call_is_an_error_span(
    model: fmgate.Model, exporter: InMemorySpanExporter
) -> None:
    backend = model.backend
    assert isinstance(backend, FakeBackend)
    backend.fail = fmgate.RateLimitError("slow down", status_code=429, provider="fake")
    with pytest.raises(fmgate.RateLimitError):
        model.generate("x")
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "slow down"
    attrs = dict(span.attributes or {})
    assert attrs["error.type"] == "RateLimitError"
    assert attrs["fmgate.outcome.http_status"] == 429
    assert attrs["fmgate.outcome.status"] == "error"
    assert "gen_ai.response.model" not in attrs  # no response came back


def test_a_stream_has_ttft_and_the_stream_flag(
    model: fmgate.Model, exporter: InMemorySpanExporter
) -> None:
    stream = model.stream("a b c")
    for _ in stream:
        pass
    ttft = stream.record.latency.ttft_s
    attrs = dict(only_span(exporter).attributes or {})
    assert ttft is not None and attrs["gen_ai.response.time_to_first_chunk"] == ttft
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["fmgate.outcome.chunks"] == 3


def test_an_embeddings_call(model: fmgate.Model, exporter: InMemorySpanExporter) -> None:
    model.embed(["a", "bcd"])
    span = only_span(exporter)
    assert span.name == "embeddings fake-emb"
    assert dict(span.attributes or {})["gen_ai.operation.name"] == "embeddings"


def test_tags_are_exported_under_fmgate_tag(
    monkeypatch: pytest.MonkeyPatch, sink: OpenTelemetrySink, exporter: InMemorySpanExporter
) -> None:
    monkeypatch.setattr(_registry, "_plugins", lambda: {"fake": "tests.fakes:FakeBackend"})
    m = fmgate.load("fake:echo")
    fmgate.add_sink(sink)
    try:
        with fmgate.tagged(experiment="e1"):
            m.generate("x")
    finally:
        fmgate.remove_sink(sink)
    attrs = dict(only_span(exporter).attributes or {})
    assert attrs["fmgate.tag.experiment"] == "e1"


def test_unknown_values_are_omitted_not_zero() -> None:
    attrs = span_attributes(record())
    assert None not in attrs.values()
    for absent in ("gen_ai.usage.input_tokens", "gen_ai.response.finish_reasons", "fmgate.alias"):
        assert absent not in attrs
    assert "fmgate.cost.amount" not in attrs and attrs["fmgate.cost.basis"] == "unknown"


@pytest.mark.parametrize(
    ("provider", "expected"),
    [("gemini", "gcp.gemini"), ("mistral", "mistral_ai"), ("openai", "openai"), ("vllm", "vllm")],
)
def test_provider_names_follow_the_spec_where_it_has_one(provider: str, expected: str) -> None:
    assert span_attributes(record(provider=provider))["gen_ai.provider.name"] == expected


def test_an_api_call_is_a_client_span_with_its_server(
    sink: OpenTelemetrySink, exporter: InMemorySpanExporter
) -> None:
    rec = record(cost=Cost(Decimal("0.0012"), "list_price"), latency=Latency(total_s=0.25))
    sink.write(rec)
    span = only_span(exporter)
    assert span.name == "chat gemini-2.0-flash" and span.kind is SpanKind.CLIENT
    attrs = dict(span.attributes or {})
    assert attrs["server.address"] == "generativelanguage.googleapis.com"
    assert attrs["server.port"] == 443
    assert attrs["fmgate.cost.amount"] == 0.0012
    assert span.start_time == epoch_ns(rec.started_at)
    assert span.end_time == epoch_ns(rec.started_at) + 250_000_000


def test_params_other_than_the_spec_ones_need_include_params() -> None:
    params = {"temperature": 0.5, "stop": ["END"], "openai_user": "u1", "n": [1, 2], "x": {"a": 1}}
    rec = record(params=params)
    plain = span_attributes(rec)
    assert plain["gen_ai.request.temperature"] == 0.5
    assert plain["gen_ai.request.stop_sequences"] == ["END"]
    assert not any(key.startswith("fmgate.param") for key in plain)
    full = span_attributes(rec, include_params=True)
    assert full["fmgate.param.openai_user"] == "u1" and full["fmgate.param.n"] == [1, 2]
    assert full["fmgate.param.x"] == "{'a': 1}"  # no OpenTelemetry type for a mapping: as text


def test_every_record_field_is_exported() -> None:
    """A field added to the record must show up on the span: under fmgate.* or a spec name."""
    rec = record(
        alias="fast",
        revision="001",
        stream=True,
        task="classify",
        usage=Usage(
            10,
            5,
            2,
            1,
            3,
            "provider",
            items=4,
            images_in=1,
            images_out=0,
            pixels_in=640,
            pixels_out=0,
        ),
        latency=Latency(1.0, 0.1, 0.5, 40.0, 0.2, 1.7),
        cost=Cost(Decimal("0.01"), "list_price", "USD", "genai-prices 0.1", 3.0),
        access=Access(
            True, "apache-2.0", 7, "bf16", "q4", 1, 2, 8192, True, True, True, False, "x"
        ),
        outcome=Outcome("error", "length", "ServerError", "boom", 500, 2, "other", 4, "why", True),
        environment=Environment("1.0", "openai 1.0", "3.11"),
        tools=ToolUse(2, "auto", 1),
        output=OutputCheck("Conversion", "451b398eb1bee8e3", True, "native"),
    )
    semconv = {
        "id": "fmgate.record_id",
        "model_id": "gen_ai.request.model",
        "provider": "gen_ai.provider.name",
        "operation": "gen_ai.operation.name",
        "stream": "gen_ai.request.stream",
        "usage_input_tokens": "gen_ai.usage.input_tokens",
        "usage_output_tokens": "gen_ai.usage.output_tokens",
        "usage_cache_read_tokens": "gen_ai.usage.cache_read.input_tokens",
        "usage_cache_write_tokens": "gen_ai.usage.cache_write.input_tokens",
        "usage_reasoning_tokens": "gen_ai.usage.reasoning.output_tokens",
        "latency_ttft_s": "gen_ai.response.time_to_first_chunk",
        "outcome_finish_reason": "gen_ai.response.finish_reasons",
        "outcome_error_type": "error.type",
    }
    attrs = span_attributes(rec)
    for key in rec.to_dict():
        if key in ("started_at", "params", "tags", "outcome_error_message"):  # span, not attrs
            continue
        group, _, rest = key.partition("_")
        name = f"fmgate.{group}.{rest}" if group in GROUPS else f"fmgate.{key}"
        assert semconv.get(key, name) in attrs, key


def test_flush_forces_the_provider_to_export(
    monkeypatch: pytest.MonkeyPatch, sink: OpenTelemetrySink
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(
        TracerProvider, "force_flush", lambda self, timeout_millis=0: calls.append(1)
    )
    sink.flush()
    assert calls == [1]


def test_import_fmgate_does_not_import_opentelemetry() -> None:
    code = "import sys, fmgate; print([m for m in sys.modules if m.startswith('opentelemetry')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # what an uninstalled package does
    with pytest.raises(fmgate.MissingExtraError, match=r'pip install "fmgate\[otel\]"') as info:
        OpenTelemetrySink()
    assert info.value.extra == "otel"
