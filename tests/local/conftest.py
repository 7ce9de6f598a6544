"""Tiny random-weight models, built once per test session (each takes milliseconds to run)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

TinyFactory = Callable[[str], Path]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyFactory:
    """``tiny("llama")`` -> the folder of that tiny model, built on first use."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from fmgate.testing import make_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in built:
            built[arch] = make_tiny_model(arch, root / arch)
        return built[arch]

    return get


@pytest.fixture(scope="session")
def no_template(tiny: TinyFactory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-2 without its chat template: a base model that only continues text."""
    folder = tmp_path_factory.mktemp("no-template") / "gpt2"
    shutil.copytree(tiny("gpt2"), folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    return folder
