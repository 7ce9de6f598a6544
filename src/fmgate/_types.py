"""Values passed between the facade and the backends: messages, parameters, results."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from ._errors import InvalidRequestError, shown
from ._images import Image, to_image
from ._record import CallRecord, Cost, Usage
from ._tools import OutputSpec, Tool, ToolCall, to_tool_call

Role = Literal["system", "user", "assistant", "tool"]
Part = str | Image
"""A piece of a message's content: text, or an image."""
ROLES: frozenset[str] = frozenset(("system", "user", "assistant", "tool"))

Prompt = str | Sequence[Mapping[str, Any]]
OnText = Callable[[str], "bool | None"]
"""What a backend that streams batches calls with each piece of a row's text, as decoded."""
"""A user prompt as text, or a list of ``{"role": ..., "content": ...}`` messages."""


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. An assistant message may carry the tool calls it made (``content``
    may then be empty); a ``tool`` message answers one of them (``tool_call_id``), ``name``
    being the tool's.

    A user message with images keeps its pieces in order in ``parts`` (text and
    :class:`~fmgate._images.Image`); ``content`` is then its text parts joined by newlines. A
    message of text alone has no ``parts``."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    parts: tuple[Part, ...] = ()

    @property
    def images(self) -> tuple[Image, ...]:
        return tuple(p for p in self.parts if isinstance(p, Image))


def lone_surrogate(text: str) -> int | None:
    """Where ``text`` holds its first lone surrogate (which no UTF-8 file, wire or SQLite column
    can carry), or None. Cheap on the usual ASCII text."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def check_text(text: str, what: str) -> str:
    """``text``, refused if it holds a lone surrogate: no model and no UTF-8 wire can carry it."""
    at = lone_surrogate(text)
    if at is not None:
        raise InvalidRequestError(
            f"{what} holds a lone surrogate ({text[at]!r} at position {at}), which "
            "cannot be sent as UTF-8: decode the text with errors='replace' first."
        )
    return text


def normalize_messages(prompt: Prompt, system: str | None = None) -> tuple[Message, ...]:
    """Turn a prompt into messages, ``system`` first; refuse shapes a provider would reject."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidRequestError("The prompt is empty: pass some text or a list of messages.")
        messages = [Message("user", check_text(prompt, "The prompt"))]
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
        messages.insert(0, Message("system", check_text(system, "The system prompt")))
    if all(m.role == "system" for m in messages):
        raise InvalidRequestError("The messages hold only a system prompt: add a user message.")
    if not any(
        m.content.strip() or m.tool_calls or m.parts for m in messages if m.role != "system"
    ):
        raise InvalidRequestError(
            "The prompt is empty: every user and assistant message is blank; give one some text."
        )
    return tuple(messages)


def _message(index: int, raw: object) -> Message:
    if not isinstance(raw, Mapping):
        raise InvalidRequestError(
            f"Message {index} is a {type(raw).__name__}; each message must be a dict with "
            "'role' and 'content'."
        )
    role = raw.get("role")
    if not isinstance(role, str) or role not in ROLES:  # a list or dict role is unhashable
        raise InvalidRequestError(
            f"Message {index} has role {shown(role)}; use one of 'system', 'user', 'assistant', "
            "'tool'."
        )
    allowed = _KEYS[role]
    extra = set(raw) - allowed
    content = raw.get("content")
    calls = raw.get("tool_calls") if role == "assistant" else None
    if content is None and calls:  # OpenAI's assistant message with tool calls only
        content = ""
    if extra or "role" not in raw or content is None:
        raise InvalidRequestError(
            f"Message {index} must have the keys {', '.join(sorted(_KEYS[role]))} "
            f"(got {', '.join(sorted(map(shown, raw)))})."
        )
    parts: tuple[Part, ...] = ()
    if isinstance(content, Sequence) and not isinstance(content, str | bytes | bytearray):
        parts = _parts(index, role, content)
        content = "\n".join(p for p in parts if isinstance(p, str))
        if not any(isinstance(p, Image) for p in parts):
            parts = ()  # text pieces alone: one text
    if not isinstance(content, str):
        raise InvalidRequestError(
            f"Message {index} content must be a str or a list of content parts, not "
            f"{type(content).__name__}."
        )
    text = check_text(content, f"Message {index} content")
    if parts:
        return Message("user", text, parts=parts)
    if role == "tool":
        call_id = raw.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequestError(
                f"Message {index} is a tool result: give the 'tool_call_id' of the call it answers."
            )
        name = raw.get("name")
        return Message(
            "tool", text, tool_call_id=call_id, name=name if isinstance(name, str) else None
        )
    if calls is not None:
        if isinstance(calls, str | bytes | Mapping) or not isinstance(calls, Sequence):
            raise InvalidRequestError(f"Message {index} tool_calls must be a list.")
        return Message("assistant", text, tuple(to_tool_call(c, i) for i, c in enumerate(calls)))
    return Message(cast(Role, role), text)


