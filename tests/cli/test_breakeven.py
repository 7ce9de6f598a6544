"""``fmgate breakeven`` and the break-even options of ``report``: stored records in, the
break-even table out, priced as fmgate._economics prices it (tests/test_economics.py's numbers)."""

from __future__ import annotations

import argparse
import csv
from decimal import Decimal
from pathlib import Path

import pytest

from fmgate._economics import Hardware
from fmgate._errors import ConfigurationError
from fmgate._record import Score
from fmgate._store import SqliteStore
from fmgate.cli import build_parser
from fmgate.cli._economics import economics_options
from tests.test_economics import T0, api, sweep

from .conftest import fmgate


@pytest.fixture
def stored(env: dict[str, str]) -> dict[str, str]:
    """The store holds the sweep of ``small`` (capacity 2 calls/s at concurrency 4 under the
    API's 2.85 s p90) and 4 API calls at $0.001, graded 0.6 and 1.0 by contains."""
    store = SqliteStore(env["FMGATE_STORE"])
    records = sweep() + api()
    for record in records:
        store.write(record)
    for record in records:
        store.write_score(Score(record.id, "contains", 1.0 if record.alias == "api" else 0.6, T0))
    store.close()
    return env


def test_breakeven_prints_the_volume_where_self_hosting_pays(
    stored: dict[str, str], tmp_path: Path
) -> None:
    """$1.46/h x 730 h = $1065.80 a month; the API's $0.001 a call: 1,065,800 calls a month.
    At 10M calls: 2,628,000 calls per machine at 50%: 4 machines, $4263.20 vs the API's $10000."""
    done = fmgate(
        "breakeven", "--hardware", "1.46", "--out", str(tmp_path / "out"), env=stored, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "1.07M calls/month" in out
    assert "lower quality: 0.60 vs 1.00 (contains)" in out
    assert "$1.46/h" in out and "assumed" not in out
    ten_million = next(line for line in out.splitlines() if line.strip().startswith("10M"))
    assert ten_million.split()[:5] == ["10M", "4", "$4263.20", "$10000.00", "$0.426"]
    assert "self-hosted" in ten_million
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written == {"breakeven.md", "breakeven.html", "breakeven.csv"}
    with (tmp_path / "out" / "breakeven.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["calls_per_month"] for r in rows] == [
        "1000",
        "10000",
        "100000",
        "1000000",
        "10000000",
    ]
    assert {r["breakeven_calls_per_month"] for r in rows} == {"1065800"}
    assert rows[-1]["self_hosted_usd_per_month"] == "4263.20"
    assert "data:image/png;base64," in (tmp_path / "out" / "breakeven.html").read_text()


def test_the_config_table_and_the_flags_that_override_it(
    stored: dict[str, str], tmp_path: Path
) -> None:
    """[breakeven] names $100/h: never (27.8x the API's price per call); --hardware 1.46 wins."""
    (tmp_path / "fmgate.toml").write_text("[breakeven]\nhardware_usd_per_hour = 100\n")
    done = fmgate("breakeven", env=stored, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "never: 27.8x the API's price per call" in done.stdout
    done = fmgate("breakeven", "--hardware", "1.46", env=stored, cwd=tmp_path)
    assert "1.07M calls/month" in done.stdout


def test_report_shows_the_break_even_with_the_assumed_machine(
    stored: dict[str, str], tmp_path: Path
) -> None:
    """No --hardware: the CPU row of the table, aws-m7g-large at $0.0816/h, said to be assumed:
    $59.568 a month over $0.001 a call: 59,568 calls, 59.6k."""
    done = fmgate("report", "--out", str(tmp_path / "r"), env=stored, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Break-even: self-hosting vs API" in done.stdout
    assert "59.6k calls/month" in done.stdout
    md = (tmp_path / "r" / "report.md").read_text()
    assert "aws-m7g-large ($0.0816/h) (assumed)" in md
    assert "2026-06-17" in md  # the price's date, with its source


def test_nothing_to_set_side_by_side_exits_3(env: dict[str, str], tmp_path: Path) -> None:
    store = SqliteStore(env["FMGATE_STORE"])
    for record in sweep():  # a self-hosted model, no API
        store.write(record)
    store.close()
    done = fmgate("breakeven", env=env, cwd=tmp_path)
    assert done.returncode == 3
    assert "--against SPEC" in done.stderr
    done = fmgate("breakeven", "--run", "nope", env=env, cwd=tmp_path)
    assert done.returncode == 3 and "no records match" in done.stderr


def test_hardware_list_prints_the_table_with_sources_and_dates(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = fmgate("breakeven", "--hardware-list", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "aws-g5-xlarge" in done.stdout and "1.006" in done.stdout
    assert "2026-06-17" in done.stdout and "while_running" in done.stdout


def test_bad_options_exit_2_naming_where_they_were_set(env: dict[str, str], tmp_path: Path) -> None:
    done = fmgate("breakeven", "--hardware", "a-tpu", env=env, cwd=tmp_path)
    assert done.returncode == 2 and "--hardware: Unknown hardware 'a-tpu'" in done.stderr
    (tmp_path / "fmgate.toml").write_text("[breakeven]\nutilisation = 2\n")
    done = fmgate("breakeven", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "fmgate.toml: [breakeven] utilisation: utilisation is a fraction" in done.stderr
    done = fmgate("breakeven", "--utilisation", "0", env=env, cwd=tmp_path)
    assert done.returncode == 2 and "fraction in (0, 1]" in done.stderr


def _options(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["breakeven", *argv])


def test_owned_hardware_from_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$8760 over 1 year = $1/h, with its power."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FMGATE_CONFIG", raising=False)
    args = _options(
        "--owned", "8760", "--lifetime-years", "1", "--busy-watts", "300",
        "--idle-watts", "100", "--usd-per-kwh", "0.20", "--utilisation", "0.25",
        "--p90-target", "1.5", "--against", "openai:gpt-4o-mini",
    )  # fmt: skip
    options = economics_options(args)
    machine = options.hardware
    assert isinstance(machine, Hardware) and machine.owned
    assert machine.usd_per_hour == Decimal(1)
    assert (machine.busy_watts, machine.idle_watts) == (300, 100)
    assert machine.usd_per_kwh == Decimal("0.20")
    assert options.utilisation == 0.25 and options.target_p90_s == 1.5
    assert options.against == ("openai:gpt-4o-mini",)
    with pytest.raises(ConfigurationError, match="describe owned hardware: add --owned"):
        economics_options(_options("--hardware", "h100", "--busy-watts", "300"))
    (tmp_path / "fmgate.toml").write_text('[breakeven]\nhardware = "h100"\nbusy_watts = 700\n')
    with pytest.raises(ConfigurationError, match="describe owned hardware"):
        economics_options(_options())
    # a machine named by a flag replaces the file's, its power settings included
    assert economics_options(_options("--hardware", "2")).hardware == Hardware("$2/h", Decimal(2))


def test_compare_prints_the_break_even_against_an_api_not_run(
    env: dict[str, str], project: Path
) -> None:
    """A self-hosted stub model, gpt-4o-mini priced from its tokens: the table after the others."""
    done = fmgate(
        "compare", "-m", "alpha", "--prompts", "prompts.jsonl", "--hardware", "1",
        "--against", "openai:gpt-4o-mini", "--out", "out", env=env, cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("Break-even: self-hosting vs API")[1]
    assert "alpha" in table and "openai:gpt-4o-mini" in table and "$1/h" in table
    assert "(estimated)" in table
    assert "## Break-even: self-hosting vs API" in (project / "out" / "report.md").read_text()


def test_a_bad_breakeven_table_is_refused_naming_the_key(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "fmgate.toml").write_text("[breakeven]\nhardware_price = 2\n")
    done = fmgate("breakeven", env=env, cwd=tmp_path)
    assert done.returncode == 2 and "[breakeven]: unknown key 'hardware_price'" in done.stderr
    (tmp_path / "fmgate.toml").write_text('[breakeven]\nagainst = ["gpt-4o-mini"]\n')
    done = fmgate("breakeven", env=env, cwd=tmp_path)
    assert done.returncode == 2 and "'backend:model' specs" in done.stderr
