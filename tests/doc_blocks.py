"""Fenced code blocks of the README and docs/*.md, and the shell commands inside them.

A block may be marked, on the line just before its fence, with an HTML comment a reader does not
see: ``<!-- docs-test: skip (why) -->``. The reason is required: it is what pytest reports.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)\s*$")
MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
SKIP = re.compile(r"^skip \((?P<reason>[^()]+(?:\([^()]*\)[^()]*)*)\)$")
OPERATORS = {"&&", "||", ";", "|", "&"}


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is (``line`` is the opening fence's), its language, its text."""

    path: Path
    line: int
    lang: str
    text: str
    skip: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the skip reason its marker gives."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = _closing(lines, i, opening.group("fence"))
        text = "\n".join(line[len(opening.group("indent")) :] for line in lines[i + 1 : end])
        lang = opening.group("lang").lower()
        found.append(Block(path, i + 1, lang, text + "\n", _skip_reason(path, lines, i)))
        i = end + 1
    return found


def _closing(lines: list[str], start: int, fence: str) -> int:
    for j in range(start + 1, len(lines)):
        if lines[j].strip().startswith(fence[0] * len(fence)) and not lines[j].strip(fence[0]):
            return j
    raise AssertionError(f"{lines[start]!r} at line {start + 1} is never closed")


def _skip_reason(path: Path, lines: list[str], fence_index: int) -> str | None:
    before = [line for line in lines[:fence_index] if line.strip()]
    marker = MARKER.match(before[-1].strip()) if before else None
    if marker is None:
        return None
    skip = SKIP.match(marker.group("body"))
    if skip is None:
        raise AssertionError(f"{path}:{fence_index}: write <!-- docs-test: skip (why) -->")
    return skip.group("reason")


def markers(path: Path) -> list[int]:
    """Line numbers of every docs-test marker, so that a stray one (no block after it) shows."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [n for n, line in enumerate(lines, start=1) if "docs-test:" in line]


def commands(block: Block) -> list[list[str]]:
    """The commands of a shell block: comments dropped, ``\\`` continuations joined, chains
    (``&&``, ``;``, ``|``) cut apart, ``$ `` prompts of console blocks removed (with the output
    lines after them), and leading ``NAME=value`` assignments left out."""
    text = _console_commands(block.text) if block.lang == "console" else block.text
    text = text.replace("\\\n", " ")
    found: list[list[str]] = []
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in lexer:
            if token in OPERATORS:
                found.append(current)
                current = []
            else:
                current.append(token)
        found.append(current)
    return [_without_assignments(argv) for argv in found if _without_assignments(argv)]


def _console_commands(text: str) -> str:
    return "\n".join(line[2:] for line in text.splitlines() if line.startswith("$ "))


def _without_assignments(argv: list[str]) -> list[str]:
    i = 0
    while i < len(argv) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[i]):
        i += 1
    return argv[i:]
