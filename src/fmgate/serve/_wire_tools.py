"""OpenAI's tool use and structured output on the wire, server side: ``tools``, ``tool_choice``,
``response_format``, the assistant messages' ``tool_calls`` and the ``tool`` messages answering
them, read and checked into the values ``Model.generate`` takes (``Tool``, ``ToolCall``,
``OutputSpec``).

The shapes follow OpenAI's Chat Completions reference; an error names the field at fault as
OpenAI's do (``tools[0].function``). Whether the served model can honour them is the Model's
check (``UnsupportedFeatureError``), made when the call is prepared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import InvalidRequestError
from .._tools import (
    TOOL_CHOICES,
    OutputSpec,
    Tool,
    ToolCall,
    check_tool_choice,
    to_output,
    to_tool_call,
    to_tools,
)
from ._errors import invalid, unrecognized

_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})
_SCHEMA_KEYS = frozenset({"name", "description", "schema", "strict"})
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# {"type": "json_object"}: any JSON object will do.
JSON_OBJECT = OutputSpec("json_object", {"type": "object"})
_CHOICE_FORMS = (
    'tool_choice must be "none", "auto", "required" or '
    '{"type": "function", "function": {"name": ...}}.'
)


def read_tools(raw: Any) -> tuple[Tool, ...]:
    """``tools``: function tools only (``{"type": "function", "function": {...}}``)."""
    if raw is None or raw == []:
        return ()
    if not isinstance(raw, list):
        raise invalid("tools must be an array of function tools.", "tools")
    for i, tool in enumerate(raw):
        _check_tool(tool, f"tools[{i}]")
    try:
        return to_tools(raw)
    except InvalidRequestError as exc:  # a bad name, two tools of one name, parameters not a dict
        raise invalid(str(exc), "tools") from None


def _check_tool(tool: Any, at: str) -> None:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise invalid(
            f'{at}: only function tools are supported: {{"type": "function", "function": '
            '{"name", "description", "parameters"}}.',
            f"{at}.type",
        )
    for key in tool:
        if key not in ("type", "function"):
            raise unrecognized(f"{at}.{key}")
    function = tool.get("function")
    if not isinstance(function, dict):
        raise invalid(f"Missing required parameter: '{at}.function'.", f"{at}.function")
    for key in function:
        if key not in _FUNCTION_KEYS:
            raise unrecognized(f"{at}.function.{key}")
    _check_strict(function, f"{at}.function.strict")


def read_tool_choice(raw: Any, tools: Sequence[Tool]) -> str | None:
    """``tool_choice``: a mode, or the function the model must call. Without tools, ``none`` and
    ``auto`` mean what leaving it out means, and are accepted as such."""
    if raw is None:
        return None
    if isinstance(raw, dict):
        function = raw.get("function")
        if (
            set(raw) != {"type", "function"}
            or raw["type"] != "function"
            or not isinstance(function, dict)
            or set(function) != {"name"}
        ):
            raise invalid(_CHOICE_FORMS, "tool_choice")
    elif raw not in TOOL_CHOICES:
        raise invalid(_CHOICE_FORMS, "tool_choice")
    if not tools and raw in ("none", "auto"):
        return None
    if not tools:
        raise invalid(f"tool_choice {raw!r} needs tools to choose from: send tools.", "tool_choice")
    try:
        return check_tool_choice(raw, tools)
    except InvalidRequestError as exc:  # names no tool sent
        raise invalid(str(exc), "tool_choice") from None


def read_response_format(raw: Any) -> OutputSpec | None:
    """``response_format``: text (nothing asked), any JSON object, or a JSON schema."""
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind in ("text", "json_object") and len(raw) == 1:
        return None if kind == "text" else JSON_OBJECT
    if kind != "json_schema":
        raise invalid(
            'response_format must be {"type": "text"}, {"type": "json_object"} or {"type": '
            '"json_schema", "json_schema": {"name", "schema", "strict"}}.',
            "response_format",
        )
    at = "response_format.json_schema"
    inner = raw.get("json_schema")
    if not isinstance(inner, dict):
        raise invalid(f"Missing required parameter: '{at}'.", at)
    for key in raw:
        if key not in ("type", "json_schema"):
            raise unrecognized(f"response_format.{key}")
    for key in inner:
        if key not in _SCHEMA_KEYS:
            raise unrecognized(f"{at}.{key}")
    if not isinstance(inner.get("name"), str) or not _NAME.match(inner["name"]):
        raise invalid(f"{at}.name must be 1 to 64 letters, digits, '_' or '-'.", f"{at}.name")
    if not isinstance(inner.get("schema"), dict) or not inner["schema"]:
        raise invalid(f"{at}.schema must be a JSON schema (an object).", f"{at}.schema")
    _check_strict(inner, f"{at}.strict")
    try:
        return to_output(raw)
    except InvalidRequestError as exc:  # not a valid JSON schema
        raise invalid(str(exc), f"{at}.schema") from None


def _check_strict(holder: Mapping[str, Any], at: str) -> None:
    """``strict`` asks for the schema to be kept exactly: fmgate validates every structured reply
    against its schema whatever it says, and the backend asks its provider for strict mode where
    the schema allows it."""
    if holder.get("strict") is not None and not isinstance(holder["strict"], bool):
        raise invalid(f"{at} must be a boolean.", at)


def read_tool_calls(raw: Any, where: str) -> tuple[ToolCall, ...]:
    """An assistant message's ``tool_calls``, with their arguments (a JSON object as text)."""
    if not isinstance(raw, list):
        raise invalid(f"{where}.tool_calls must be an array.", f"{where}.tool_calls")
    calls = []
    for j, call in enumerate(raw):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(function, dict)
            or call.get("type", "function") != "function"
            or not isinstance(function.get("arguments"), str)
        ):
            raise invalid(
                f'{at} must be {{"id", "type": "function", "function": {{"name", "arguments"}}}} '
                "with the arguments as a string of JSON.",
                at,
            )
        try:
            calls.append(to_tool_call(call, j))
        except InvalidRequestError as exc:  # no id or name; arguments not a JSON object
            raise invalid(f"{at}: {exc}", at) from None
    return tuple(calls)


def answer_calls(messages: Sequence[dict[str, Any]]) -> None:
    """Each ``tool`` message must answer a call of the assistant message before it (OpenAI's
    rule; Anthropic's too). It takes that call's tool name, which some providers need."""
    calls: dict[str, str] = {}
    for i, message in enumerate(messages):
        if message["role"] != "tool":
            calls = {c.id: c.name for c in message.get("tool_calls", ())}
            continue
        where = f"messages[{i}]"
        if not calls:
            raise invalid(
                f"{where}: a message with role 'tool' must answer a tool call of the assistant "
                "message before it ('tool_calls').",
                f"{where}.role",
            )
        call_id = message["tool_call_id"]
        if not isinstance(call_id, str) or call_id not in calls:
            raise invalid(
                f"{where}.tool_call_id must be the id of the tool call it answers, one of the "
                f"assistant message's before it: {', '.join(map(repr, calls))}.",
                f"{where}.tool_call_id",
            )
        message["name"] = calls[call_id]
