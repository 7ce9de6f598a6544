"""The call record: one schema for every backend and channel.

Every field that fmgate cannot know is ``None``, never a guessed zero. Records are frozen and
round-trip through a flat dict (``to_dict``/``from_dict``) whose keys are ``group_field``
(``usage_input_tokens``, ``latency_ttft_s``, ...), ready for JSONL, CSV or a SQL table.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, get_args

Distribution = Literal["local", "self_hosted", "api"]
UsageSource = Literal["provider", "tokenizer", "estimate"]
CostBasis = Literal[
    "list_price",
    "hardware_time",
    "energy_measured",
    "energy_estimated",
    "server_reported",  # a self-hosted server's own price of the call (fmgate serve's usage.fmgate)
    "unknown",
]
# gen_ai.operation.name of the GenAI semantic conventions; they have no name for classification,
# so a classify call says "classify" (the conventions allow a custom value where none applies).
Operation = Literal["chat", "embeddings", "classify", "detect", "generate_content"]
# What the user asked for, by Model method: chat (generate, stream), embed, classify, and the image
# tasks to come (detect, image).
Task = Literal["chat", "embed", "classify", "detect", "image"]
OPERATIONS: dict[Task, Operation] = {
    "chat": "chat",
    "embed": "embeddings",
    "classify": "classify",
    "detect": "detect",
    "image": "generate_content",  # the conventions' name for multimodal content generation
}
Status = Literal["ok", "error"]

# 2: tags; 3: latency.wall_s, outcome.fallback_reason; 4: outcome.sent;
# 5: task, usage.items, usage.images_in, usage.images_out; 6: tools, output;
# 7: usage.pixels_in, usage.pixels_out
SCHEMA_VERSION = 7


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts for one call, and where they came from.

    ``items`` counts the inputs of a task that takes a list (texts classified, texts embedded),
    so that cost and latency per item follow; ``images_in``/``images_out`` count images read and
    made, ``pixels_in``/``pixels_out`` their width x height summed. Each is ``None`` where the
    task has none (a chat call has no items).
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    source: UsageSource | None = None
    items: int | None = None
    images_in: int | None = None
    images_out: int | None = None
    pixels_in: int | None = None
    pixels_out: int | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Latency:
    """Seconds on the monotonic clock, named after vLLM's benchmark definitions.

    ``total_s`` runs from sending the request to the last byte; ``ttft_s`` to the first non-empty
    token (measured on the client, streams and local generation only); ``load_s`` is the cold start
    (model load or client setup) paid by this call and kept out of the other numbers.
    ``decode_tokens_per_s`` is (n_out - 1) / (total - ttft); ``e2e_per_token_s`` is total / n_out.
    With retries these describe the final try; ``wall_s`` is what the caller waited in all:
    every try, the waits between them and the cold start.
    """

    total_s: float | None = None
    ttft_s: float | None = None
    load_s: float | None = None
    decode_tokens_per_s: float | None = None
    e2e_per_token_s: float | None = None
    wall_s: float | None = None

    @classmethod
    def measure(
        cls,
        total_s: float,
        *,
        ttft_s: float | None = None,
        load_s: float | None = None,
        output_tokens: int | None = None,
        wall_s: float | None = None,
    ) -> Latency:
        decode = None
        if ttft_s is not None and output_tokens is not None and output_tokens > 1:
            decode_time = total_s - ttft_s
            decode = (output_tokens - 1) / decode_time if decode_time > 0 else None
        per_token = total_s / output_tokens if output_tokens else None
        return cls(total_s, ttft_s, load_s, decode, per_token, wall_s)


@dataclass(frozen=True, slots=True)
class Cost:
    """What the call cost in USD, and on what basis.

    ``amount`` is ``None`` with basis ``unknown`` when fmgate cannot price the call: never 0.
    ``source`` says which data priced it (for list prices, the genai-prices snapshot).
    """

    amount: Decimal | None = None
    basis: CostBasis = "unknown"
    currency: str = "USD"
    source: str | None = None
    energy_j: float | None = None


@dataclass(frozen=True, slots=True)
class Access:
    """How open and how reachable the model is: the other half of the comparison."""

    open_weights: bool | None = None
    license: str | None = None
    parameters: int | None = None
    dtype: str | None = None
    quantization: str | None = None
    weights_bytes: int | None = None
    peak_memory_bytes: int | None = None
    context_window: int | None = None
    data_leaves_machine: bool | None = None
    requires_network: bool | None = None
    requires_api_key: bool | None = None
    offline_capable: bool | None = None
    hardware: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """Whether the call succeeded; a failed call is recorded too.

    ``attempts`` counts tries (1 without retries). A call served by a fallback model names the
    model that failed in ``fallback_from`` and its error in ``fallback_reason``.

    ``sent`` says whether this call sent anything to the model: ``False`` for a call refused
    before sending (offline mode, a bad parameter) or whose connection was never made (a DNS
    failure, a refused connection), ``None`` where it cannot be known (interrupted mid-send).
    ``access.data_leaves_machine`` describes the channel; ``sent`` says whether this call used it.
    """

    status: Status = "ok"
    finish_reason: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    http_status: int | None = None
    attempts: int = 1
    fallback_from: str | None = None
    chunks: int | None = None
    fallback_reason: str | None = None
    sent: bool | None = None


@dataclass(frozen=True, slots=True)
class ToolUse:
    """Tools in a chat call: how many were offered, how the model had to choose (``auto``,
    ``required``, ``none`` or a tool's name), and how many calls it made. ``None`` throughout
    for a call without tools. A tool loop's calls share the tag ``fmgate.tool_loop``."""

    offered: int | None = None
    choice: str | None = None
    called: int | None = None


@dataclass(frozen=True, slots=True)
class OutputCheck:
    """Structured output (``output=``): the schema's name and sha256 (first 16 hex digits of its
    canonical JSON), how the backend asked for it (``mode``: ``native``, the provider's own
    structured output; ``tool``, a forced tool whose input is the answer; ``grammar``, local
    constrained decoding), and whether the reply validated (``False``: the call failed with an
    ``OutputValidationError``; ``None`` with no reply to check). ``None`` throughout without."""

    schema: str | None = None
    schema_hash: str | None = None
    valid: bool | None = None
    mode: str | None = None


@dataclass(frozen=True, slots=True)
class Environment:
    fmgate_version: str | None = None
    backend_library: str | None = None
    python_version: str | None = None


_GROUPS: dict[str, type[Any]] = {
    "usage": Usage,
    "latency": Latency,
    "cost": Cost,
    "access": Access,
    "outcome": Outcome,
    "environment": Environment,
    "tools": ToolUse,
    "output": OutputCheck,
}


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call to one model: identity, usage, latency, cost, access, outcome, environment.

    ``tags`` are the labels in force when the call started (:func:`fmgate.tagged`); ``fmgate
    compare`` uses keys under ``fmgate.`` (run, prompt, repeat, warmup, role).
    """

    id: str
    started_at: datetime
    backend: str
    model_id: str
    alias: str | None = None
    provider: str | None = None
    revision: str | None = None
    operation: Operation = "chat"
    task: Task = "chat"
    distribution: Distribution = "api"
    endpoint: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    usage: Usage = Usage()
    latency: Latency = Latency()
    cost: Cost = Cost()
    access: Access = Access()
    outcome: Outcome = Outcome()
    environment: Environment = Environment()
    tools: ToolUse = ToolUse()
    output: OutputCheck = OutputCheck()
    schema_version: int = SCHEMA_VERSION

    @property
    def ok(self) -> bool:
        return self.outcome.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """A flat dict of JSON-ready values (Decimal as str, datetime as ISO 8601)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _GROUPS:
                for sub in dataclasses.fields(value):
                    out[f"{f.name}_{sub.name}"] = _to_json(getattr(value, sub.name))
            else:
                out[f.name] = _to_json(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallRecord:
        """Rebuild a record from ``to_dict`` output; keys it does not know are ignored."""
        groups: dict[str, dict[str, Any]] = {name: {} for name in _GROUPS}
        top: dict[str, Any] = {}
        for key, group, name in _flat_layout():  # reading many records: no fields() per record
            if key in data:
                (top if group is None else groups[group])[name] = data[key]
        top["started_at"] = _parse_datetime(top["started_at"])
        top.setdefault("params", {})
        if top.get("task") is None:  # written before schema 5: only chat and embed existed
            top["task"] = "embed" if top.get("operation") == "embeddings" else "chat"
        top["tags"] = top.get("tags") or {}
        cost = groups["cost"]
        if cost.get("amount") is not None:
            cost["amount"] = Decimal(str(cost["amount"]))
        built = {name: _GROUPS[name](**values) for name, values in groups.items()}
        return cls(**top, **built)


@functools.cache
def _flat_layout() -> tuple[tuple[str, str | None, str], ...]:
    """Each flat key of ``CallRecord.to_dict``: (key, its group or None, the field's name)."""
    layout: list[tuple[str, str | None, str]] = []
    for f in dataclasses.fields(CallRecord):
        if f.name in _GROUPS:
            layout += [
                (f"{f.name}_{s.name}", f.name, s.name) for s in dataclasses.fields(_GROUPS[f.name])
            ]
        else:
            layout.append((f.name, None, f.name))
    return tuple(layout)


def _to_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _parse_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


COST_BASES: tuple[str, ...] = get_args(CostBasis)
DISTRIBUTIONS: tuple[str, ...] = get_args(Distribution)


@dataclass(frozen=True, slots=True)
class Score:
    """A quality score for one recorded call, kept apart from the record it grades.

    ``value`` is in [0, 1] (``None``: the scorer could not grade it, e.g. the judge failed);
    ``judge_record_id`` is the judge model's own call, for ``judge:<model>`` scorers.
    """

    record_id: str
    scorer: str
    value: float | None
    created_at: datetime
    judge_record_id: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Score:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["created_at"] = _parse_datetime(values["created_at"])
        return cls(**values)
