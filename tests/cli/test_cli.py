"""The ``fmgate`` command line, run as a user runs it: in a subprocess, offline."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmgate.testing import stub_server

GUARD = Path(__file__).parent / "guard"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The subprocess's environment: its own store, no keys, no network beyond loopback."""
    base = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN"))}
    base.pop("FMGATE_CONFIG", None)
    return {
        **base,
        "FMGATE_STORE": str(tmp_path / "store.sqlite3"),
        "PYTHONPATH": os.pathsep.join([str(GUARD), base.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }


def fmgate(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fmgate", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    with stub_server() as url:
        yield url + "/v1"


@pytest.fixture
def project(tmp_path: Path, stub: str) -> Path:
    """A folder with an fmgate.toml naming two self-hosted models and a prompt file."""
    (tmp_path / "fmgate.toml").write_text(
        f'[models.alpha]\nbackend = "vllm"\nmodel = "alpha"\nbase_url = "{stub}"\n\n'
        f'[models.beta]\nbackend = "ollama"\nmodel = "beta"\nbase_url = "{stub}"\n'
        "max_tokens = 32\n"
    )
    rows = [
        {"id": "greet", "prompt": "Say hello", "expected": "help"},
        {"id": "other", "prompt": "Name a colour", "expected": "blue"},
    ]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_help_names_every_command_and_the_exit_codes(env: dict[str, str]) -> None:
    done = fmgate("--help", env=env)
    assert done.returncode == 0
    for command in ("demo", "run", "models", "backends", "compare", "report", "exit codes"):
        assert command in done.stdout


def test_the_console_script_is_installed(env: dict[str, str]) -> None:
    script = Path(sys.executable).with_name("fmgate")
    done = subprocess.run([script, "--version"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.startswith("fmgate ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nonsense"], "invalid choice: 'nonsense'"),
        (["compare", "-m", "a"], "the following arguments are required: --prompts"),
        (["compare", "-m", "a", "--prompts", "x.jsonl", "--format", "pdf"], "choose from html"),
        (["compare", "-m", "a", "--prompts", "x.jsonl", "--repeat", "0"], "must be 1 or more"),
        (["run", "openai:gpt-4o-mini"], "required: prompt"),
        (["run", "nope", "hi"], "'nope' is not an alias"),
        (["run", "openai:gpt-4o-mini", "hi"], "OPENAI_API_KEY"),
        (["compare", "-m", "vllm:x", "--prompts", "missing.jsonl"], "missing.jsonl"),
        (["--config", "no-such.toml", "models"], "no-such.toml"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    done = fmgate(*args, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_run_prints_the_text_then_a_record_summary(env: dict[str, str], stub: str) -> None:
    done = fmgate("run", "vllm:stub-echo", "Say hi", "--base-url", stub, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello! How can I help you today?"
    assert "vllm:stub-echo" in done.stderr and "TTFT" in done.stderr
    assert "self_hosted, open weights, data stayed local" in done.stderr


def test_run_json_prints_the_full_record(env: dict[str, str], stub: str) -> None:
    done = fmgate("run", "vllm:m", "hi", "--base-url", stub, "--no-stream", "--json", env=env)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout[done.stdout.index("{") :])
    assert record["outcome_status"] == "ok" and record["stream"] is False
    assert record["access_data_leaves_machine"] is False


def test_a_failed_call_exits_1_and_is_still_recorded(env: dict[str, str], tmp_path: Path) -> None:
    done = fmgate("run", "vllm:m", "hi", "--base-url", "http://127.0.0.1:9/v1", env=env)
    assert done.returncode == 1
    assert "ConnectionError" in done.stderr and "FAILED" in done.stderr
    db = sqlite3.connect(tmp_path / "store.sqlite3")
    assert db.execute("SELECT outcome_status FROM records").fetchall() == [("error",)]


def test_models_lists_aliases_with_their_access(env: dict[str, str], project: Path) -> None:
    done = fmgate("models", env=env, cwd=project)
    assert done.returncode == 0, done.stderr
    assert "alpha" in done.stdout and "vllm:alpha" in done.stdout
    assert "self_hosted" in done.stdout


def test_compare_writes_a_report_and_report_rebuilds_it(env: dict[str, str], project: Path) -> None:
    done = fmgate(
        "compare", "-m", "alpha", "-m", "beta", "--prompts", "prompts.jsonl",
        "--scorer", "contains", "--repeat", "2", "--out", "out", env=env, cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "alpha" in done.stdout and "beta" in done.stdout
    for name in ("report.html", "report.md", "summary.csv", "records.jsonl", "records.csv"):
        assert (project / "out" / name).is_file()
    lines = (project / "out" / "records.jsonl").read_text().splitlines()
    assert len(lines) == 2 * (1 + 2 * 2)  # per model: 1 warm-up + 2 repeats of 2 prompts

    again = fmgate("report", "--run", "latest", "--out", "again", env=env, cwd=project)
    assert again.returncode == 0, again.stderr
    assert (project / "again" / "report.html").is_file()
    assert len((project / "again" / "records.jsonl").read_text().splitlines()) == len(lines)


def test_report_with_no_matching_records_exits_3(env: dict[str, str], tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "store.sqlite3").close()
    done = fmgate("report", "--since", "1h", env=env, cwd=tmp_path)
    assert done.returncode == 3
    assert "no records match" in done.stderr


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
