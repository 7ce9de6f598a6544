"""``fmgate serve`` run as a user runs it: a subprocess, stopped with Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from fmgate.testing import stub_server

from .conftest import request

GUARD = Path(__file__).parents[1] / "cli" / "guard"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN"))}
    base = {k: v for k, v in base.items() if not k.startswith("FMGATE_")}
    return {
        **base,
        "FMGATE_STORE": str(tmp_path / "store.sqlite3"),
        "PYTHONPATH": os.pathsep.join([str(GUARD), base.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture
def upstream() -> Iterator[str]:
    with stub_server() as url:
        yield url + "/v1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_public_address_without_keys_is_refused_with_exit_2(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fmgate", "serve", "anything", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert "FMGATE_SERVE_KEYS" in done.stderr and "Traceback" not in done.stderr


def test_a_port_in_use_is_refused_in_one_line_before_loading_anything(
    env: dict[str, str],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            # 'never-loaded' is no alias: the port is checked first, so that is never found out
            [sys.executable, "-m", "fmgate", "serve", "never-loaded", "--port", str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"fmgate serve: error: cannot listen on 127.0.0.1:{port} (")
    assert "--port" in line and "never-loaded" not in line
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_an_alias_as_a_gateway_then_stop_with_a_signal(
    env: dict[str, str], tmp_path: Path, upstream: str, stop: signal.Signals
) -> None:
    (tmp_path / "fmgate.toml").write_text(
        f'[models.alpha]\nbackend = "vllm"\nmodel = "alpha"\nbase_url = "{upstream}"\n'
    )
    port = _free_port()
    key = "sk-cli-test"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmgate", "serve", "alpha", "--port", str(port)],
        cwd=tmp_path,
        env={**env, "FMGATE_SERVE_KEYS": key},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_healthy(url, proc)
        with openai.OpenAI(base_url=url, api_key=key) as sdk:
            reply = sdk.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "hi"}]
            )
        assert reply.choices[0].message.content
    finally:
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert key not in err and "alpha" in err
    with sqlite3.connect(tmp_path / "store.sqlite3") as db:
        rows = db.execute("SELECT distribution, tags FROM records").fetchall()
    assert len(rows) == 1 and rows[0][0] == "self_hosted" and "fmgate.served" in rows[0][1]


def _wait_healthy(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"fmgate serve exited: {proc.communicate()[1]}")
        try:
            if request(url.removesuffix("/v1"), "GET", "/health").status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("fmgate serve did not start in time")
