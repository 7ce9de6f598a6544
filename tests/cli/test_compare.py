"""``fmgate compare`` says why a model failed, and refuses in offline mode what would go online."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fmgate import CallRecord, Outcome
from fmgate.cli._comparing import failures

from .conftest import fmgate


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_compare_says_why_a_model_failed(
    env: dict[str, str], tmp_path: Path, stub: str, closed_port: int
) -> None:
    (tmp_path / "fmgate.toml").write_text(
        f'[models.alive]\nbackend = "vllm"\nmodel = "m"\nbase_url = "{stub}"\n\n'
        f'[models.dead]\nbackend = "vllm"\nmodel = "m"\n'
        f'base_url = "http://127.0.0.1:{closed_port}/v1"\nmax_retries = 0\n'
    )
    rows = [{"prompt": "hi"}, {"prompt": "hello"}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = fmgate(
        "compare", "-m", "alive", "-m", "dead", "--prompts", "p.jsonl", env=env, cwd=tmp_path
    )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if "calls failed" in line]
    assert len(lines) == 1, done.stderr  # alive: no line
    assert lines[0].startswith("dead: 3 of 3 calls failed: ConnectionError x 3 (first: ")
    assert "Connection refused" in lines[0]


def test_failures_count_error_types_and_show_the_first_message_on_one_line() -> None:
    def record(i: int, error: str | None, message: str | None = None) -> CallRecord:
        status = "ok" if error is None else "error"
        outcome = Outcome(status=status, error_type=error, error_message=message)
        now = datetime.now(UTC)
        return CallRecord(
            str(i), now, backend="openai", model_id="gpt", alias="gpt", outcome=outcome
        )

    records = [
        record(0, "RateLimitError", "slow\ndown " + "x" * 500),
        record(1, "TimeoutError", "late"),
        record(2, "RateLimitError", "again"),
        record(3, None),
    ]
    [line] = failures(records)
    assert line.startswith("gpt: 3 of 4 calls failed: RateLimitError x 2, TimeoutError x 1 ")
    assert "(first: slow down xxx" in line and line.endswith("...)") and "\n" not in line


def test_offline_mode_refuses_api_models_before_running_anything(
    env: dict[str, str], tmp_path: Path, stub: str
) -> None:
    (tmp_path / "fmgate.toml").write_text(
        f'[models.here]\nbackend = "vllm"\nmodel = "m"\nbase_url = "{stub}"\n\n'
        '[models.gpt]\nbackend = "openai"\nmodel = "gpt-4o-mini"\n'
    )
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "hi"}) + "\n")
    done = fmgate(
        "compare", "-m", "here", "-m", "gpt", "--prompts", "p.jsonl",
        "--scorer", "judge:anthropic:claude-haiku-4-5",
        env={**env, "FMGATE_OFFLINE": "1"}, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()  # one line, and nothing ran
    assert line.startswith("fmgate compare: error: FMGATE_OFFLINE=1, and gpt, ")
    assert "anthropic:claude-haiku-4-5 would send prompts off this machine" in line
    assert "here" not in line and done.stdout == ""
