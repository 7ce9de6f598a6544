"""The ``fmgate`` command line, run as a user runs it: in a subprocess, offline."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import fmgate


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


@pytest.mark.parametrize("stream", [[], ["--no-stream"]])
def test_run_json_prints_one_json_document_with_the_text_inside(
    env: dict[str, str], stub: str, stream: list[str]
) -> None:
    done = fmgate("run", "vllm:m", "hi", "--base-url", stub, *stream, "--json", env=env)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # the whole of stdout: `| jq` works
    assert document["text"] == "Hello! How can I help you today?"
    assert document["error"] is None
    record = document["record"]
    assert record["outcome_status"] == "ok" and record["stream"] is (not stream)
    assert record["access_data_leaves_machine"] is False


def test_a_parameter_refused_before_sending_exits_2_and_says_nothing_was_sent(
    env: dict[str, str], stub: str
) -> None:
    done = fmgate("run", "vllm:m", "hi", "--base-url", stub, "--temperature", "5", env=env)
    assert done.returncode == 2, done.stderr
    assert "InvalidRequestError" in done.stderr and "temperature" in done.stderr
    assert "nothing sent" in done.stderr and "data left" not in done.stderr
    assert "Traceback" not in done.stderr


def test_run_json_on_a_failed_call_is_still_one_json_document(
    env: dict[str, str], stub: str
) -> None:
    done = fmgate(
        "run", "vllm:m", "hi", "--base-url", stub, "--temperature", "5", "--json", env=env
    )
    assert done.returncode == 2
    document = json.loads(done.stdout)
    assert document["text"] is None and document["error"]["type"] == "InvalidRequestError"
    assert document["record"]["outcome_status"] == "error"


def test_fmgate_alone_prints_the_help_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    from fmgate.cli import main

    assert main([]) == 0
    out = capsys.readouterr()
    assert "usage: fmgate" in out.out and "exit codes" in out.out and out.err == ""


def test_a_failed_call_exits_1_and_is_still_recorded(env: dict[str, str], tmp_path: Path) -> None:
    done = fmgate("run", "vllm:m", "hi", "--base-url", "http://127.0.0.1:9/v1", env=env)
    assert done.returncode == 1
    assert "ConnectionError" in done.stderr and "FAILED" in done.stderr
    db = sqlite3.connect(tmp_path / "store.sqlite3")
    assert db.execute("SELECT outcome_status FROM records").fetchall() == [("error",)]


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
