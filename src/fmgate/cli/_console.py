"""The CLI's rich consoles, and its own progress line while a model loads.

Rich lays out output that is not a terminal (a pipe, a file, a CI log) at 80 columns, which cuts
names and values out of wide tables. Such output has no width to fit, so it gets a wide one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

# Columns for output that is not a terminal: wide enough for the widest table fmgate prints.
WIDE = 240


def console(*, stderr: bool = False, file: TextIO | None = None) -> Console:
    """A rich console on stdout (or stderr), wide when it is not a terminal."""
    from rich.console import Console

    stream = file or (sys.stderr if stderr else sys.stdout)
    if _is_terminal(stream):
        return Console(file=stream)
    return Console(file=stream, width=max(WIDE, _columns()), soft_wrap=False)


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _columns() -> int:
    try:
        return int(os.environ.get("COLUMNS", ""))
    except ValueError:
        return 0


@contextmanager
def loading(name: str) -> Iterator[None]:
    """``Loading <name>...`` with a spinner on stderr while a model loads (a local model may take
    seconds, a first download minutes); nothing when stderr is not a terminal."""
    from rich.markup import escape

    err = console(stderr=True)
    if not err.is_terminal:
        yield
        return
    from .._local.gguf import listen

    label = f"Loading {escape(name)}"
    with err.status(f"{label}...", spinner="dots") as status:
        # a GGUF file's first load converts it (a minute for SmolLM2): say how far it is
        with listen(lambda step: status.update(f"{label}: {escape(step)}")):
            yield


def load_model(name: str, **kwargs: Any) -> Any:
    """``fmgate.load(name, **kwargs)`` under the loading spinner."""
    from .._load import load

    with loading(name):
        return load(name, **kwargs)
