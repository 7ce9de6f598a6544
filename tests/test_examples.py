"""The examples run with no key and no network, as docs/quickstart.md and docs/local.md say."""

from __future__ import annotations

import os
import re
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


LOCAL_VS_API = EXAMPLE.parent / "local_vs_api.py"


def test_local_vs_api_runs_offline_without_keys() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["HF_HUB_OFFLINE"] = "1"
    out = subprocess.run(
        [sys.executable, str(LOCAL_VS_API)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "RANDOM weights" in out.stdout and "API models skipped" in out.stdout
    # the local model's record, side by side (one column: no API model without a key)
    assert "transformers:tiny-llama" in out.stdout
    assert re.search(r"token count from +tokenizer", out.stdout)
    assert re.search(r"cost +\$\d+\.\d{8} \(energy_(measured|estimated)\)", out.stdout)
    assert re.search(r"data leaves machine +False", out.stdout)
    assert re.search(r"parameters +155,968", out.stdout)
    # the real all-MiniLM-L6-v2: a kitten is much nearer a cat than revenue is
    kitten = float(re.findall(r"cos\('a cat', 'a kitten'\) = ([\d.-]+)", out.stdout)[0])
    revenue = float(re.findall(r"cos\('a cat', 'revenue'\) += ([\d.-]+)", out.stdout)[0])
    assert kitten > revenue + 0.3
    assert "5 calls recorded" in out.stdout
    assert out.stderr == ""
