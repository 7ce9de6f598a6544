"""Tools a model may call, the calls it makes, and the structured output it must return.

A tool is a Python callable (its JSON schema read from the signature, type hints and docstring,
as Pydantic AI and ``llm`` do) or a JSON-schema dict in OpenAI's function form; :func:`to_tools`
turns either into :class:`Tool`. A structured output is a Pydantic model class or a JSON-schema
dict; :func:`to_output` turns either into :class:`OutputSpec`, which validates the model's text.
Pydantic and jsonschema load here, on first use, never on ``import fmgate``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import InvalidRequestError, MalformedResponseError, OutputValidationError, shown

__all__ = [
    "TOOL_CHOICES",
    "OutputSpec",
    "Tool",
    "ToolCall",
    "check_tool_choice",
    "parse_arguments",
    "to_output",
    "to_tool_call",
    "to_tools",
]

TOOL_CHOICES = ("auto", "required", "none")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI, Anthropic and Gemini all accept


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its name, what it does, and its arguments' JSON schema.

    ``func`` is the Python callable it came from (run by ``run_tools=True``), or None for a tool
    given as a schema only.
    """

    name: str
    description: str | None
    parameters: Mapping[str, Any]
    func: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's ``{"type": "function", "function": {...}}`` form (also vLLM's, Ollama's)."""
        function: dict[str, Any] = {"name": self.name, "parameters": dict(self.parameters)}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asked for: ``arguments`` parsed from the JSON it wrote.

    ``id`` is the provider's call id (a local model's calls get ``call_<n>``); a tool result
    answers it with ``{"role": "tool", "tool_call_id": id, "content": ...}``.
    """

    id: str
    name: str
    arguments: Mapping[str, Any]

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's assistant-message form: arguments as a JSON string."""
        arguments = json.dumps(self.arguments, ensure_ascii=False)
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": arguments},
        }


def to_tools(tools: object) -> tuple[Tool, ...]:
    """``tools=`` as :class:`Tool` values: callables, OpenAI function dicts, or Tool values."""
    if tools is None:
        return ()
    if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Sequence):
        raise InvalidRequestError(
            f"tools must be a list of functions or tool schemas, not {shown(tools)}."
        )
    out = tuple(_tool(i, t) for i, t in enumerate(tools))
    names = [t.name for t in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidRequestError(f"Two tools are named {twice[0]!r}: tool names must be unique.")
    return out


def check_tool_choice(choice: object, tools: Sequence[Tool]) -> str | None:
    """``tool_choice``: ``auto``, ``required``, ``none``, or the name of one of ``tools``.
    OpenAI's ``{"type": "function", "function": {"name": ...}}`` form is read as the name."""
    if choice is None:
        return None
    if isinstance(choice, Mapping):
        function = choice.get("function")
        choice = function.get("name") if isinstance(function, Mapping) else choice.get("name")
    if not isinstance(choice, str):
        raise InvalidRequestError(
            f"tool_choice must be 'auto', 'required', 'none' or a tool's name, not {shown(choice)}."
        )
    if not tools:
        raise InvalidRequestError(f"tool_choice={choice!r} needs tools=[...] to choose from.")
    if choice not in TOOL_CHOICES and choice not in {t.name for t in tools}:
        names = ", ".join(repr(t.name) for t in tools)
        raise InvalidRequestError(
            f"tool_choice={choice!r} names no tool: choose 'auto', 'required', 'none' or one of "
            f"{names}."
        )
    return choice


def _tool(index: int, raw: object) -> Tool:
    if isinstance(raw, Tool):
        return raw
    if isinstance(raw, Mapping):
        return _tool_from_schema(index, raw)
    if callable(raw):
        return _tool_from_function(raw)
    raise InvalidRequestError(
        f"Tool {index} is {shown(raw)}: give a function, or a dict "
        '{"type": "function", "function": {"name", "description", "parameters"}}.'
    )


def _tool_from_schema(index: int, raw: Mapping[str, Any]) -> Tool:
    """OpenAI's ``{"type": "function", "function": {...}}``, or the inner ``{"name", ...}``."""
    function = raw.get("function", raw) if raw.get("type", "function") == "function" else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise InvalidRequestError(
            f"Tool {index} is not a function schema: give "
            '{"type": "function", "function": {"name", "description", "parameters"}}.'
        )
    name = _check_name(function["name"])
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, Mapping) or parameters.get("type", "object") != "object":
        raise InvalidRequestError(
            f"Tool {name!r}: parameters must be a JSON schema of type object, "
            f"not {shown(parameters)}."
        )
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequestError(f"Tool {name!r}: description must be a str.")
    return Tool(name, description, dict(parameters))


