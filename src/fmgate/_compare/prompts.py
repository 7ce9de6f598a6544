"""Prompt sets for ``fmgate compare``: JSONL or CSV files, or a set bundled with fmgate by name.

Each item has a ``prompt``, an optional ``expected`` answer (for the scorers) and an optional
``id`` (by default its position in the set: "1", "2", ...). JSONL holds one object per line
(a line starting with ``#`` is a comment); CSV has a header row naming its columns. Any other
field is an error, not silently dropped: a misspelt ``expeted`` column would otherwise grade
every answer as unscorable.

A classification set gives each row a ``label`` (the true class) instead of ``expected``, and may
call its prompt ``text``: ``{"id": "fr-01", "text": "Il pleut.", "label": "fr"}``. Every row of
such a set has a label, so that no text goes ungraded.

A row may ask to draw instead (``"task": "image"``, or any of ``size``, ``seed``, ``steps``,
``negative_prompt``): an image-generation set (the bundled ``image-prompts``; see
:mod:`.drawing`), where every row draws.

A row may ask for structure (graded by the ``json_schema`` and ``tool_call`` scorers):

- ``schema``: a JSON schema object; the reply must be JSON valid against it (the model is called
  with ``output=schema``). ``expected`` is then a JSON value (usually an object) the parsed reply
  must equal, numbers within 0.1%; it must itself match the schema.
- ``tools``: a list of OpenAI function schemas offered to the model (``tools=``), with an optional
  ``tool_choice`` (``auto``, ``required``, ``none`` or a tool's name). ``expected_tool`` names the
  tool the model should call, and ``expected_arguments`` (a JSON object, valid against that
  tool's parameters) the arguments it should pass; without them the tools are offered but the
  call is not graded.

For example (one line each in a JSONL file)::

    {"id": "km", "prompt": "Convert 3 km to metres.", "schema": {"type": "object", ...},
     "expected": {"value": 3000, "unit": "m"}}
    {"id": "paris", "prompt": "Is it raining in Paris?", "tools": [{"type": "function",
     "function": {"name": "get_weather", ...}}], "expected_tool": "get_weather",
     "expected_arguments": {"city": "Paris", "unit": "celsius"}}

In a CSV file the cells of ``schema``, ``tools`` and ``expected_arguments`` (and ``expected`` on a
row with a schema) hold JSON text: a string answer is written with its JSON quotes.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import InvalidRequestError, shown
from .drawing import DRAW_FIELDS, draw_fields
from .structured_rows import STRUCTURE_FIELDS, decode_json_cells, structure_of

__all__ = [
    "FIELDS",
    "PromptItem",
    "bundled_prompt_sets",
    "is_classification",
    "label_set",
    "load_prompts",
]

FIELDS = ("id", "prompt", "text", "expected", "label", *STRUCTURE_FIELDS, *DRAW_FIELDS)
_SUFFIXES = (".jsonl", ".csv")


@dataclass(frozen=True, slots=True)
class PromptItem:
    """One prompt of a set; ``expected`` is the reference answer the scorers check against,
    ``label`` the true class of a classification set's text.

    A row with a ``schema`` asks for structured output: ``expected_output`` is the value the
    parsed reply must equal (``expected`` then holds it as JSON text, for a judge to read). A row
    with ``tools`` offers them (``tool_choice`` as given), and ``expected_tool`` and
    ``expected_arguments`` name the right call.
    """

    id: str
    prompt: str
    expected: str | None = None
    label: str | None = None
    schema: Mapping[str, Any] | None = field(default=None, hash=False)
    expected_output: Any = field(default=None, hash=False)
    tools: tuple[Mapping[str, Any], ...] = field(default=(), hash=False)
    tool_choice: str | None = None
    expected_tool: str | None = None
    expected_arguments: Mapping[str, Any] | None = field(default=None, hash=False)
    task: str | None = None  # "image": a prompt to draw (see :mod:`.drawing`)
    size: str | None = None
    seed: int | None = None
    steps: int | None = None
    negative_prompt: str | None = None

    @property
    def structured(self) -> bool:
        """Whether the row asks for structured output or offers tools."""
        return self.schema is not None or bool(self.tools)

    def call_params(self) -> dict[str, Any]:
        """What the row adds to a ``generate`` call: ``output``, ``tools``, ``tool_choice``."""
        params: dict[str, Any] = {}
        if self.schema is not None:
            params["output"] = dict(self.schema)
        if self.tools:
            params["tools"] = [dict(t) for t in self.tools]
        if self.tool_choice is not None:
            params["tool_choice"] = self.tool_choice
        return params


def is_classification(items: Sequence[PromptItem]) -> bool:
    """Whether ``items`` is a classification set: its rows have a ``label``."""
    return bool(items) and all(item.label is not None for item in items)


def label_set(items: Sequence[PromptItem]) -> list[str]:
    """The distinct labels of a classification set, sorted: the ``labels=`` of a zero-shot
    classifier, in an order that does not depend on how the file is sorted."""
    return sorted({item.label for item in items if item.label is not None})


def bundled_prompt_sets() -> dict[str, Path]:
    """The prompt sets shipped with fmgate, by name (``capitals`` -> its ``.jsonl`` file)."""
    from importlib import resources

    folder = resources.files("fmgate._data").joinpath("prompts")
    files = (Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".jsonl"))
    return {path.stem: path for path in sorted(files)}


def load_prompts(source: str | os.PathLike[str]) -> list[PromptItem]:
    """The items of a ``.jsonl`` or ``.csv`` file, or of a bundled set named ``source``.

    Every problem (a missing prompt, an unknown field, a duplicate id, bad JSON) is an
    :class:`fmgate.InvalidRequestError` that names the file and line.
    """
    path = _resolve(source)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets save CSV with a BOM
    except UnicodeDecodeError as exc:
        message = f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8."
        raise InvalidRequestError(message) from None
    except OSError as exc:
        raise InvalidRequestError(f"{path}: cannot be read ({exc.strerror}).") from exc
    parse = _jsonl_rows if path.suffix.lower() == ".jsonl" else _csv_rows
    try:
        rows = list(parse(path, text))
    except csv.Error as exc:
        raise InvalidRequestError(f"{path}: not readable as CSV ({exc}).") from None
    items = [_item(path, line, n, row) for n, (line, row) in enumerate(rows, start=1)]
    if not items:
        raise InvalidRequestError(f"{path}: no prompts; add at least one item.")
    lines = [line for line, _ in rows]
    _check_unique(path, items, lines)
    _check_labels(path, items, lines)
    _check_drawing(path, items, lines)
    return items


def _resolve(source: str | os.PathLike[str]) -> Path:
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix.lower() not in _SUFFIXES:
            raise InvalidRequestError(f"{path}: a prompt set must be a .jsonl or .csv file.")
        return path
    bundled = bundled_prompt_sets()
    if str(source) in bundled:
        return bundled[str(source)]
    raise InvalidRequestError(_no_such_set(str(source), list(bundled)))


def _no_such_set(source: str, bundled: list[str]) -> str:
    """Why ``source`` names no set, with the bundled name it was probably meant to be."""
    close = difflib.get_close_matches(source, bundled, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    names = ", ".join(bundled) or "none"
    if Path(source).suffix.lower() in _SUFFIXES:
        return f"{source}: no such file.{hint} Bundled sets: {names}."
    return (
        f"No prompt set {source!r}.{hint} Give a .jsonl or .csv file, or a bundled set ({names})."
    )


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue  # a blank line (often the last) or a comment (where the set comes from)
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(
                f"{path}, line {line}: not valid JSON ({exc.msg}); write one object per line, "
                'such as {"prompt": "...", "expected": "..."}.'
            ) from None
        if not isinstance(row, dict):
            raise InvalidRequestError(
                f"{path}, line {line}: expected a JSON object with a 'prompt', "
                f"not {type(row).__name__}."
            )
        yield line, row


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    # newline="": a quoted field may hold a line break, which splitlines() would cut
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader, [])]
    if "prompt" not in header and "text" not in header:
        raise InvalidRequestError(
            f"{path}, line 1: the header must name a 'prompt' column (or 'text'; and may name "
            f"'expected', 'label' and 'id'); found {header}."
        )
    _check_fields(path, 1, header)
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InvalidRequestError(
                f"{path}, line {reader.line_num}: {len(row)} fields for {len(header)} columns; "
                "quote a field that holds a comma."
            )
        # An empty cell is an absent value: a CSV cannot tell "" from nothing.
        cells = {k: v for k, v in zip(header, row, strict=True) if v.strip()}
        yield reader.line_num, decode_json_cells(f"{path}, line {reader.line_num}", cells)


def _check_fields(path: Path, line: int, names: list[str]) -> None:
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        raise InvalidRequestError(
            f"{path}, line {line}: unknown field {unknown[0]!r}; the fields are "
            f"{', '.join(FIELDS)} (only 'prompt', or 'text', is required)."
        )


def _item(path: Path, line: int, position: int, row: dict[str, Any]) -> PromptItem:
    _check_fields(path, line, list(row))
    prompt = _prompt(path, line, row)
    ident = _text(path, line, "id", row.get("id"))
    drawing = draw_fields(f"{path}, line {line}", row)
    structure = structure_of(f"{path}, line {line}", row)
    if "expected_output" in structure:  # the JSON value, kept as text for a judge to read
        row = {**row, "expected": json.dumps(structure["expected_output"], ensure_ascii=False)}
    expected = _text(path, line, "expected", row.get("expected"))
    label = _text(path, line, "label", row.get("label"))
    if expected is not None and label is not None:
        raise InvalidRequestError(
            f"{path}, line {line}: both 'expected' and 'label'; a row is either an answer to "
            "grade (expected) or a text to classify (label)."
        )
    label = label.strip() if label else None  # " fr" from a hand-edited CSV is still fr
    ident = ident.strip() if ident else str(position)
    return PromptItem(ident, prompt, expected, label, **structure, **drawing)


def _prompt(path: Path, line: int, row: dict[str, Any]) -> str:
    """The row's ``prompt``, or its ``text`` (a classification set's name for it)."""
    if "prompt" in row and "text" in row:
        raise InvalidRequestError(
            f"{path}, line {line}: both 'prompt' and 'text'; give one ('text' is another name "
            "for 'prompt')."
        )
    prompt = row.get("prompt", row.get("text"))
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidRequestError(
            f"{path}, line {line}: 'prompt' must be a string, got {type(prompt).__name__} "
            f"({shown(prompt, 40)}); write it in quotes."
        )
    if not prompt or not prompt.strip():
        raise InvalidRequestError(
            f"{path}, line {line}: missing or empty 'prompt'; every item needs a prompt text."
        )
    return prompt


def _text(path: Path, line: int, name: str, value: Any) -> str | None:
    """A field as text, None when blank; numbers are accepted (``"expected": 42``)."""
    if value is None or isinstance(value, str):
        return value if value and value.strip() else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    hint = " (a JSON value to match needs a 'schema' on the row)" if name == "expected" else ""
    raise InvalidRequestError(
        f"{path}, line {line}: {name!r} must be text or a number, not {type(value).__name__}{hint}."
    )


def _check_unique(path: Path, items: list[PromptItem], lines: list[int]) -> None:
    seen: dict[str, int] = {}
    for item, line in zip(items, lines, strict=True):
        if item.id in seen:
            raise InvalidRequestError(
                f"{path}, line {line}: duplicate id {item.id!r} (first on line {seen[item.id]}); "
                "give each item its own id."
            )
        seen[item.id] = line


def _check_labels(path: Path, items: list[PromptItem], lines: list[int]) -> None:
    """A set whose rows are partly labelled would grade only some texts: refused."""
    labelled = [item.label is not None for item in items]
    if any(labelled) and not all(labelled):
        line = lines[labelled.index(False)]
        raise InvalidRequestError(
            f"{path}, line {line}: no 'label', where other rows have one; in a classification "
            "set every row needs its label."
        )


def _check_drawing(path: Path, items: list[PromptItem], lines: list[int]) -> None:
    """A set that draws on some rows only would run two tasks at once: refused."""
    drawing = [item.task == "image" for item in items]
    if any(drawing) and not all(drawing):
        line = lines[drawing.index(False)]
        raise InvalidRequestError(
            f"{path}, line {line}: a prompt to answer, where other rows draw an image; in an "
            'image-generation set every row draws (give it "task": "image").'
        )
