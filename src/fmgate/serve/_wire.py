"""OpenAI's wire, server side: request bodies read and checked, response bodies built.

The request schemas follow OpenAI's Chat Completions and Embeddings references. A field OpenAI
does not define is refused ("Unrecognized request argument supplied"), as OpenAI refuses it; a
field it defines but fmgate cannot honour (logprobs, ``n`` above 1, ...) is refused too,
unless it holds its no-op value, so that no client believes it got what it did not. Tools and
structured output (``tools``, ``tool_choice``, ``response_format``, tool calls and results in the
messages) are read in ``_wire_tools``; a model that cannot honour them refuses them (400).
Images come as ``image_url`` content parts holding data URLs (the server fetches no URL) and reach
the model as image parts; a model that does not read images refuses them (400).

vLLM's extensions that common OpenAI-compatible clients send (guidellm, benchmark scripts) are
read too: ``ignore_eos`` and ``stream_options.continuous_usage_stats`` are honoured, a few others
are accepted with the value that changes nothing (``_VLLM_OFF``). docs/serve.md lists them.

Answers carry fmgate's extension (``usage.fmgate``, the model facts on ``/v1/models``), built in
``_extension``.

Every string of a request (field names included) must be valid Unicode: a lone surrogate
(``"\ud800"`` in JSON) is refused here, before it can reach a model, a record or a log.
"""

from __future__ import annotations

import base64
import math
import struct
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import InvalidRequestError
from .._images import Image, to_image
from .._record import Access, CallRecord, Usage
from .._tools import OutputSpec, Tool, ToolCall
from .._types import Response, lone_surrogate
from ._errors import invalid, unrecognized
from ._extension import extension, model_facts
from ._wire_tools import (
    answer_calls,
    read_response_format,
    read_tool_calls,
    read_tool_choice,
    read_tools,
)