def _tool_from_function(func: Callable[..., Any]) -> Tool:
    """The schema of ``func``'s arguments from its signature and type hints (Pydantic reads
    them), and the descriptions from its docstring (Google, NumPy or Sphinx style)."""
    try:
        from pydantic import TypeAdapter
    except ImportError as exc:  # a core dependency: only a broken install lacks it
        raise InvalidRequestError(
            "Tools from functions need pydantic: pip install pydantic"
        ) from exc
    name = _check_name(getattr(func, "__name__", ""))
    summary, documented = _docstring(inspect.getdoc(func) or "")
    try:
        schema: dict[str, Any] = TypeAdapter(func).json_schema()  # type: ignore[arg-type]
    except Exception as exc:  # pydantic's errors for a hint it cannot express
        raise InvalidRequestError(
            f"Tool {name!r}: fmgate cannot build a schema from its signature ({exc}). Give its "
            "arguments type hints pydantic knows, or pass the schema as a dict."
        ) from exc
    schema.pop("title", None)
    for arg, prop in schema.get("properties", {}).items():
        prop.pop("title", None)
        if arg in documented and "description" not in prop:
            prop["description"] = documented[arg]
    schema.setdefault("properties", {})
    return Tool(name, summary or None, schema, func)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequestError(
            f"A tool's name must be 1 to 64 letters, digits, '_' or '-', not {shown(name)} "
            "(a lambda has no usable name: use a def)."
        )
    return name


_ARG_LINE = re.compile(r"^\s*(?::param\s+)?\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The docstring's first paragraph, and each argument's description from an ``Args:`` /
    ``Parameters`` section or ``:param x:`` lines."""
    paragraphs = doc.strip().split("\n\n")
    summary = " ".join(paragraphs[0].split()) if paragraphs and paragraphs[0] else ""
    if re.match(r"^(Args|Arguments|Parameters|:param)", summary):
        summary = ""
    args: dict[str, str] = {}
    in_args = False
    last: str | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        if re.match(r"^(Args|Arguments|Parameters|Keyword Args):?$", stripped):
            in_args, last = True, None
            continue
        if re.match(r"^-{3,}$", stripped):
            continue
        if re.match(r"^(Returns|Raises|Yields|Examples?|Notes?):?$", stripped):
            in_args, last = False, None
            continue
        match = _ARG_LINE.match(line)
        if match and (in_args or stripped.startswith(":param")):
            last = match.group(1)
            args[last] = match.group(2).strip()
        elif in_args and last and stripped and line.startswith((" " * 8, "\t\t")):
            args[last] += " " + stripped
    return summary, args


def parse_arguments(raw: object, name: str) -> dict[str, Any]:
    """A tool call's arguments: a JSON object (as text, or already parsed)."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        raise MalformedResponseError(f"The call to tool {name!r} has arguments {shown(raw)}.")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise MalformedResponseError(
            f"The model called tool {name!r} with arguments that are not JSON: {raw[:200]!r}."
        ) from exc
    if not isinstance(value, dict):
        raise MalformedResponseError(
            f"The model called tool {name!r} with arguments that are not an object: {raw[:200]!r}."
        )
    return value


def to_tool_call(raw: object, index: int = 0) -> ToolCall:
    """A ToolCall from OpenAI's message form ``{"id", "type", "function": {"name",
    "arguments"}}``, the flat ``{"id", "name", "arguments"}``, or a ToolCall."""
    if isinstance(raw, ToolCall):
        return raw
    if not isinstance(raw, Mapping):
        raise InvalidRequestError(f"Tool call {index} must be a dict, not {shown(raw)}.")
    function = raw.get("function", raw)
    name = function.get("name") if isinstance(function, Mapping) else None
    call_id = raw.get("id")
    if not isinstance(name, str) or not isinstance(call_id, str) or not call_id:
        raise InvalidRequestError(
            f"Tool call {index} needs an 'id' and a function 'name' (OpenAI's form: "
            '{"id", "type": "function", "function": {"name", "arguments"}}).'
        )
    try:
        arguments = parse_arguments(function.get("arguments"), name)
    except MalformedResponseError as exc:
        raise InvalidRequestError(f"Tool call {index}: {exc}") from None
    return ToolCall(call_id, name, arguments)


