"""``fmgate models`` checks aliases as ``load()`` does; ``fmgate backends`` says where each goes."""

from __future__ import annotations

from pathlib import Path

import pytest

import fmgate
from fmgate.cli import main

from .conftest import fmgate as run_fmgate


def test_models_lists_aliases_with_their_access(env: dict[str, str], project: Path) -> None:
    done = run_fmgate("models", env=env, cwd=project)
    assert done.returncode == 0, done.stderr
    assert "alpha" in done.stdout and "vllm:alpha" in done.stdout
    assert "self_hosted" in done.stdout and "ok" in done.stdout


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('backend = "vllm"\nmodel = "m"\ntemprature = 0.5\n', "unknown key 'temprature'"),
        ('backend = "olama"\nmodel = "m"\n', "Unknown backend 'olama'. Did you mean 'ollama'"),
        ('backend = "vllm"\nmodel = "m"\ntemperature = 9\n', "temperature"),
    ],
)
def test_models_refuses_an_alias_that_would_not_load_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, message: str
) -> None:
    (tmp_path / "fmgate.toml").write_text(
        f'[models.good]\nbackend = "vllm"\nmodel = "g"\n\n[models.bad]\n{table}'
    )
    assert main(["models"]) == 2
    out = capsys.readouterr()
    assert "good" in out.out and "bad" in out.out and "error (below)" in out.out
    assert message in out.err and "[models.bad]" in out.err
    assert "[models.good]" not in out.err
    with pytest.raises(fmgate.ConfigurationError) as raised:  # the problem load() gives
        fmgate.load("bad")
    assert message in str(raised.value)


def test_models_with_no_aliases_shows_the_table_syntax(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models"]) == 0
    assert "add [models.<name>] tables to fmgate.toml" in capsys.readouterr().out


def test_backends_show_channel_and_key_variable_never_the_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    rows = {
        cells[0]: cells[1:]
        for cells in ([c.strip() for c in line.strip("│ ").split("│")] for line in out.splitlines())
        if len(cells) == 5
    }
    assert rows["openai"] == ["api", "yes", "OPENAI_API_KEY", "yes"]
    assert rows["anthropic"] == ["api", "yes", "ANTHROPIC_API_KEY", "no"]
    assert rows["transformers"] == ["local", "no", "–", "–"]
    assert rows["vllm"][0] == "self_hosted"
    assert "sk-secret-value" not in out
