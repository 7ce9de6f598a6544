"""The structure a prompt row may ask for: a JSON schema its reply must match, tools to offer.

A row with a ``schema`` (a JSON schema object) asks for structured output: the runner passes it as
``output=``, and its ``expected`` is then a JSON value the parsed reply must equal. A row with
``tools`` (OpenAI function schemas) offers them (``tools=``, with the row's ``tool_choice``), and
``expected_tool`` / ``expected_arguments`` say which call is right. Everything is checked as the
set loads, against fmgate's own rules for ``output=`` and ``tools=``, so that a typo in a schema
fails on its line, before any model runs: the expected value must match the row's own schema, the
expected tool must be one of the row's tools, and the expected arguments must match its parameters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from .._errors import FmgateError, InvalidRequestError, shown
from .._tools import OutputSpec, Tool, check_tool_choice, to_output, to_tools

__all__ = ["JSON_FIELDS", "STRUCTURE_FIELDS", "decode_json_cells", "structure_of"]

STRUCTURE_FIELDS = ("schema", "tools", "tool_choice", "expected_tool", "expected_arguments")
JSON_FIELDS = ("schema", "tools", "tool_choice", "expected_arguments")
"""The fields whose CSV cells hold JSON text (``expected`` too, on a row with a schema)."""
_T = TypeVar("_T")


def decode_json_cells(where: str, row: dict[str, Any]) -> dict[str, Any]:
    """A CSV row with its JSON cells decoded: ``schema``, ``tools``, ``expected_arguments``,
    ``tool_choice`` when it is written as an object, and ``expected`` on a row with a schema
    (``"expected": "Paris"`` is the JSON text ``"Paris"``, quotes included)."""
    decoded = dict(row)
    names = [n for n in JSON_FIELDS if n in row]
    if "schema" in row and "expected" in row:
        names.append("expected")
    for name in names:
        text = row[name]
        if name == "tool_choice" and not text.lstrip().startswith("{"):
            continue  # auto, required, none or a tool's name, written plainly
        try:
            decoded[name] = json.loads(text)
        except json.JSONDecodeError as exc:
            quote = ' (a JSON string needs its quotes: "Paris")' if name == "expected" else ""
            raise InvalidRequestError(
                f"{where}: {name!r} is not valid JSON ({exc.msg}){quote}; a CSV cell holds the "
                "JSON text, with its double quotes doubled inside a quoted cell."
            ) from None
    return decoded


def structure_of(where: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The row's structure as :class:`PromptItem` fields (``schema``, ``expected_output``,
    ``tools``, ``tool_choice``, ``expected_tool``, ``expected_arguments``), each checked;
    ``where`` (the file and line) starts every error message."""
    if not any(row.get(name) is not None for name in STRUCTURE_FIELDS):
        return {}
    if row.get("label") is not None:
        raise InvalidRequestError(
            f"{where}: a row with a 'label' is a text to classify; it cannot also carry a "
            "'schema' or 'tools'."
        )
    fields: dict[str, Any] = {}
    if row.get("schema") is not None:
        fields.update(_schema_fields(where, row))
    fields.update(_tool_fields(where, row))
    return fields


def _schema_fields(where: str, row: Mapping[str, Any]) -> dict[str, Any]:
    schema = row["schema"]
    if not isinstance(schema, Mapping):
        raise InvalidRequestError(
            f"{where}: 'schema' must be a JSON schema object, such as "
            '{"type": "object", "properties": {...}}, not ' + f"{shown(schema, 40)}."
        )
    spec = _checked(where, "'schema'", lambda: to_output(schema))
    assert spec is not None
    fields: dict[str, Any] = {"schema": dict(schema)}
    expected = row.get("expected")
    if expected is not None:
        _conforms(where, "'expected' does not match the row's own schema", spec, expected)
        fields["expected_output"] = expected
    return fields


def _tool_fields(where: str, row: Mapping[str, Any]) -> dict[str, Any]:
    raw = row.get("tools")
    for name in ("tool_choice", "expected_tool"):
        if row.get(name) is not None and raw is None:
            raise InvalidRequestError(f"{where}: {name!r} needs 'tools' on the same row.")
    if raw is None:
        if row.get("expected_arguments") is not None:
            raise InvalidRequestError(f"{where}: 'expected_arguments' needs 'expected_tool'.")
        return {}
    if not isinstance(raw, list) or not raw or not all(isinstance(t, Mapping) for t in raw):
        raise InvalidRequestError(
            f"{where}: 'tools' must be a non-empty list of function schemas "
            '({"type": "function", "function": {"name", "description", "parameters"}}), '
            f"not {shown(raw, 40)}."
        )
    tools = _checked(where, "'tools'", lambda: to_tools(raw))
    given = row.get("tool_choice")
    choice = _checked(where, "'tool_choice'", lambda: check_tool_choice(given, tools))
    fields: dict[str, Any] = {"tools": tuple(dict(t) for t in raw), "tool_choice": choice}
    return fields | _expected_call(where, row, tools)


def _expected_call(where: str, row: Mapping[str, Any], tools: Sequence[Tool]) -> dict[str, Any]:
    name, arguments = row.get("expected_tool"), row.get("expected_arguments")
    if name is None:
        if arguments is not None:
            raise InvalidRequestError(f"{where}: 'expected_arguments' needs 'expected_tool'.")
        return {}
    by_name = {t.name: t for t in tools}
    if name not in by_name:
        raise InvalidRequestError(
            f"{where}: 'expected_tool' {shown(name, 40)} is not one of the row's tools "
            f"({', '.join(by_name)})."
        )
    if arguments is None:
        return {"expected_tool": name}
    if not isinstance(arguments, Mapping):
        raise InvalidRequestError(
            f"{where}: 'expected_arguments' must be a JSON object, not {shown(arguments, 40)}."
        )
    spec = OutputSpec(name, by_name[name].parameters)
    _conforms(where, f"'expected_arguments' do not match {name}'s parameters", spec, arguments)
    return {"expected_tool": name, "expected_arguments": dict(arguments)}


def _conforms(where: str, what: str, spec: OutputSpec, value: Any) -> None:
    """``value`` validates against ``spec``, else an error naming the row."""
    try:
        spec.parse(json.dumps(value, ensure_ascii=False))
    except FmgateError as exc:
        raise InvalidRequestError(f"{where}: {what}: {exc}") from None


def _checked(where: str, what: str, build: Callable[[], _T]) -> _T:
    """``build()``, its InvalidRequestError told again with the file and line."""
    try:
        return build()
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"{where}: {what}: {exc}") from None
