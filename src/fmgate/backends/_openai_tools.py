"""Tools and structured output on the OpenAI Chat Completions wire: the request's ``tools``,
``tool_choice``, ``response_format`` and tool messages, and the tool calls read back, whole or
assembled from a stream's pieces; and the messages, whose images go as ``image_url`` content
parts holding data URLs (https://platform.openai.com/docs/guides/images-vision).

Wire format: https://platform.openai.com/docs/guides/function-calling (a tool is
``{"type": "function", "function": {"name", "description", "parameters", "strict"}}``; the
assistant's calls come back as ``message.tool_calls``, their arguments a JSON string; results go
back as ``{"role": "tool", "tool_call_id", "content"}``) and
https://platform.openai.com/docs/guides/structured-outputs (``response_format`` of type
``json_schema``). vLLM, Ollama, llama.cpp, Groq, Mistral, Together and Gemini's OpenAI endpoint
document the same shapes.

A stream sends each call in pieces under ``delta.tool_calls[i]``: ``index`` says which call,
the first piece carries ``id`` and ``function.name``, the others ``function.arguments``
fragments. Servers that send a whole call per chunk without an ``index`` are read by ``id``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import MalformedResponseError
from .._images import Image
from .._secrets import redact
from .._tools import OutputSpec, Tool, ToolCall, parse_arguments
from .._types import ChatRequest, Message

_NAME = re.compile(r"[^A-Za-z0-9_-]")  # what a response_format name may not hold (OpenAI)


class BadPayload(ValueError):
    """A tool call in a 2xx body or chunk that does not have the documented shape."""


# -- request -------------------------------------------------------------------------------------


def to_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The messages as OpenAI takes them: an assistant's calls in ``tool_calls`` (its content
    null when it said nothing), a tool result as a ``tool`` message answering its call's id, a
    user message with images as a content array."""
    return [_message(m) for m in messages]


def _message(message: Message) -> dict[str, Any]:
    if message.parts:
        return {"role": message.role, "content": [_part(p) for p in message.parts]}
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [call.to_openai() for call in message.tool_calls],
        }
    return {"role": message.role, "content": message.content}


def _part(part: str | Image) -> dict[str, Any]:
    """A content part (https://platform.openai.com/docs/guides/images-vision): text, or the
    image inline as a data URL, which every compatible server takes (fmgate never sends URLs)."""
    if isinstance(part, Image):
        return {"type": "image_url", "image_url": {"url": part.data_url()}}
    return {"type": "text", "text": part}


def tool_fields(request: ChatRequest, *, strict_tools: bool = True) -> dict[str, Any]:
    """The body's ``tools``, ``tool_choice`` and ``response_format`` for ``request`` (only those
    it asks for). ``strict_tools``: mark a tool ``strict`` where its parameters fit strict mode."""
    fields: dict[str, Any] = {}
    if request.tools:
        fields["tools"] = [_tool(t, strict_tools) for t in request.tools]
    if request.tool_choice is not None:
        fields["tool_choice"] = _choice(request.tool_choice)
    if request.output is not None:
        fields["response_format"] = response_format(request.output)
    return fields


def _tool(tool: Tool, strict: bool) -> dict[str, Any]:
    """OpenAI's function tool; ``strict: true`` only where the schema allows it (every property
    required, no others), since strict mode refuses any other schema with a 400."""
    param = tool.to_openai()
    if strict and OutputSpec(tool.name, tool.parameters).strict:
        param["function"]["strict"] = True
    return param


def _choice(choice: str) -> str | dict[str, Any]:
    if choice in ("auto", "required", "none"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def response_format(spec: OutputSpec) -> dict[str, Any]:
    """``{"type": "json_schema", "json_schema": {...}}``: strict (the provider constrains the
    reply to the schema) where the schema fits strict mode, else a schema the model is asked to
    follow, which fmgate validates all the same."""
    name = _NAME.sub("_", spec.name)[:64] or "output"
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": dict(spec.schema), "strict": spec.strict},
    }


# -- response ------------------------------------------------------------------------------------


