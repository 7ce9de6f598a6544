"""Running the ``fmgate`` command as a user runs it: a subprocess with its own store, offline."""

from __future__ import annotations

import json
import os
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
