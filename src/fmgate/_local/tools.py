"""Tool calls on local chat models: how a model is shown its tools, and how its calls are read.

A chat template shows the tools: ``apply_chat_template(messages, tools=[...])`` with each tool in
OpenAI's function form, the assistant's earlier calls as ``tool_calls`` (arguments as a dict) and
each result as a ``tool`` message. Whether a template can show them is found once per model by
rendering a probe conversation (:func:`read_template`): a template that ignores ``tools`` drops
the probe's names. The model answers in its family's format, which the template's text names:

- **Hermes** (Qwen 2/2.5/3, Hermes 2/3, fmgate's tiny tool models):
  ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``, one block per call, text
  around them allowed. SmolLM2's own format, ``<tool_call>[{"name": ..., "arguments": ...},
  ...]</tool_call>`` (a list in one block, as its Ollama template asks), is read too.
- **Llama 3.x** (3.1, 3.2, 3.3): the whole reply is ``{"name": ..., "parameters": {...}}``
  (several joined by ``;``, or a list, are read too).

A ChatML template (``<|im_start|>``) without tool support, as SmolLM2-135M-Instruct's (its GGUF
carries a plain ChatML template, no tools), is rendered with :data:`HERMES_TEMPLATE`, fmgate's
Hermes-format template, instead. Any other template without tool support cannot take tools: the
request is refused with :class:`~fmgate.UnsupportedFeatureError`, as is a template that shows
tools in a format fmgate cannot read back. Calls get the ids ``call_<n>``, numbered on from the
calls already in the conversation so that each result answers one call. This module is text
only (no torch): the grammar that forces a call's shape is built from
:meth:`ToolFormat.grammar` in :mod:`fmgate._local.grammar`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .._errors import UnsupportedFeatureError
from .._tools import Tool, ToolCall, parse_arguments
from .._types import ChatRequest, Completion, Message

if TYPE_CHECKING:
    from .loading import LoadedModel

__all__ = [
    "HERMES",
    "HERMES_TEMPLATE",
    "LLAMA3",
    "TAGS",
    "Plan",
    "ToolFormat",
    "ToolTemplate",
    "chat_messages",
    "parse_json_calls",
    "parse_tagged",
    "plan",
    "read_template",
    "with_calls",
]

Found = list[tuple[str, Any]]  # (name, arguments) per call, in order
Parse = Callable[[str], tuple[str, Found]]

# fmgate's Hermes-format ChatML template: Qwen 2.5's layout (tools listed in the system turn,
# calls in <tool_call> blocks, results in <tool_response> blocks of a user turn), written here.
HERMES_TEMPLATE = """\
{%- set system = messages[0].content if messages and messages[0].role == 'system' else '' %}
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if system %}{{- system + '\n\n' }}{%- endif %}
    {{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' }}
    {{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' }}
    {%- for tool in tools %}{{- '\n' + tool | tojson }}{%- endfor %}
    {{- '\n</tools>\n\nFor each function call, return a json object with function name and ' }}
    {{- 'arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n' }}
    {{- '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' }}
{%- elif system %}
    {{- '<|im_start|>system\n' + system + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'system' and loop.first %}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\n' + (message.content or '') }}
        {%- for call in message.tool_calls or [] %}
            {%- set fn = call.function if call.function is defined else call %}
            {%- if message.content or not loop.first %}{{- '\n' }}{%- endif %}
            {{- '<tool_call>\n{"name": ' + fn.name | tojson + ', "arguments": ' }}
            {%- if fn.arguments is string %}{{- fn.arguments }}
            {%- else %}{{- fn.arguments | tojson }}{%- endif %}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
"""


# -- formats ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolFormat:
    """A family's tool-call format: how its calls are read, and the grammar that writes them.

    ``trigger`` starts a call inside free text (None: a call is the whole reply, so a stream
    with tools holds its text back until the end); ``key`` names the arguments in a call's JSON;
    ``begin`` and ``end`` are the pieces around a call's JSON, ``separator`` what goes between
    two calls.
    """

    name: str
    key: str
    trigger: str | None
    parse: Parse
    begin: tuple[str, ...] = ()
    end: tuple[str, ...] = ()
    separator: str = ""

    def grammar(
        self,
        tools: Sequence[Tool],
        *,
        many: bool,
        options: Mapping[str, Any],
        specials: Container[str] = (),
    ) -> str:
        """Lark rules (for llguidance) whose ``calls`` rule is one call, or one or more when
        ``many`` and the format separates calls (Llama 3 writes one), of ``tools`` with
        arguments valid against their schemas. A piece in ``specials`` is one special token of
        the tokenizer, written as such (llguidance matches a special token only by its name,
        never by its text)."""
        body = json.dumps(call_schema(tools, self.key, options))
        sep = _lark([self.separator], specials)
        # a separator may close the last call too: a model that writes one after a block is not
        # thereby made to start another call
        calls = f"call ({sep} call)* {sep}?" if many and sep else f"call {sep}?" if sep else "call"
        begin, end = _lark(self.begin, specials), _lark(self.end, specials)
        return "\n".join(
            [
                f"calls: {calls}",
                "call: " + " ".join(p for p in (begin, "call_json", end) if p),
                f"call_json: %json {body}",
            ]
        )

    def lazy_grammar(
        self, tools: Sequence[Tool], *, options: Mapping[str, Any], specials: Container[str] = ()
    ) -> str | None:
        """Free text in which every call, once its trigger is written, must be well formed;
        None for a format whose calls have no trigger."""
        if self.trigger is None:
            return None
        assert self.begin[0] == self.trigger
        rest, end = _lark(self.begin[1:], specials), _lark(self.end, specials)
        body = json.dumps(call_schema(tools, self.key, options))
        if self.trigger in specials:  # a special token never appears in TEXT: no lazy match
            head = [f"call: TEXT {self.trigger} {rest} call_json {end}"]
        else:
            head = [
                f"trigger[lazy]: TEXT {_lark([self.trigger], specials)}",
                f"call: trigger {rest} call_json {end}",
            ]
        return "\n".join(
            [
                "%llguidance {}",
                "start: call* TEXT",
                "TEXT: /(.|\\n)*/",
                *head,
                f"call_json: %json {body}",
            ]
        )


def _lark(pieces: Sequence[str], specials: Container[str]) -> str:
    """Pieces of text as Lark: special tokens by name, other text quoted."""
    return " ".join(p if p in specials else json.dumps(p) for p in pieces if p)


def call_schema(tools: Sequence[Tool], key: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """One call's JSON: ``{"name": <a tool's name>, key: <that tool's arguments>}``. Each tool's
    ``$defs`` move to the root (prefixed by its index) so that its ``$ref``s still resolve."""
    choices, defs = [], {}
    for i, tool in enumerate(tools):
        arguments, found = _hoist(dict(tool.parameters), f"t{i}_")
        defs.update(found)
        choices.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.name}, key: arguments},
                "required": ["name", key],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = choices[0] if len(choices) == 1 else {"anyOf": choices}
    if defs:
        schema = {**schema, "$defs": defs}
    return {**schema, "x-guidance": dict(options)}


def _hoist(schema: dict[str, Any], prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``schema`` with its ``$defs``/``definitions`` lifted out and renamed ``prefix + name``, its
    refs rewritten to match (a ref to its root points at a copy of it among the definitions)."""
    local = {**schema.pop("definitions", {}), **schema.pop("$defs", {})}
    root = f"{prefix}root"
    recursive = False

    def fix(node: Any) -> Any:
        nonlocal recursive
        if isinstance(node, dict):
            out = {k: fix(v) for k, v in node.items()}
            ref = out.get("$ref")
            if ref == "#":
                out["$ref"], recursive = f"#/$defs/{root}", True
            elif isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
                out["$ref"] = "#/$defs/" + prefix + ref.split("/", 2)[2]
            return out
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    body = fix(schema)
    defs = {prefix + name: fix(value) for name, value in local.items()}
    if recursive:
        defs[root] = body
    return body, defs


# -- reading calls ---------------------------------------------------------------------------------

_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)


def parse_tagged(text: str) -> tuple[str, Found]:
    """Hermes blocks ``<tool_call>{...}</tool_call>`` (or SmolLM2's list in one block): the text
    around them, and each call. A block that is not a call is left in the text."""
    calls: Found = []
    kept: list[str] = []
    last = 0
    for match in _BLOCK.finditer(text):
        found = _calls(_json(match.group(1)), "arguments")
        if found is None:
            continue
        kept.append(text[last : match.start()])
        calls.extend(found)
        last = match.end()
    kept.append(text[last:])
    return "".join(kept).strip() if calls else text, calls


def parse_json_calls(text: str) -> tuple[str, Found]:
    """Llama 3.x: a reply that is a call's JSON ``{"name", "parameters"}``, a list of them, or
    several joined by ``;``. Any other reply is text."""
    body = text.strip()
    if body.startswith("<|python_tag|>"):
        body = body[len("<|python_tag|>") :].strip()
    value = _json(body)
    if value is None and ";" in body:
        parts = [_json(p) for p in body.split(";") if p.strip()]
        value = parts if all(p is not None for p in parts) else None
    found = _calls(value, "parameters")
    return ("", found) if found else (text, [])


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _calls(value: Any, key: str) -> Found | None:
    """Calls from a decoded JSON value: one call object or a list of them (None if not)."""
    items = value if isinstance(value, list) else [value]
    found: Found = []
    for item in items:
        if not isinstance(item, Mapping):
            return None
        item = item.get("function", item) if isinstance(item.get("function"), Mapping) else item
        name = item.get("name")
        arguments = item.get(key, item.get("arguments", item.get("parameters", {})))
        if not isinstance(name, str) or not isinstance(arguments, Mapping | str):
            return None
        found.append((name, arguments))
    return found or None


HERMES = ToolFormat(
    "hermes",
    "arguments",
    "<tool_call>",
    parse_tagged,
    begin=("<tool_call>", "\n"),
    end=("\n", "</tool_call>"),
    separator="\n",
)
TAGS = ("<tool_call>", "</tool_call>")  # the pieces a tokenizer may hold as special tokens
LLAMA3 = ToolFormat("llama3-json", "parameters", None, parse_json_calls)


def with_calls(completion: Completion, request: ChatRequest, form: ToolFormat | None) -> Completion:
    """The completion with the calls its text holds read out (``finish_reason`` "tool_calls",
    ids ``call_<n>`` numbered on from the conversation's), or as it was if it holds none (or
    no tools were offered: ``form`` None)."""
    if form is None:
        return completion
    text, found = form.parse(completion.text)
    if not found:
        return completion
    start = sum(len(m.tool_calls) for m in request.messages)
    calls = tuple(
        ToolCall(f"call_{start + i}", name, parse_arguments(arguments, name))
        for i, (name, arguments) in enumerate(found)
    )
    reason = "length" if completion.finish_reason == "length" else "tool_calls"
    return replace(completion, text=text, finish_reason=reason, tool_calls=calls)


# -- templates -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """How one request meets tools: the template that shows them (None: no tools in the
    conversation, the plain rendering) and the format calls are read in (None: none offered)."""

    shown: ToolTemplate | None = None
    form: ToolFormat | None = None

    def hold(self) -> tuple[str, ...] | None:
        """What a stream holds its text back at: a call's trigger; None: the whole reply."""
        if self.form is None:
            return ()
        return (self.form.trigger,) if self.form.trigger is not None else None

    def render(self, tokenizer: Any, request: ChatRequest) -> str:
        assert self.shown is not None
        offered = request.tools if self.form is not None else ()
        return render(tokenizer, request.messages, offered, self.shown.template)


def plan(loaded: LoadedModel, request: ChatRequest) -> Plan:
    """Tools are shown when offered (``tool_choice`` not ``none``); a template that can show
    them is needed also for earlier calls and results in the messages."""
    offered = bool(request.tools) and request.tool_choice != "none"
    if not (offered or any(m.tool_calls or m.role == "tool" for m in request.messages)):
        return Plan()
    shown = loaded.memo.get("tool-template")
    if shown is None:
        shown = loaded.memo["tool-template"] = read_template(loaded.tokenizer)
    form = shown.check(loaded.name)
    return Plan(shown, form if offered else None)


@dataclass(frozen=True, slots=True)
class ToolTemplate:
    """How a model is shown tools: its format and the template to render with (None: the
    model's own); or, with ``format`` None, ``why`` it cannot be."""

    format: ToolFormat | None
    template: str | None = None
    why: str = ""

    def check(self, model: str) -> ToolFormat:
        if self.format is None:
            raise UnsupportedFeatureError(
                f"{model} cannot take tools: {self.why}. Use a model whose chat template "
                "supports tools (Qwen 2.5, Llama 3.1+, Hermes, SmolLM2, ...).",
                feature="tools",
            )
        return self.format


_PROBE_TOOL = "fmgate_probe_tool"
_PROBE_RESULT = "fmgate probe result"


def read_template(tokenizer: Any) -> ToolTemplate:
    """Whether and how the model's chat template shows tools (see the module's docstring)."""
    source = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    if not source:
        return ToolTemplate(None, why="it has no chat template to show tools with")
    if _shows_tools(tokenizer, None):
        if "<tool_call>" in source:
            return ToolTemplate(HERMES)
        if "<|start_header_id|>" in source and "parameters" in source:
            return ToolTemplate(LLAMA3)
        return ToolTemplate(
            None,
            why="its chat template shows tools, but in a format fmgate cannot read calls back "
            "from (it reads Hermes/Qwen <tool_call> blocks and Llama 3 JSON)",
        )
    if "<|im_start|>" in source and _shows_tools(tokenizer, HERMES_TEMPLATE):
        return ToolTemplate(HERMES, HERMES_TEMPLATE)
    return ToolTemplate(
        None,
        why="its chat template ignores tools, and fmgate has a fallback template only for "
        "ChatML (<|im_start|>) models",
    )


def _shows_tools(tokenizer: Any, template: str | None) -> bool:
    """Render a probe conversation; True if the tool, the call and the result all show."""
    call = ToolCall("call_0", _PROBE_TOOL, {"x": 1})
    messages = (
        Message("user", "probe"),
        Message("assistant", "", (call,)),
        Message("tool", _PROBE_RESULT, tool_call_id="call_0", name=_PROBE_TOOL),
    )
    tool = Tool(_PROBE_TOOL, "probe", {"type": "object", "properties": {"x": {"type": "integer"}}})
    try:
        text = render(tokenizer, messages, (tool,), template)
    except Exception:  # a template that cannot take the probe's roles or fields shows no tools
        return False
    return text.count(_PROBE_TOOL) >= 2 and _PROBE_RESULT in text


def render(
    tokenizer: Any, messages: Sequence[Message], tools: Sequence[Tool], template: str | None
) -> str:
    """The prompt with ``tools`` shown (none: not shown) and calls and results in place."""
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": True}
    if tools:
        kwargs["tools"] = [t.to_openai() for t in tools]
    if template is not None:
        kwargs["chat_template"] = template
    text: str = tokenizer.apply_chat_template(chat_messages(messages), **kwargs)
    return text


def chat_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages in the shape chat templates read (transformers' documented tool-use form):
    calls as ``{"id", "type": "function", "function": {"name", "arguments": dict}}`` and
    results as ``{"role": "tool", "content", "tool_call_id", "name"}``."""
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    out: list[dict[str, Any]] = []
    for m in messages:
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            item["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": dict(c.arguments)},
                }
                for c in m.tool_calls
            ]
        if m.role == "tool":
            item["tool_call_id"] = m.tool_call_id
            name = m.name or names.get(m.tool_call_id or "")
            if name:
                item["name"] = name
        out.append(item)
    return out