def read_calls(raw: Any, provider: str) -> tuple[ToolCall, ...]:
    """A message's ``tool_calls`` (absent or null: none)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BadPayload(f"message.tool_calls is a {type(raw).__name__}, not a list")
    return tuple(_call(i, item, provider) for i, item in enumerate(raw))


def _call(index: int, item: Any, provider: str) -> ToolCall:
    function = item["function"]
    name = function["name"]
    if not isinstance(name, str) or not name:
        raise BadPayload(f"tool_calls[{index}].function.name is {name!r}")
    return ToolCall(
        _call_id(item.get("id"), index),
        name,
        arguments(function.get("arguments"), name, provider),
    )


def _call_id(raw: Any, index: int) -> str:
    """The provider's call id; ``call_<n>`` for a server that gives none (the tool result must
    answer some id, and the same one goes back with the call)."""
    if raw is None or raw == "":
        return f"call_{index}"
    if not isinstance(raw, str):
        raise BadPayload(f"a tool call id {raw!r} that is not a string")
    return raw


def arguments(raw: Any, name: str, provider: str) -> dict[str, Any]:
    """A call's arguments parsed; arguments that are not a JSON object are the model's mistake,
    reported with the text it wrote."""
    try:
        return parse_arguments(raw, name)
    except MalformedResponseError as exc:
        raise MalformedResponseError(f"{provider}: {redact(str(exc))}", provider=provider) from exc


# -- streams -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pieces:
    id: str | None = None
    name: str | None = None
    text: list[str] = field(default_factory=list)
    whole: Mapping[str, Any] | None = None  # arguments sent as an object (some servers do)


class StreamedCalls:
    """Gathers a stream's ``delta.tool_calls`` pieces into whole calls, in index order."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, _Pieces] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def take(self, raw: Any) -> None:
        """One chunk's ``delta.tool_calls`` (absent or null: nothing)."""
        if raw is None:
            return
        if not isinstance(raw, list):
            raise BadPayload(f"delta.tool_calls is a {type(raw).__name__}, not a list")
        for piece in raw:
            self._take(piece)

    def _take(self, piece: Mapping[str, Any]) -> None:
        slot = self._slot(piece.get("index"), piece.get("id"))
        if piece.get("id"):
            slot.id = _call_id(piece["id"], 0)
        function = piece.get("function") or {}
        name = function.get("name")
        if name and slot.name is None:  # sent once, with the call's first piece
            if not isinstance(name, str):
                raise BadPayload(f"a streamed tool call's name {name!r} is not a string")
            slot.name = name
        fragment = function.get("arguments")
        if isinstance(fragment, Mapping):
            slot.whole = fragment
        elif fragment is not None:
            if not isinstance(fragment, str):
                raise BadPayload(f"arguments {fragment!r} that are neither text nor an object")
            slot.text.append(fragment)

    def _slot(self, index: Any, call_id: Any) -> _Pieces:
        if isinstance(index, int) and not isinstance(index, bool):
            return self._calls.setdefault(index, _Pieces())
        if index is not None:
            raise BadPayload(f"a tool call index {index!r} that is not an int")
        # No index: a piece with a new id starts a call, and one without continues the last.
        known = next((k for k, v in self._calls.items() if call_id and v.id == call_id), None)
        if known is not None:
            return self._calls[known]
        if self._calls and not call_id:
            return self._calls[max(self._calls)]
        return self._calls.setdefault(max(self._calls, default=-1) + 1, _Pieces())

    def finish(self, provider: str) -> tuple[ToolCall, ...]:
        """The whole calls, once the stream has ended."""
        calls = []
        for n, (index, pieces) in enumerate(sorted(self._calls.items())):
            if pieces.name is None:
                raise MalformedResponseError(
                    f"{provider}: the stream sent tool call {index} without a function name.",
                    provider=provider,
                )
            raw = pieces.whole if pieces.whole is not None else "".join(pieces.text)
            call_id = pieces.id or f"call_{n}"
            calls.append(ToolCall(call_id, pieces.name, arguments(raw, pieces.name, provider)))
        return tuple(calls)


def finish_reason(reason: str | None, calls: bool, refused: bool) -> str | None:
    """``tool_calls`` when the model stopped to call tools (some servers say ``stop``), and
    ``content_filter`` for a refusal (as the Anthropic backend says it), else the server's."""
    if calls and reason in (None, "stop"):
        return "tool_calls"
    if refused and reason in (None, "stop"):
        return "content_filter"
    return reason