def _parts(index: int, role: str, content: Sequence[Any]) -> tuple[Part, ...]:
    """A message's content parts: ``{"type": "text", "text": ...}``, ``{"type": "image",
    "image": <path, bytes, PIL image or array>}`` and OpenAI's ``{"type": "image_url",
    "image_url": {"url": "data:image/...;base64,..."}}``."""
    parts: list[Part] = []
    for n, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        where = f"Message {index} part {n}"
        if kind == "text" and isinstance(part, Mapping):
            text = part.get("text")
            if not isinstance(text, str):
                raise InvalidRequestError(f"{where} is a text part without a str 'text'.")
            parts.append(check_text(text, where))
            continue
        if kind not in ("image", "image_url") or not isinstance(part, Mapping):
            raise InvalidRequestError(
                f"{where} is {shown(part)}; a content part is {{'type': 'text', 'text': ...}}, "
                "{'type': 'image', 'image': <path, bytes, PIL image or array>} or "
                "{'type': 'image_url', 'image_url': {'url': 'data:image/...'}}."
            )
        if role != "user":
            raise InvalidRequestError(
                f"{where} is an image in a {role} message: images go in user messages."
            )
        value = part.get("image") if kind == "image" else part.get("image_url")
        if isinstance(value, Mapping):
            value = value.get("url")
        if value is None:
            raise InvalidRequestError(f"{where} is an {kind} part without its image.")
        parts.append(to_image(value))
    return tuple(parts)


_KEYS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content"}),
    "user": frozenset({"role", "content"}),
    "assistant": frozenset({"role", "content", "tool_calls"}),
    "tool": frozenset({"role", "content", "tool_call_id", "name"}),
}


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


# Past these no server takes the value, and the record store (64-bit integers) could not hold it.
MAX_TOKENS_LIMIT = 2**31 - 1
SEED_RANGE = (-(2**63), 2**63 - 1)


