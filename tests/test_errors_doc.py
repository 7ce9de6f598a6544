"""docs/errors.md covers every public error, and its tree and retryable list match the code."""

from __future__ import annotations

import re
from pathlib import Path

import fmgate

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
TREE_LINE = re.compile(r"^(?P<indent> *)- `(?P<name>\w+)`")


def _public_errors() -> dict[str, type[fmgate.FmgateError]]:
    out = {}
    for name in fmgate.__all__:
        value = getattr(fmgate, name)
        if isinstance(value, type) and issubclass(value, fmgate.FmgateError):
            out[name] = value
    return out


def _tree() -> dict[str, str | None]:
    """Each class in the doc's nested list, with the class it is listed under."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("\n## ", 1)[0]
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in section.splitlines():
        match = TREE_LINE.match(line)
        if match is None:
            continue
        depth = len(match["indent"]) // 2
        del stack[depth:]
        parents[match["name"]] = stack[-1] if stack else None
        stack.append(match["name"])
    return parents


def test_every_public_error_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in _public_errors() if f"`{name}`" not in text]
    assert not missing, f"docs/errors.md does not mention {missing}"


def test_the_tree_in_the_doc_is_the_class_tree() -> None:
    errors = _public_errors()
    tree = _tree()
    assert set(tree) == set(errors)
    for name, parent in tree.items():
        bases = [base.__name__ for base in errors[name].__bases__]
        assert (parent in bases) if parent else name == "FmgateError", (name, parent, bases)


def test_the_retryable_list_is_the_retryable_classes() -> None:
    text = DOC.read_text(encoding="utf-8")
    paragraph = text[text.index("**Retryable**") :].split("\n\n", 1)[0]
    listed = set(re.findall(r"`(\w+Error)`", paragraph))
    retryable = {
        name for name, cls in _public_errors().items() if getattr(cls, "retryable", False) is True
    }
    assert listed - {"ConfigurationError"} == retryable
