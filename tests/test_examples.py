"""The README's second command runs examples/quickstart.py: it must work with no key and no net."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"


def test_quickstart_runs_offline_without_keys() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "openai:gpt-4o-mini  (stub server" in out.stdout
    assert "anthropic:claude-3-5-haiku-latest  (stub server" in out.stdout
    assert "list_price" in out.stdout and "4 calls recorded" in out.stdout
    assert out.stderr == ""
