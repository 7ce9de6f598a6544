"""OpenTelemetry export: one span per call, named and attributed by the GenAI semantic conventions.

The conventions are those of open-telemetry/semantic-conventions-genai (``client-inference.md``,
span ``gen_ai.client.inference``; provider values from ``docs/registry/attributes/gen-ai.md``).
:func:`span_attributes` is the one mapping from a :class:`CallRecord` to span attributes:

- ``gen_ai.*``: operation, provider (the spec's well-known value where one exists), request and
  response model, token counts (input tokens include cached ones, as the spec asks), the common
  request parameters, ``gen_ai.response.finish_reasons``, ``gen_ai.request.stream`` (set only on
  streams, as the spec says) and ``gen_ai.response.time_to_first_chunk`` (the spec's span attribute
  for TTFT, in seconds; fmgate measures it to the first non-empty token, for streams and local
  generation). ``server.address``/``server.port`` from the endpoint; ``error.type`` on failures.
- ``fmgate.*``: every other field, named by its ``to_dict`` key with the group's underscore turned
  into a dot (``fmgate.cost.basis``, ``fmgate.access.open_weights``, ``fmgate.latency.load_s``);
  ``id`` is ``fmgate.record_id``. ``fmgate.cost.amount`` is a float in USD, so that tracing
  backends can sum it; the exact decimal stays in the store. Tags are ``fmgate.tag.<key>``;
  other params are ``fmgate.param.<key>`` only with ``include_params=True``.

``None`` (unknown) is omitted, never sent as 0. Prompt and response text are never exported.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ._extras import missing_extra
from ._record import CallRecord
from ._recording import environment

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from opentelemetry.util.types import AttributeValue

__all__ = ["OpenTelemetrySink", "span_attributes"]

# Provider rows whose well-known spec value differs from the row name. openai, anthropic, groq and
# deepseek are spelled alike; the rest have no well-known value and go as they are (the spec allows
# a custom value then: vllm, ollama, together, openrouter, huggingface, transformers, ...).
_PROVIDER_NAMES = {
    "gemini": "gcp.gemini",  # the spec's value for generativelanguage.googleapis.com
    "mistral": "mistral_ai",
}

_REQUEST_PARAMS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "seed": "gen_ai.request.seed",
    "stop": "gen_ai.request.stop_sequences",
}

# Fields exported another way, so not repeated as fmgate.<field>: by a spec attribute, by the span
# itself (started_at; error_message as the status description), or as fmgate.record_id,
# fmgate.tag.* and fmgate.param.*.
_SEMCONV_FIELDS = frozenset(
    """
    id started_at model_id provider operation stream params tags
    usage.input_tokens usage.output_tokens usage.cache_read_tokens usage.cache_write_tokens
    usage.reasoning_tokens latency.ttft_s outcome.finish_reason outcome.error_type
    outcome.error_message
    """.split()
)


def _provider_name(record: CallRecord) -> str:
    name = record.provider or record.backend
    return _PROVIDER_NAMES.get(name, name)


def span_attributes(
    record: CallRecord, *, include_params: bool = False
) -> dict[str, AttributeValue]:
    """The span attributes for one record; see the module docstring for the mapping."""
    attrs = {**_semconv(record), **_fmgate(record)}
    attrs.update({f"fmgate.tag.{key}": value for key, value in record.tags.items()})
    if include_params:
        extra = {k: v for k, v in record.params.items() if k not in _REQUEST_PARAMS}
        attrs.update({f"fmgate.param.{key}": value for key, value in extra.items()})
    return {key: _value(value) for key, value in attrs.items() if value is not None}


def _semconv(record: CallRecord) -> dict[str, Any]:
    usage, outcome, reason = record.usage, record.outcome, record.outcome.finish_reason
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": record.operation,
        "gen_ai.provider.name": _provider_name(record),
        # The record keeps one model id: as the response named it, else as requested.
        "gen_ai.request.model": record.model_id,
        "gen_ai.response.model": record.model_id if record.ok else None,
        "gen_ai.request.stream": True if record.stream else None,
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
        "gen_ai.usage.cache_write.input_tokens": usage.cache_write_tokens,
        "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
        "gen_ai.response.time_to_first_chunk": record.latency.ttft_s,
        "gen_ai.response.finish_reasons": [reason] if reason else None,
        "error.type": outcome.error_type if not record.ok else None,
    }
    attrs.update({name: record.params.get(key) for key, name in _REQUEST_PARAMS.items()})
    attrs.update(_server(record.endpoint))
    return attrs


def _fmgate(record: CallRecord) -> dict[str, Any]:
    attrs: dict[str, Any] = {"fmgate.record_id": record.id}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if not dataclasses.is_dataclass(value):
            if f.name not in _SEMCONV_FIELDS:
                attrs[f"fmgate.{f.name}"] = value
            continue
        for sub in dataclasses.fields(value):
            name = f"{f.name}.{sub.name}"
            if name not in _SEMCONV_FIELDS:
                attrs[f"fmgate.{name}"] = getattr(value, sub.name)
    return attrs


def _server(endpoint: str | None) -> dict[str, Any]:
    """``server.address``/``server.port`` from the recorded ``host:port`` (``in-process``: none)."""
    if not endpoint or endpoint == "in-process":
        return {}
    host, _, port = endpoint.rpartition(":")  # rpartition: an IPv6 host holds colons too
    if not host or not port.isdigit():
        return {"server.address": endpoint}
    return {"server.address": host, "server.port": int(port)}


_PRIMITIVES = {str, bool, int, float}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _value(value: Any) -> AttributeValue:
    """A value OpenTelemetry accepts: primitives and lists of them; anything else as text."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        kinds = {type(v) for v in value}
        if len(kinds) <= 1 and kinds <= _PRIMITIVES:  # an OpenTelemetry array holds one type
            return list(value)
    return str(value)


def _nanos(when: datetime) -> int:
    # Integer arithmetic: a float timestamp in ns loses the microseconds' last digits.
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(microseconds=1) * 1_000


class OpenTelemetrySink:
    """Sends each record as one finished span (extra ``otel``).

    The span runs from ``started_at`` to ``started_at + latency.total_s``; it is a child of the
    span current where the call was recorded. ``tracer_provider=None`` uses the global provider.
    A failed call gets status ERROR (its redacted message as description) and ``error.type``.
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, include_params: bool = False
    ) -> None:
        try:
            from opentelemetry import trace
        except ImportError as exc:
            raise missing_extra("OpenTelemetrySink", "otel", exc.name) from exc
        self._provider = tracer_provider
        self._include_params = include_params
        version = environment(None).fmgate_version
        self._tracer = trace.get_tracer("fmgate", version, tracer_provider=tracer_provider)

    def write(self, record: CallRecord) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        start = _nanos(record.started_at)
        end = start + round((record.latency.total_s or 0.0) * 1e9)
        # The spec allows INTERNAL for a model running in this process; CLIENT for the rest.
        kind = SpanKind.INTERNAL if record.distribution == "local" else SpanKind.CLIENT
        span = self._tracer.start_span(
            f"{record.operation} {record.model_id}",
            kind=kind,
            attributes=span_attributes(record, include_params=self._include_params),
            start_time=start,
        )
        if not record.ok:
            span.set_status(Status(StatusCode.ERROR, record.outcome.error_message))
        span.end(end_time=end)

    def flush(self) -> None:
        from opentelemetry import trace

        provider = self._provider or trace.get_tracer_provider()
        force_flush = getattr(provider, "force_flush", None)  # the API's providers have none
        if callable(force_flush):
            force_flush()