def _check_param(key: str, value: Any) -> Any:
    if key == "max_tokens":
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_TOKENS_LIMIT
        ):
            raise InvalidRequestError(
                f"max_tokens must be a positive int (at most 2**31 - 1), not {shown(value)}."
            )
        return value
    if key == "seed":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequestError(f"seed must be an int, not {shown(value)}.")
        if not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
            raise InvalidRequestError(f"seed must fit in 64 bits, not {shown(value)}.")
        return value
    if key == "stop":
        stops = (value,) if isinstance(value, str) else value
        if (
            not isinstance(stops, Sequence)
            or not stops
            or not all(isinstance(s, str) and s for s in stops)
        ):
            raise InvalidRequestError("stop must be a non-empty str or a list of non-empty str.")
        return tuple(check_text(s, "A stop string") for s in stops)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f"{key} must be a number, not {shown(value)}.")
    # Comparisons are False for nan, so nan is refused as well.
    if key == "temperature" and not 0 <= value <= 2:
        raise InvalidRequestError(f"temperature must lie in [0, 2], not {shown(value)}.")
    if key == "top_p" and not 0 < value <= 1:  # top_p = 0 would keep no token at all
        raise InvalidRequestError(f"top_p must lie in (0, 1], not {shown(value)}.")
    return float(value)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What a backend receives: normalised messages and the merged parameters; the tools the
    model may call and how it must choose (``auto``, ``required``, ``none``, a tool's name);
    and the structured output its reply must be. A backend that cannot honour ``tools`` or
    ``output`` never receives them: ``Model`` refuses first (``Backend.features``)."""

    messages: tuple[Message, ...]
    params: GenerationParams
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None
    output: OutputSpec | None = None


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
    tool_calls: tuple[ToolCall, ...] = ()
    # what the call cost, where the backend knows it (a self-hosted server's own price, or its
    # share of the server's time): recorded instead of a price from the usage
    cost: Cost | None = None
    # a local call in a continuous batch: its processor-sharing seconds of the machine (each
    # step's time divided among the rows in it), which its cost is priced on; and the seconds
    # it waited for a place among generate_many's batch_size rows (its clock starts after them)
    machine_s: float | None = None
    waited_s: float | None = None
    # settings the backend chose while running the call (a local model's decode path), for
    # the record's params
    params: Mapping[str, Any] | None = None


@dataclass(slots=True)
class Delta:
    """One piece of a stream from a backend: text, and at the end finish reason and usage."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    model_id: str | None = None
    # whole tool calls, assembled by the backend from the provider's pieces (usually at the end)
    tool_calls: tuple[ToolCall, ...] = ()
    cost: Cost | None = None  # the call's cost where the backend knows it (at the end)
    machine_s: float | None = None  # as Completion.machine_s (at the end)
    params: Mapping[str, Any] | None = None  # the backend's own settings for the record


@dataclass(frozen=True, slots=True)
class Response:
    """The result of ``generate``: the text, why it stopped, token usage and the call record;
    the tool calls the model made (``finish_reason == "tool_calls"``), and with ``output=`` the
    validated value (a Pydantic instance, or the decoded JSON for a schema dict).

    ``messages`` is the conversation after this call when a tool loop ran (``run_tools=True``):
    the prompt, each assistant turn with its calls, and each tool result."""

    text: str
    finish_reason: str | None
    usage: Usage
    record: CallRecord
    tool_calls: tuple[ToolCall, ...] = ()
    parsed: Any = None
    messages: tuple[Message, ...] = ()


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


Ranked = list[tuple[str, float]]
"""One input's labels with their scores, best first."""


@dataclass(frozen=True, slots=True)
class ClassifyResult:
    """What a backend returns for ``classify``: per input, ``(label, score)`` pairs best first."""

    results: list[Ranked]
    usage: Usage
    model_id: str | None = None
    errors: tuple[str | None, ...] = ()
    """Per input, why its row failed (an empty ranking), else None; empty when none failed."""


@dataclass(frozen=True, slots=True)
class Classifications:
    """The result of ``classify``: per input, ``(label, score)`` pairs best first, and the record.

    Scores are the classifier's own (probabilities for fastText); a zero-shot chat model's answer
    scores 1.0 for the label it chose, which is not a probability. A row that failed (a zero-shot
    answer that names no label) has an empty ranking, its label is None, and ``errors`` says why.
    """

    results: list[Ranked]
    usage: Usage
    record: CallRecord
    errors: tuple[str | None, ...] = ()

    @property
    def labels(self) -> list[str | None]:
        """The best label of each input (None for a row that failed)."""
        return [ranked[0][0] if ranked else None for ranked in self.results]


Box = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in pixels of the input image: top-left and bottom-right corners."""


@dataclass(frozen=True, slots=True)
class Detection:
    """One object found in an image: its label, the detector's score and its box in pixels of
    the image as given (``(x0, y0, x1, y1)``, top-left to bottom-right)."""

    label: str
    score: float
    box: Box


@dataclass(frozen=True, slots=True)
class DetectResult:
    """What a backend returns for ``detect``: per image, its detections best first."""

    results: list[list[Detection]]
    usage: Usage
    model_id: str | None = None
    errors: tuple[str | None, ...] = ()


@dataclass(frozen=True, slots=True)
class Detections:
    """The result of ``detect``: per image, the objects found (best score first), and the
    record. A zero-shot chat model's boxes score 1.0, which is not a probability. A row that
    failed has no detections and ``errors`` says why."""

    results: list[list[Detection]]
    usage: Usage
    record: CallRecord
    errors: tuple[str | None, ...] = ()
