"""Tools and structured output on Anthropic's Messages API: the request's ``tools``,
``tool_choice``, ``output_config`` and message blocks, and the tool calls read back.

Wire format: https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use
(a tool is ``{"name", "description", "input_schema"}``; an assistant's calls are ``tool_use``
blocks; their results go back as ``tool_result`` blocks in one user message, before any text).

Structured output runs one of two ways, and :func:`output_mode` decides which:

- ``native``: ``output_config: {"format": {"type": "json_schema", "schema": ...}}``, Anthropic's
  constrained decoding (generally available from the Claude 4.5 models on; the schema goes
  through the SDK's ``transform_schema``, which moves the constraints the API refuses, such as
  ``minimum`` or ``maxLength``, into descriptions: fmgate still validates the reply against the
  schema as given).
- ``tool``: for the models documented without it (:data:`WITHOUT_NATIVE`), a forced tool whose
  ``input_schema`` is the schema; its input comes back as the reply's text, and no tool call.

The load-time setting ``structured_output`` (``auto``, the default; ``native``; ``tool``)
overrides the rule, e.g. for a gateway that serves Claude under other model names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anthropic

from .._errors import ConfigurationError, InvalidRequestError, UnsupportedFeatureError
from .._images import Image
from .._tools import OutputSpec, Tool, ToolCall
from .._types import ChatRequest, Message

OutputMode = Literal["native", "tool"]
OUTPUT_SETTINGS = ("auto", "native", "tool")

WITHOUT_NATIVE = re.compile(
    r"\bclaude-(?:instant|2|3|(?:opus|sonnet)-4(?:-[01])?(?:[-@]\d{8})?$)", re.IGNORECASE
)
"""Model ids without native structured output: Claude 2 and 3 (3.5, 3.7 included), and the first
Claude 4 models (Opus 4, Opus 4.1, Sonnet 4). Anthropic lists it as generally available for Claude
Sonnet 4.5, Opus 4.5, Haiku 4.5 and the models since
(https://platform.claude.com/docs/en/build-with-claude/structured-outputs). A closed list of
older models, so that a model released later gets the native path."""

_TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]")  # what a tool's name may not hold


class BadPayload(ValueError):
    """A 2xx body or event that does not have the documented shape."""


def check_output_setting(value: object) -> str:
    if value not in OUTPUT_SETTINGS:
        raise ConfigurationError(
            f"structured_output must be one of {', '.join(map(repr, OUTPUT_SETTINGS))}, "
            f"not {value!r}: 'auto' uses Anthropic's native structured output where the model "
            "has it and a forced tool elsewhere."
        )
    return str(value)


def output_mode(model: str, setting: str = "auto") -> OutputMode:
    """How structured output is asked of ``model``: ``native`` or a forced ``tool``."""
    if setting == "native":
        return "native"
    if setting == "tool":
        return "tool"
    return "tool" if WITHOUT_NATIVE.search(model) else "native"


# -- request ------------------------------------------------------------------------------------


def to_messages(messages: Sequence[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """The top-level system prompt, and the messages as Anthropic takes them.

    An assistant's tool calls become ``tool_use`` blocks after its text; consecutive ``tool``
    results become one user message of ``tool_result`` blocks, and a user message right after
    them joins it as text and image blocks (Anthropic wants the results first in that message).
    A user message with images is a list of text and ``image`` blocks, in its order.
    """
    system = [m.content for m in messages if m.role == "system"]
    chat: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        results = chat[-1]["content"] if chat and _holds_results(chat[-1]) else None
        if message.role == "tool":
            if results is None:
                chat.append({"role": "user", "content": [_tool_result(message)]})
            else:
                results.append(_tool_result(message))
        elif message.role == "user" and results is not None:
            results += _user_blocks(message)
        elif message.tool_calls:
            chat.append({"role": "assistant", "content": _calls_content(message)})
        elif message.parts:
            chat.append({"role": "user", "content": _user_blocks(message)})
        else:
            chat.append({"role": message.role, "content": message.content})
    return ("\n\n".join(system) if system else None), chat


def _user_blocks(message: Message) -> list[dict[str, Any]]:
    """A user message's content blocks, in its order: text, and images as base64 ``image``
    blocks (https://docs.anthropic.com/en/docs/build-with-claude/vision). Empty text is left
    out: Anthropic refuses empty text blocks."""
    if not message.parts:
        return [{"type": "text", "text": message.content}] if message.content else []
    return [_block(part) for part in message.parts if part]


def _block(part: str | Image) -> dict[str, Any]:
    if isinstance(part, Image):
        source = {"type": "base64", "media_type": part.media_type, "data": part.base64()}
        return {"type": "image", "source": source}
    return {"type": "text", "text": part}


def _holds_results(message: Mapping[str, Any]) -> bool:
    content = message["content"]
    return (
        message["role"] == "user"
        and isinstance(content, list)
        and any(block["type"] == "tool_result" for block in content)
    )


def _tool_result(message: Message) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    if message.content:  # optional in the API; an empty text block would be refused
        block["content"] = message.content
    return block


def _calls_content(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.content:  # Anthropic refuses empty text blocks
        blocks.append({"type": "text", "text": message.content})
    blocks += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)}
        for c in message.tool_calls
    ]
    return blocks


def tool_fields(
    request: ChatRequest, mode: OutputMode, extra: Mapping[str, Any]
) -> tuple[dict[str, Any], OutputTool | None]:
    """The body's ``tools``, ``tool_choice`` and ``output_config``, and the forced output tool
    when structured output runs through one. ``extra`` is the caller's backend-specific
    parameters (an ``output_config`` of theirs keeps its other keys)."""
    fields: dict[str, Any] = {}
    tools = [_tool(t) for t in request.tools]
    choice = _choice(request.tool_choice)
    output: OutputTool | None = None
    if request.output is not None and mode == "native":
        config = dict(extra.get("output_config") or {})
        config["format"] = {"type": "json_schema", "schema": native_schema(request.output)}
        fields["output_config"] = config
    elif request.output is not None and request.tool_choice in (None, "auto", "none"):
        # The model may answer this turn: its answer is the forced tool's input. A choice of
        # "required" or a tool's name makes it call that tool instead, so no answer is asked.
        _check_forcible(extra)
        output = OutputTool.of(request.output, {t.name for t in request.tools})
        tools.append(output.param)
        choice = {"type": "tool", "name": output.name, "disable_parallel_tool_use": True}
        if request.tools and request.tool_choice != "none":
            choice = {"type": "any"}  # a tool of the caller's, or the answer
    if tools:
        fields["tools"] = tools
    if choice is not None:
        fields["tool_choice"] = choice
    return fields, output


def _tool(tool: Tool) -> dict[str, Any]:
    param: dict[str, Any] = {"name": tool.name}
    if tool.description:
        param["description"] = tool.description
    param["input_schema"] = dict(tool.parameters)
    return param


def _choice(choice: str | None) -> dict[str, Any] | None:
    """fmgate's ``tool_choice`` in Anthropic's words: ``required`` is ``any``."""
    if choice is None:
        return None
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def native_schema(spec: OutputSpec) -> dict[str, Any]:
    """The schema as Anthropic's structured output takes it (the SDK's own transform); one the
    transform cannot read (a property without a type) goes as given, for the API to judge."""
    try:
        return anthropic.transform_schema(dict(spec.schema))
    except ValueError:
        return dict(spec.schema)


def _check_forcible(extra: Mapping[str, Any]) -> None:
    thinking = extra.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") not in (None, "disabled"):
        raise UnsupportedFeatureError(
            "This model gets structured output through a forced tool, which Anthropic refuses "
            "with extended thinking: drop anthropic_thinking=..., or use a model with native "
            "structured output (Claude 4.5 and later), or load with structured_output='native'.",
            feature="output",
        )


@dataclass(frozen=True, slots=True)
class OutputTool:
    """The forced tool that carries a structured answer: its input is the answer. A schema
    whose root is not an object (a tool's input must be one) is wrapped as ``{"value": ...}``."""

    name: str
    param: dict[str, Any] = field(compare=False)
    wrapped: bool = False

    @classmethod
    def of(cls, spec: OutputSpec, taken: Iterable[str]) -> OutputTool:
        name = _TOOL_NAME.sub("_", spec.name)[:64] or "output"
        if name in set(taken):
            name = f"{name[:57]}_output"
            if name in set(taken):
                raise InvalidRequestError(
                    f"A tool is named {name!r}, the name fmgate gives the structured output's "
                    "tool: rename that tool."
                )
        schema = dict(spec.schema)
        wrapped = schema.get("type") != "object" and "properties" not in schema
        if wrapped:
            defs = schema.pop("$defs", None)
            schema = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
            if defs is not None:
                schema["$defs"] = defs  # "#/$defs/..." references still resolve from the root
        description = (
            f"Give your final answer by calling this tool: its input is the {spec.name} asked for."
        )
        if isinstance(spec.schema.get("description"), str):
            description += " " + spec.schema["description"]
        param = {"name": name, "description": description, "input_schema": schema}
        return cls(name, param, wrapped)

    def text(self, arguments: Mapping[str, Any]) -> str:
        """The answer as JSON text, as a natively structured reply would be."""
        value = arguments.get("value", arguments) if self.wrapped else arguments
        return json.dumps(value, ensure_ascii=False)


# -- response -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Content:
    """What a message's content blocks add up to. ``answered``: the output tool was called (its
    input is ``text``), and no tool of the caller's."""

    text: str
    calls: tuple[ToolCall, ...] = ()
    answered: bool = False


def read_content(blocks: Any, output: OutputTool | None) -> Content:
    """The text and tool calls of a message's ``content``; blocks of other types (thinking,
    server tools) are skipped."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    answer: str | None = None
    for block in blocks:
        kind = block["type"]
        if kind == "text":
            texts.append(_str(block["text"], "text"))
        elif kind == "tool_use":
            call = _call(block["id"], block["name"], block["input"])
            if output is not None and call.name == output.name:
                answer = output.text(call.arguments)
            else:
                calls.append(call)
    if answer is not None and not calls:
        return Content(answer, (), answered=True)
    return Content("".join(texts), tuple(calls))


def _call(call_id: Any, name: Any, arguments: Any) -> ToolCall:
    if not isinstance(arguments, Mapping):
        raise BadPayload(f"the input of tool_use {name!r} is {arguments!r}, not an object")
    return ToolCall(_str(call_id, "tool_use.id"), _str(name, "tool_use.name"), dict(arguments))


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise BadPayload(f"{name} is {value!r}, not a string")
    return value


@dataclass(slots=True)
class _Block:
    id: str
    name: str
    start: Any
    pieces: list[str] = field(default_factory=list)


class StreamedBlocks:
    """Assembles a stream's content blocks: text passes through as it comes; ``tool_use``
    blocks are gathered from their ``input_json_delta`` pieces into whole calls at the end.

    With a forced output tool, its input is streamed as the text instead (whole, at its
    block's end, when the schema was wrapped), and other text is held back: it is the reply
    only if the model never answers through the tool, as :func:`read_content` decides.
    """

    __slots__ = ("_blocks", "_held", "_output", "answered")

    def __init__(self, output: OutputTool | None) -> None:
        self._output = output
        self._blocks: dict[int, _Block] = {}
        self._held: list[str] = []
        self.answered = False

    def start(self, index: int, block: Mapping[str, Any]) -> None:
        if block["type"] == "tool_use":
            call_id, name = _str(block["id"], "tool_use.id"), _str(block["name"], "tool_use.name")
            self._blocks[index] = _Block(call_id, name, block.get("input"))

    def delta(self, index: int, delta: Mapping[str, Any]) -> str:
        """The text to pass on now for one ``content_block_delta``."""
        kind = delta.get("type")
        if kind == "text_delta":
            text = _str(delta["text"], "delta.text")
            if self._output is None:
                return text
            self._held.append(text)
        elif kind == "input_json_delta" and index in self._blocks:  # else a server tool's
            block = self._blocks[index]
            piece = _str(delta["partial_json"], "delta.partial_json")
            block.pieces.append(piece)
            if self._streams_answer(block):
                self.answered = True
                return piece
        return ""

    def stop(self, index: int) -> str:
        """The text to pass on at a block's end: a wrapped answer, whole."""
        block = self._blocks.get(index)
        output = self._output
        if block is None or output is None or block.name != output.name or not output.wrapped:
            return ""
        self.answered = True
        return output.text(_arguments(block))

    def finish(self) -> tuple[str, tuple[ToolCall, ...]]:
        """The text still to pass on, and the caller's tool calls, once the stream has ended."""
        output = self._output
        calls = tuple(
            _call(b.id, b.name, _arguments(b))
            for b in self._blocks.values()
            if output is None or b.name != output.name
        )
        if calls:
            self.answered = False  # the model called the caller's tools: this is no answer
        held = "" if self.answered else "".join(self._held)
        return held, calls

    def _streams_answer(self, block: _Block) -> bool:
        output = self._output
        return output is not None and block.name == output.name and not output.wrapped


def _arguments(block: _Block) -> Any:
    """A tool_use block's input: its JSON pieces joined (none for a call without arguments), or
    the input its start carried when no piece came."""
    text = "".join(block.pieces)
    if not text.strip():
        return block.start if isinstance(block.start, Mapping) and not block.pieces else {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadPayload(
            f"the input streamed for tool_use {block.name!r} is not JSON: {text[:200]!r}"
        ) from exc
