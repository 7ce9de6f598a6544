"""Values passed between the facade and the backends: messages, parameters, results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._errors import InvalidRequestError
from ._record import CallRecord, Usage

Role = Literal["system", "user", "assistant"]
ROLES: frozenset[str] = frozenset(("system", "user", "assistant"))

Prompt = str | Sequence[Mapping[str, Any]]
"""A user prompt as text, or a list of ``{"role": ..., "content": ...}`` messages."""


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


def normalize_messages(prompt: Prompt, system: str | None = None) -> tuple[Message, ...]:
    """Turn a prompt into messages, ``system`` first; refuse shapes a provider would reject."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidRequestError("The prompt is empty: pass some text or a list of messages.")
        messages = [Message("user", prompt)]
    elif isinstance(prompt, Sequence) and not isinstance(prompt, bytes | bytearray):
        messages = [_message(i, m) for i, m in enumerate(prompt)]
        if not messages:
            raise InvalidRequestError("The message list is empty: pass at least one user message.")
    else:
        raise InvalidRequestError(
            f"A prompt must be a str or a list of {{'role', 'content'}} dicts, "
            f"not {type(prompt).__name__}."
        )
    if system is not None:
        if not isinstance(system, str):
            raise InvalidRequestError(f"system must be a str, not {type(system).__name__}.")
        messages.insert(0, Message("system", system))
    if all(m.role == "system" for m in messages):
        raise InvalidRequestError("The messages hold only a system prompt: add a user message.")
    return tuple(messages)


def _message(index: int, raw: object) -> Message:
    if not isinstance(raw, Mapping):
        raise InvalidRequestError(
            f"Message {index} is a {type(raw).__name__}; each message must be a dict with "
            "'role' and 'content'."
        )
    extra = set(raw) - {"role", "content"}
    if extra or "role" not in raw or "content" not in raw:
        raise InvalidRequestError(
            f"Message {index} must have exactly the keys 'role' and 'content' "
            f"(got {sorted(map(str, raw))})."
        )
    role, content = raw["role"], raw["content"]
    if role not in ROLES:
        raise InvalidRequestError(
            f"Message {index} has role {role!r}; use one of 'system', 'user', 'assistant'."
        )
    if not isinstance(content, str):
        raise InvalidRequestError(
            f"Message {index} content must be a str, not {type(content).__name__}."
        )
    return Message(role, content)


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """The common generation settings; ``extra`` holds backend-specific ones, prefix removed."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def merged(self, other: GenerationParams) -> GenerationParams:
        """``other``'s settings where given, else this one's."""
        return GenerationParams(
            max_tokens=other.max_tokens if other.max_tokens is not None else self.max_tokens,
            temperature=other.temperature if other.temperature is not None else self.temperature,
            top_p=other.top_p if other.top_p is not None else self.top_p,
            stop=other.stop if other.stop is not None else self.stop,
            seed=other.seed if other.seed is not None else self.seed,
            extra={**self.extra, **other.extra},
        )

    def to_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("max_tokens", "temperature", "top_p", "seed"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.stop is not None:
            out["stop"] = list(self.stop)
        out.update(self.extra)
        return out


COMMON_PARAMS: tuple[str, ...] = ("max_tokens", "temperature", "top_p", "stop", "seed")


def make_params(values: Mapping[str, Any], prefixes: Sequence[str]) -> GenerationParams:
    """Validate common params and backend-prefixed ones (``openai_logprobs=...``)."""
    common: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key in COMMON_PARAMS:
            common[key] = _check_param(key, value)
            continue
        prefix = next(
            (p for p in prefixes if key.startswith(p + "_") and len(key) > len(p) + 1), None
        )
        if prefix is None:
            hint = (
                f" Pass backend-specific parameters with its prefix, e.g. {prefixes[0]}_{key}=..."
                if prefixes
                else ""
            )
            raise InvalidRequestError(
                f"Unknown parameter {key!r}: the common ones are "
                f"{', '.join(COMMON_PARAMS)}, system.{hint}"
            )
        extra[key[len(prefix) + 1 :]] = value
    return GenerationParams(**common, extra=extra)


def _check_param(key: str, value: Any) -> Any:
    if key == "max_tokens":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidRequestError(f"max_tokens must be a positive int, not {value!r}.")
        return value
    if key == "seed":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequestError(f"seed must be an int, not {value!r}.")
        return value
    if key == "stop":
        stops = (value,) if isinstance(value, str) else value
        if (
            not isinstance(stops, Sequence)
            or not stops
            or not all(isinstance(s, str) and s for s in stops)
        ):
            raise InvalidRequestError("stop must be a non-empty str or a list of non-empty str.")
        return tuple(stops)
    bounds = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0)}[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f"{key} must be a number, not {value!r}.")
    if not bounds[0] <= value <= bounds[1]:
        raise InvalidRequestError(f"{key} must lie in [{bounds[0]}, {bounds[1]}], not {value!r}.")
    return float(value)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What a backend receives: normalised messages and the merged parameters."""

    messages: tuple[Message, ...]
    params: GenerationParams


@dataclass(frozen=True, slots=True)
class Completion:
    """What a backend returns for a non-streaming call (and what a stream adds up to)."""

    text: str
    finish_reason: str | None = None
    usage: Usage = Usage()
    model_id: str | None = None
    # time.perf_counter() when the first token was decoded, where the backend can see it (local
    # generation): the recording wrapper turns it into latency.ttft_s for non-streamed calls.
    first_token_at: float | None = None


@dataclass(slots=True)
class Delta:
    """One piece of a stream from a backend: text, and at the end finish reason and usage."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    model_id: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """The result of ``generate``: the text, why it stopped, token usage and the call record."""

    text: str
    finish_reason: str | None
    usage: Usage
    record: CallRecord


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of streamed text."""

    text: str


@dataclass(frozen=True, slots=True)
class Embeddings:
    """The result of ``embed``: one vector per input, and the call record."""

    vectors: list[list[float]]
    usage: Usage
    record: CallRecord
