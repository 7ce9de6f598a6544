"""Output that is not a terminal keeps every value; a terminal sees fmgate's progress while a model
loads, and nothing of the libraries underneath."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from fmgate.cli import _console

from .conftest import fmgate

LONG = "a-self-hosted-model-with-a-long-alias"


def test_a_console_that_is_not_a_terminal_is_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert _console.console(file=io.StringIO()).width >= 200


def test_compare_piped_keeps_every_name_and_header(
    env: dict[str, str], tmp_path: Path, stub: str
) -> None:
    env = {k: v for k, v in env.items() if k != "COLUMNS"}  # as a CI log sees it
    aliases = [LONG, LONG + "-number-two"]
    (tmp_path / "fmgate.toml").write_text(
        "".join(
            f'[models.{a}]\nbackend = "vllm"\nmodel = "m"\nbase_url = "{stub}"\n' for a in aliases
        )
    )
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "hi", "expected": "help"}) + "\n")
    args = ["compare", "-m", aliases[0], "-m", aliases[1], "--prompts", "p.jsonl"]
    done = fmgate(*args, "--scorer", "contains", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for alias in aliases:
        assert alias in done.stdout
    for header in ("quality", "basis", "channel"):  # at 80 columns, "basis" was cut to "bas"
        assert f" {header} " in done.stdout
    assert "…" not in done.stdout


def test_loading_shows_a_spinner_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, shown in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr("sys.stderr", stream)
        with _console.loading("tiny-[model]"):
            pass
        assert ("Loading tiny-[model]..." in stream.getvalue()) is shown