# -- structured output ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """What the model's reply must be: a JSON value valid against ``schema``.

    ``model`` is the Pydantic class it came from (``Response.parsed`` is then an instance), else
    None (``parsed`` is the decoded JSON). ``strict`` says the schema fits OpenAI's strict mode
    (every property required, no additional properties), where providers enforce it exactly.
    """

    name: str
    schema: Mapping[str, Any]
    model: type[Any] | None = field(default=None, compare=False, repr=False)

    @property
    def digest(self) -> str:
        """The schema's sha256 over its canonical JSON, first 16 hex digits: the record's key
        for "the same schema" across runs."""
        text = json.dumps(self.schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def strict(self) -> bool:
        return _strict(self.schema)

    def parse(self, text: str) -> Any:
        """The reply as the validated value; OutputValidationError (keeping ``text``) if not."""
        body = _json_text(text)
        try:
            value = json.loads(body)
        except json.JSONDecodeError as exc:
            raise OutputValidationError(
                f"The reply is not JSON ({exc.msg} at position {exc.pos}), so it cannot be read "
                f"as {self.name}.",
                text=text,
                schema_name=self.name,
            ) from None
        if self.model is not None:
            return self._validate_model(value, text)
        self._validate_schema(value, text)
        return value

    def _validate_model(self, value: Any, text: str) -> Any:
        from pydantic import ValidationError

        try:
            return self.model.model_validate(value)  # type: ignore[union-attr]
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'the value'}: {e['msg']}" for e in exc.errors()
            )
            raise OutputValidationError(
                f"The reply does not validate as {self.name}: {problems}.",
                text=text,
                schema_name=self.name,
            ) from None

    def _validate_schema(self, value: Any, text: str) -> None:
        try:
            import jsonschema
        except ImportError as exc:  # a core dependency: only a broken install lacks it
            raise InvalidRequestError(
                "output= with a JSON schema needs jsonschema: pip install jsonschema"
            ) from exc
        validator = jsonschema.Draft202012Validator(dict(self.schema))
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            problems = "; ".join(
                f"{'.'.join(map(str, e.absolute_path)) or 'the value'}: {e.message}"
                for e in errors[:5]
            )
            raise OutputValidationError(
                f"The reply does not validate against the {self.name} schema: {problems}.",
                text=text,
                schema_name=self.name,
            )


def to_output(output: object) -> OutputSpec | None:
    """``output=``: a Pydantic model class, a JSON schema dict (its ``title`` names it), or
    OpenAI's ``{"type": "json_schema", "json_schema": {"name", "schema"}}`` response format."""
    if output is None or isinstance(output, OutputSpec):
        return output
    if isinstance(output, type) and hasattr(output, "model_json_schema"):
        return OutputSpec(output.__name__, _closed(output.model_json_schema()), output)
    if isinstance(output, Mapping):
        if output.get("type") == "json_schema" and isinstance(output.get("json_schema"), Mapping):
            inner = output["json_schema"]
            schema: object = inner.get("schema")
            name = inner.get("name") or "output"
        else:
            schema, name = output, output.get("title") or "output"
        if not isinstance(schema, Mapping) or not schema:
            raise InvalidRequestError(f"output has no JSON schema: {shown(output)}.")
        _check_schema(schema)
        return OutputSpec(str(name), dict(schema))
    raise InvalidRequestError(
        f"output must be a Pydantic model class or a JSON schema dict, not {shown(output)}."
    )


def _check_schema(schema: Mapping[str, Any]) -> None:
    """Refuse a schema that is not one; checked once per distinct schema (a check costs
    milliseconds, and compare or serve send the same schema with every call)."""
    try:
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        raise InvalidRequestError(f"output's schema is not JSON: {shown(schema)}.") from None
    _check_schema_text(text)


@functools.lru_cache(maxsize=256)
def _check_schema_text(text: str) -> None:
    try:
        import jsonschema
    except ImportError:
        return
    try:
        jsonschema.Draft202012Validator.check_schema(json.loads(text))
    except jsonschema.SchemaError as exc:
        raise InvalidRequestError(f"output is not a valid JSON schema: {exc.message}.") from None


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A Pydantic schema with ``additionalProperties: false`` on every object, as strict
    structured output needs (Pydantic ignores extra keys by default; the model should not
    write them)."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            if out.get("type") == "object" and "properties" in out:
                out.setdefault("additionalProperties", False)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    closed: dict[str, Any] = walk(schema)
    return closed


def _strict(schema: Any) -> bool:
    """Every object lists all its properties as required and forbids others (OpenAI strict)."""
    if isinstance(schema, list):
        return all(_strict(v) for v in schema)
    if not isinstance(schema, Mapping):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties", {})
        if schema.get("additionalProperties", True) is not False:
            return False
        if set(schema.get("required", [])) != set(props):
            return False
    return all(_strict(v) for k, v in schema.items() if k not in ("enum", "const", "default"))


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*)\n\s*```\s*$", re.DOTALL)


def _json_text(text: str) -> str:
    """The JSON in a reply: the whole text, or the inside of one ```json fence around it (the way
    chat models often wrap it when nothing constrains them)."""
    match = _FENCE.match(text)
    return match.group(1) if match else text
