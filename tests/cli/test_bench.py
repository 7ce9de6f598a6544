"""``fmgate bench``: one model loaded once, swept, its levels printed and its capacity marked."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

import fmgate
from fmgate._tags import CONCURRENCY
from fmgate.backends._base import BackendConfig
from fmgate.cli import main
from tests.compare.test_sweep import SlowApi
from tests.fakes import FakeBackend

from .conftest import fmgate as run_fmgate


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``load_model`` in the bench command, counted: each load gives a fresh fake API model
    whose calls take 10 ms."""
    loaded: list[str] = []

    def load_model(name: str, **kwargs: Any) -> fmgate.Model:
        loaded.append(name)
        provider = dataclasses.replace(FakeBackend.provider_info, distribution="api")
        backend = SlowApi(BackendConfig(name="fake", model=name, provider=provider))
        backend.delay_s = 0.01
        return fmgate.Model(backend, alias=name)

    monkeypatch.setattr("fmgate.cli._bench.load_model", load_model)
    return loaded


def rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows, as their cells, by their concurrency (the first cell)."""
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0].isdigit():
            found[cells[0]] = cells
    return found


def test_bench_loads_the_model_once_and_marks_the_capacity(
    loads: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    code = main(["bench", "api", "--max-concurrency", "4", "--max-tokens", "8", "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert loads == ["api"]
    table = rows(stdout)
    assert list(table) == ["1", "2", "4"]
    with (out / "bench.csv").open() as file:
        levels = list(csv.DictReader(file))
    assert [row["concurrency"] for row in levels] == ["1", "2", "4"]
    assert [row["calls"] for row in levels] == ["8", "8", "8"]
    best = max(levels, key=lambda row: float(row["calls_per_s"]))
    assert [row["capacity"] for row in levels].count("true") == 1 and best["capacity"] == "true"
    assert table[best["concurrency"]][-1] == "<- capacity"
    assert [cells[-1] for cells in table.values()].count("<- capacity") == 1
    assert f"at concurrency {best['concurrency']} (p90 " in stdout
    assert "capacity" in (out / "bench.md").read_text()
    # the bar ends full and names the last level; the sweep id is the run id
    assert "concurrency 4" in stderr and "25/25" in stderr
    assert "sweep id: " in stderr


def test_a_p90_target_no_level_meets_is_said_and_stops_the_sweep(
    loads: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "api", "--max-concurrency", "8", "--calls", "4", "--p90-target", "0.001"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert list(rows(stdout)) == ["1"]  # p90 (10 ms) passed the target: no higher level
    assert "capacity: none (no level kept p90 <= 1 ms)" in stdout
    assert "stopped: p90" in stdout and "<- capacity" not in stdout


def test_failed_calls_exit_1_and_are_named(
    loads: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "p.jsonl"
    rows_ = [{"id": "ok", "prompt": "fine"}, {"id": "bad", "prompt": "too long"}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows_))
    code = main(["bench", "api", "--prompts", str(prompts), "--max-concurrency", "2"])
    stdout, stderr = capsys.readouterr()
    assert code == 1
    assert "api: 8 of 17 calls failed: ContextLengthError x 8" in stderr
    # concurrency, calls, ok: the prompts alternate, so half of each level failed
    assert [cells[:3] for cells in rows(stdout).values()] == [["1", "8", "4"], ["2", "8", "4"]]


def test_bad_arguments_exit_2_before_any_model_loads(
    loads: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "api", "--max-concurrency", "0"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        main(["bench", "api", "--p90-target", "nan"])
    assert exited.value.code == 2
    assert main(["bench", "api", "--prompts", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["bench", "api", "--prompts", "langid"]) == 2  # a classification set
    assert "give a chat prompt set" in capsys.readouterr().err
    assert loads == []


needs_transformers = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("torch", "transformers")),
    reason="needs the local extra",
)


@needs_transformers
def test_bench_sweeps_a_tiny_local_model_in_batches(env: dict[str, str], tmp_path: Path) -> None:
    from fmgate.testing import make_tiny_model

    spec = f"transformers:{make_tiny_model('llama', tmp_path / 'tiny')}"
    args = ("bench", spec, "--max-concurrency", "4", "--max-tokens", "4", "--calls", "4")
    done = run_fmgate(*args, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    table = rows(done.stdout)
    assert list(table) == ["1", "2", "4"]
    assert [cells[1:3] for cells in table.values()] == [["4", "4"]] * 3
    assert [cells[-1] for cells in table.values()].count("<- capacity") == 1
    stored = fmgate.records(store=env["FMGATE_STORE"])
    assert len(stored) == 1 + 3 * 4
    # the model batches continuously: each level keeps that many rows in its batch
    levels = [(r.tags.get(CONCURRENCY), r.params.get("batch_peak")) for r in stored]
    assert levels.count((None, 1)) == 1  # the warm-up: a batch of one, no level
    assert sorted(set(levels) - {(None, 1)}) == [("1", 1), ("2", 2), ("4", 4)]