# What fmgate honours.
_CHAT_USED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "n",
        "stream",
        "stream_options",
        "ignore_eos",  # vLLM's: generate max_tokens whatever the model says (local models)
        "tools",
        "tool_choice",
        "response_format",
    }
)
# Labels and hints that change nothing about the reply: accepted and ignored.
_CHAT_IGNORED = frozenset(
    {
        "user",
        "metadata",
        "store",
        "safety_identifier",
        "prompt_cache_key",
        "service_tier",
        # Not passed on: the model behind makes as many calls as it would by default.
        "parallel_tool_calls",
    }
)
# Defined by OpenAI, not available here: accepted only with the value that means "off".
_CHAT_OFF: Mapping[str, tuple[Any, ...]] = {
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "logit_bias": ({},),
    "functions": ([],),  # the deprecated forms of tools and tool_choice
    "function_call": ("none",),
    "modalities": (["text"],),
    "audio": (),
    "prediction": (),
    "reasoning_effort": (),
    "verbosity": (),
    "web_search_options": (),
}
# vLLM's sampling extensions, accepted only with the value that means "as without it".
_VLLM_OFF: Mapping[str, tuple[Any, ...]] = {
    "skip_special_tokens": (True,),
    "spaces_between_special_tokens": (True,),
    "include_stop_str_in_output": (False,),
    "add_generation_prompt": (True,),
    "continue_final_message": (False,),
    "echo": (False,),
    "use_beam_search": (False,),
    "best_of": (1,),
    "min_tokens": (0,),
    "top_k": (-1, 0),
    "min_p": (0, 0.0),
    "repetition_penalty": (1, 1.0),
    "length_penalty": (1, 1.0),
    "stop_token_ids": ([],),
    "bad_words": ([],),
    "chat_template_kwargs": ({},),
    "return_tokens_as_token_ids": (False,),
    "priority": (0,),
}
_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
_MESSAGE_KEYS = {
    "assistant": frozenset({"role", "content", "name", "tool_calls"}),
    "tool": frozenset({"role", "content", "tool_call_id", "name"}),
}
_PLAIN_KEYS = frozenset({"role", "content", "name"})
# Assistant-message fields accepted when null.
_ASSISTANT_OFF = frozenset({"tool_calls", "function_call", "refusal", "audio"})
_DETAILS = frozenset({"auto", "low", "high"})  # an image_url's detail, as OpenAI defines it
_MAX_STOPS = 4  # OpenAI's limit
# OpenAI documents no length limit; one is needed all the same: matching costs grow with it.
MAX_STOP_CHARS = 1000
_INT_LIMIT = 2**31 - 1
_SEED_LIMIT = 2**63


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A checked chat request: what the Model is asked, and how the answer is sent back."""

    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    stream: bool
    include_usage: bool
    continuous_usage: bool = False  # usage in every chunk (vLLM's continuous_usage_stats)
    ignore_eos: bool = False
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None
    output: OutputSpec | None = None


@dataclass(frozen=True, slots=True)
class EmbedCall:
    model: str
    texts: list[str]
    base64: bool


def model_name(body: Mapping[str, Any]) -> str:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise invalid("You must provide a model parameter.", "model")
    return name


def read_chat(body: Mapping[str, Any]) -> ChatCall:
    given = {k: v for k, v in body.items() if v is not None}
    for field in given:
        if field in _CHAT_USED or field in _CHAT_IGNORED:
            continue
        off = _CHAT_OFF.get(field, _VLLM_OFF.get(field))
        if off is None:
            raise unrecognized(field)
        if given[field] not in off:
            raise invalid(f"{field} is not supported by this server (fmgate serve).", field)
    stream = _bool(given, "stream")
    options = given.get("stream_options")
    if options is not None and not stream:
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    include_usage, continuous = _stream_usage(options)
    tools = read_tools(given.get("tools"))
    return ChatCall(
        model=model_name(given),
        messages=_messages(given.get("messages")),
        params=_params(given),
        stream=stream,
        include_usage=include_usage,
        continuous_usage=include_usage and continuous,
        ignore_eos=_bool(given, "ignore_eos"),
        tools=tools,
        tool_choice=read_tool_choice(given.get("tool_choice"), tools),
        output=read_response_format(given.get("response_format")),
    )


def _params(body: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if body.get("n", 1) != 1 or isinstance(body.get("n"), bool):
        raise invalid("n must be 1: this server gives one choice per request.", "n")
    for field in ("max_completion_tokens", "max_tokens"):
        if field in body:
            params["max_tokens"] = _int(body, field, 1, _INT_LIMIT)
    if "temperature" in body:
        params["temperature"] = _number(body, "temperature", 0.0, 2.0)
    if "top_p" in body:
        params["top_p"] = _number(body, "top_p", 0.0, 1.0, open_low=True)
    if "seed" in body:
        params["seed"] = _int(body, "seed", -_SEED_LIMIT, _SEED_LIMIT - 1)
    if "stop" in body:
        params["stop"] = _stops(body["stop"])
    return params


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise invalid("messages must be a non-empty array of message objects.", "messages")
    messages = [_message(i, m) for i, m in enumerate(raw)]
    answer_calls(messages)
    return messages


def _message(index: int, raw: Any) -> dict[str, Any]:
    """The message as ``Model.generate`` takes it: an assistant's tool calls (its content may
    then be null) as ToolCall values, a tool result with the id of the call it answers."""
    where = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise invalid(f"{where} must be an object with 'role' and 'content'.", where)
    role = raw.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise invalid(
            f"{where}.role must be one of 'system', 'developer', 'user', 'assistant', 'tool'.",
            f"{where}.role",
        )
    known = _MESSAGE_KEYS.get(role, _PLAIN_KEYS)
    for key, value in raw.items():
        if key in known or (key in _ASSISTANT_OFF and value is None):
            continue
        raise invalid(f"{where}.{key} is not supported by this server.", f"{where}.{key}")
    if raw.get("name") is not None and not isinstance(raw["name"], str):
        raise invalid(f"{where}.name must be a string.", f"{where}.name")
    calls = read_tool_calls(raw["tool_calls"], where) if raw.get("tool_calls") else ()
    if calls and raw.get("content") is None:
        return {"role": "assistant", "content": "", "tool_calls": calls}
    message: dict[str, Any] = {
        "role": _ROLES[role],
        "content": _content(raw.get("content"), f"{where}.content", role),
    }
    if calls:
        message["tool_calls"] = calls
    if role == "tool":  # checked against the calls before it by answer_calls
        message["tool_call_id"] = raw.get("tool_call_id")
    return message


def _content(raw: Any, where: str, role: str) -> str | list[dict[str, Any]]:
    """A string, or an array of content parts: text parts alone are joined into one string;
    with ``image_url`` parts (user messages only) the parts are kept in order, each image
    decoded into an :class:`~fmgate._images.Image` (a bad one is this request's 400)."""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list) or not raw:
        raise invalid(f"{where} must be a string or an array of content parts.", where)
    parts = [_part(part, f"{where}[{i}]", role) for i, part in enumerate(raw)]
    if all(isinstance(p, str) for p in parts):
        return "".join(str(p) for p in parts)
    return [
        {"type": "text", "text": p} if isinstance(p, str) else {"type": "image", "image": p}
        for p in parts
    ]


def _part(part: Any, where: str, role: str) -> str | Image:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid(f"{where}.text must be a string.", where)
        return text
    if kind != "image_url":
        raise invalid(f"{where}: only text and image_url content parts are supported.", where)
    if role != "user":
        raise invalid(f"{where}: images go in user messages, not {role} messages.", where)
    return _image(part.get("image_url"), f"{where}.image_url")


def _image(raw: Any, where: str) -> Image:
    """OpenAI's ``{"url": ..., "detail": ...}``: the url must be a data URL; ``detail`` is
    accepted and ignored (the model reads the image at its own resolution)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
        raise invalid(f"{where} must be an object with a url string.", where)
    for key in raw:
        if key not in ("url", "detail"):
            raise unrecognized(f"{where}.{key}")
    if raw.get("detail", "auto") not in _DETAILS:
        raise invalid(f"{where}.detail must be one of 'auto', 'low', 'high'.", f"{where}.detail")
    url: str = raw["url"]
    if not url.startswith("data:"):
        raise invalid(
            f"{where}.url must be a data URL (data:image/png;base64,...): this server does not "
            "fetch images from URLs. Download the image and send its bytes inline.",
            f"{where}.url",
            "invalid_image_url",
        )
    try:
        return to_image(url)
    except InvalidRequestError as exc:
        raise invalid(f"{where}.url: {exc}", f"{where}.url", "invalid_image") from None


def _bool(body: Mapping[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise invalid(f"{field} must be a boolean.", field)
    return value


def _stream_usage(options: Any) -> tuple[bool, bool]:
    """``include_usage`` (OpenAI's) and ``continuous_usage_stats`` (vLLM's)."""
    if options is None:
        return False, False
    if not isinstance(options, dict):
        raise invalid("stream_options must be an object.", "stream_options")
    for key in options:
        if key not in ("include_usage", "include_obfuscation", "continuous_usage_stats"):
            raise unrecognized(f"stream_options.{key}")
    return _bool(options, "include_usage"), _bool(options, "continuous_usage_stats")


def _int(body: Mapping[str, Any], field: str, low: int, high: int) -> int:
    value = body[field]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{field} must be an integer from {low} to {high}.", field)
    return value


def _number(
    body: Mapping[str, Any], field: str, low: float, high: float, *, open_low: bool = False
) -> float:
    value = body[field]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(f"{field} must be a number.", field)
    if value > high or value < low or (open_low and value == low):
        bound = f"({low}, {high}]" if open_low else f"[{low}, {high}]"
        raise invalid(f"{field} must lie in {bound}, not {value}.", field)
    return float(value)


def _stops(raw: Any) -> list[str]:
    stops = [raw] if isinstance(raw, str) else raw
    if (
        not isinstance(stops, list)
        or not 1 <= len(stops) <= _MAX_STOPS
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops)
    ):
        raise invalid(
            f"stop must be a non-empty string or an array of up to {_MAX_STOPS} of them, each "
            f"at most {MAX_STOP_CHARS} characters long.",
            "stop",
        )
    return stops


def check_unicode(body: Any) -> None:
    """Refuse a body holding a lone surrogate in any string, field names included: no model
    reads it, UTF-8 cannot carry it, and a store or a log would fail on it. The walk is a loop,
    not a recursion: the JSON parser accepts nesting deeper than Python's recursion limit."""
    todo: list[tuple[str, Any]] = [("", body)]
    while todo:
        where, value = todo.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                inner = f"{where}.{_shown(key)}" if where else _shown(key)
                _check_string(key, inner)
                todo.append((inner, item))
        elif isinstance(value, list):
            todo.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_string(value, where)


def _check_string(text: str, where: str) -> None:
    at = lone_surrogate(text)
    if at is not None:
        raise invalid(
            f"{where or 'The request body'} holds a lone surrogate ({ascii(text[at])} at position "
            f"{at}), which is not valid Unicode: send UTF-8 text.",
            where or None,
        )


def _shown(key: str) -> str:
    """A field name as an error can show it: escaped where UTF-8 cannot carry it, and short."""
    key = key[:64]
    return key if lone_surrogate(key) is None else ascii(key)[1:-1]


def read_embeddings(body: Mapping[str, Any]) -> EmbedCall:
    given = {k: v for k, v in body.items() if v is not None}
    for field in given:
        if field not in ("model", "input", "encoding_format", "dimensions", "user"):
            raise unrecognized(field)
    if "dimensions" in given:
        raise invalid("dimensions is not supported by this server (fmgate serve).", "dimensions")
    fmt = given.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise invalid("encoding_format must be 'float' or 'base64'.", "encoding_format")
    raw = given.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise invalid(
            "input must be a non-empty string or a non-empty array of non-empty strings "
            "(token arrays are not supported).",
            "input",
        )
    return EmbedCall(model_name(given), texts, fmt == "base64")


# -- responses ------------------------------------------------------------------------------------

_FINISH = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(usage: Usage, record: CallRecord | None = None) -> dict[str, Any]:
    """Token counts as the model reports them; an unknown count is null, never a guessed 0.
    With the call's ``record``, fmgate's extension too (:func:`extension`)."""
    prompt, completion = usage.input_tokens, usage.output_tokens
    total = prompt + completion if prompt is not None and completion is not None else None
    data: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
    }
    if record is not None:
        data["fmgate"] = extension(record)
    return data


def finish_reason(reason: str | None, called: bool = False) -> str:
    """OpenAI's word for why the reply ended. A reply that calls tools ends with ``tool_calls``
    unless it was cut short: agent loops check for that word (OpenAI itself says ``stop`` after
    a call it forced, which the clients that know it accept as well)."""
    if called and reason in (None, "stop"):
        return "tool_calls"
    return reason if reason in _FINISH else "stop"


def completion(ident: str, created: int, model: str, reply: Response) -> dict[str, Any]:
    """The whole reply; ``content`` is null when the model only called tools, as OpenAI's is."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_calls:
        message["content"] = reply.text or None
        message["tool_calls"] = [call.to_openai() for call in reply.tool_calls]
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(reply.finish_reason, bool(reply.tool_calls)),
            }
        ],
        "usage": usage(reply.usage, reply.record),
    }


def tool_call_delta(index: int, call: ToolCall) -> dict[str, Any]:
    """A streamed tool call in one piece: OpenAI's chunk form (``index``, then the id, type and
    name the first piece of a call carries, and its arguments), which clients append by index."""
    return {"tool_calls": [{"index": index, **call.to_openai()}]}


def chunk(
    ident: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    reason: str | None = None,
    *,
    include_usage: bool,
    used: Usage | None = None,
    record: CallRecord | None = None,
) -> dict[str, Any]:
    """One chunk; with ``include_usage`` it has a ``usage`` field: null, or ``used`` (vLLM's
    ``continuous_usage_stats`` puts one in every chunk; the last, with the call's ``record``,
    has fmgate's extension as the usage chunk does)."""
    data: dict[str, Any] = {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
    }
    if include_usage:
        data["usage"] = usage(used, record) if used is not None else None
    return data


def usage_chunk(
    ident: str, created: int, model: str, used: Usage, record: CallRecord | None = None
) -> dict[str, Any]:
    """The last chunk ``include_usage`` asks for: no choices, the whole request's usage (with
    fmgate's extension, from the call's ``record``)."""
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(used, record),
    }


def embeddings(
    model: str, vectors: list[list[float]], used: Usage, b64: bool, record: CallRecord
) -> dict[str, Any]:
    tokens = used.input_tokens
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _b64(v) if b64 else v}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "fmgate": extension(record)},
    }


def _b64(vector: list[float]) -> str:
    """float32, little-endian, base64: what the openai SDK decodes by default."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def model_object(
    name: str, created: int, access: Access | None = None, distribution: str | None = None
) -> dict[str, Any]:
    """OpenAI's model object; with the model's ``access``, vLLM's ``max_model_len`` (its
    context window) and fmgate's ``fmgate`` facts, which OpenAI's SDK keeps as extra fields."""
    data: dict[str, Any] = {"id": name, "object": "model", "created": created, "owned_by": "fmgate"}
    if access is not None:
        data["max_model_len"] = access.context_window
        data["fmgate"] = model_facts(access, distribution)
    return data
