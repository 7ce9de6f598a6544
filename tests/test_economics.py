"""Break-even arithmetic against values worked out by hand in the comments."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from fmgate._economics import (
    HOURS_PER_MONTH,
    Hardware,
    breakeven,
    capacity,
    default_hardware,
    find_hardware,
    hardware_table,
    owned,
    rented,
)
from fmgate._errors import ConfigurationError
from fmgate._record import Access, CallRecord, Cost, Latency, Outcome, Score, Usage

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def call(
    n: int,
    alias: str,
    start: float,
    seconds: float,
    *,
    concurrency: int | None = None,
    tokens: int = 20,
    usd: str | None = None,
    distribution: str = "self_hosted",
    prompt: str | None = None,
    ok: bool = True,
    joules: float | None = None,
    hardware: str = "cpu",
) -> CallRecord:
    tags = {"fmgate.role": "candidate"}
    if concurrency is not None:
        tags["fmgate.concurrency"] = str(concurrency)
    if prompt is not None:
        tags["fmgate.prompt"] = prompt
    return CallRecord(
        id=f"{alias}-{n}",
        started_at=T0 + timedelta(seconds=start),
        alias=alias,
        backend="fake",
        model_id=alias,
        distribution=distribution,  # type: ignore[arg-type]
        operation="chat",
        usage=Usage(input_tokens=10, output_tokens=tokens),
        latency=Latency(total_s=seconds),
        cost=Cost(Decimal(usd), "list_price") if usd else Cost(energy_j=joules),
        access=Access(hardware=hardware),
        outcome=Outcome("ok") if ok else Outcome("error", error_type="ServerError"),
        tags=tags,
    )


def sweep() -> list[CallRecord]:
    """Concurrency 1: 4 calls of 1 s back to back: busy 4 s, 1 call/s, p90 1 s.
    Concurrency 4: two rounds of 4 calls of 2 s: busy 4 s, 8 calls, 2 calls/s, p90 2 s.
    Concurrency 8: two rounds of 8 calls of 6 s: busy 12 s, 16 calls, 1.33 calls/s, p90 6 s.
    Each call: 20 output tokens, 50 J (measured energy)."""
    records = [call(i, "small", i, 1.0, concurrency=1, joules=50.0) for i in range(4)]
    records += [
        call(10 + i, "small", 10 + 2 * (i // 4), 2.0, concurrency=4, joules=50.0) for i in range(8)
    ]
    records += [
        call(20 + i, "small", 20 + 6 * (i // 8), 6.0, concurrency=8, joules=50.0) for i in range(16)
    ]
    return records


def api() -> list[CallRecord]:
    """4 calls at $0.001 each, 10 output tokens; latencies 1.5, 2.5, 2.0, 3.0 s:
    p90 = 2.5 + 0.7 x (3.0 - 2.5) = 2.85 s (rank 0.9 x 3 = 2.7)."""
    return [
        call(100 + i, "api", 100 + 5 * i, s, tokens=10, usd="0.001", distribution="api")
        for i, s in enumerate((1.5, 2.5, 2.0, 3.0))
    ]


def test_capacity_levels_from_a_sweep() -> None:
    cap = capacity(sweep())
    assert cap is not None and cap.basis == "sweep"
    levels = {lv.concurrency: lv for lv in cap.levels}
    assert levels[1].busy_s == pytest.approx(4.0)
    assert levels[1].calls_per_s == pytest.approx(1.0)
    assert levels[1].output_tokens_per_s == pytest.approx(20.0)
    assert levels[4].calls_per_s == pytest.approx(2.0)
    assert levels[4].output_tokens_per_s == pytest.approx(40.0)
    assert levels[4].latency_p90_s == pytest.approx(2.0)
    assert levels[8].calls_per_s == pytest.approx(16 / 12)
    # no target: the most calls per second
    assert cap.level.concurrency == 4 and cap.met


def test_capacity_keeps_the_latency_target() -> None:
    cap = capacity(sweep(), target_p90_s=1.5)  # only concurrency 1 keeps p90 <= 1.5 s
    assert cap is not None and cap.level.concurrency == 1 and cap.met
    cap = capacity(sweep(), target_p90_s=0.5)  # none does: the lowest p90, flagged
    assert cap is not None and cap.level.concurrency == 1 and not cap.met


def test_capacity_of_batched_calls_counts_a_batch_once() -> None:
    """Two batches of 4 calls sharing one 2 s clock each, at t=0 and t=2, and a failed call of
    2 s at t=30: busy 6 s (the failure held the machine), 8 ok calls: 1.33 calls/s. The warm-up
    is left out."""
    records = [call(i, "local", 2 * (i // 4), 2.0, distribution="local") for i in range(8)]
    records.append(call(9, "local", 30, 2.0, distribution="local", ok=False))
    warm = call(10, "local", 40, 9.0, distribution="local")
    records.append(dataclasses.replace(warm, tags={**warm.tags, "fmgate.warmup": "true"}))
    cap = capacity(records)
    assert cap is not None and cap.basis == "observed"
    assert cap.level.ok == 8 and cap.level.calls == 9
    assert cap.level.busy_s == pytest.approx(6.0)
    assert cap.calls_per_s == pytest.approx(8 / 6)


def test_rented_break_even_by_hand() -> None:
    """$1.46/h x 730 h = $1065.80 a month. Target = the API's p90 (2.85 s): concurrency 4, at
    2 calls/s: 2 x 3600 x 730 = 5,256,000 calls a month, 2,628,000 at 50% utilisation.
    API $0.001 a call: V* = 1065.80 / 0.001 = 1,065,800 calls a month."""
    [be] = breakeven(sweep() + api(), hardware=rented("1.46"), utilisation=0.5)
    assert be.local == "small" and be.api.label == "api"
    assert be.capacity.level.concurrency == 4
    assert be.api.latency_p90_s == pytest.approx(2.85)
    assert be.fixed_usd_per_month == Decimal("1065.80")
    assert be.usd_per_call == 0
    assert be.calls_per_machine_month == Decimal(2628000)
    assert be.volume == Decimal("1065800")
    assert be.self_hosted_per_month(100_000) == Decimal("1065.80")
    assert be.api_per_month(100_000) == Decimal("100.000")
    local, api_1k = be.per_1k_calls(100_000)
    assert local == Decimal("10.658") and api_1k == Decimal("1.000")
    # 3,000,000 calls need 2 machines: $2131.60 against the API's $3000
    assert be.machines(3_000_000) == 2
    assert be.self_hosted_per_month(3_000_000) == Decimal("2131.60")
    # per 1M output tokens at 1M calls: 1065.80 / (1e6 x 20) x 1e6 = 53.29; API 0.001/10 x 1e6
    local_m, api_m = be.per_1m_output_tokens(1_000_000)
    assert local_m == Decimal("53.29") and api_m == Decimal("100")


def test_owned_break_even_by_hand() -> None:
    """$8760 over 1 year = $1/h. Busy 300 W, idle 100 W, $0.20/kWh.
    Fixed: 730 + 100 W x 730 h x 0.20 / 1000 = 730 + 14.60 = $744.60 a month.
    Each call at 2 calls/s takes 0.5 s of the machine: (300 - 100) W x 0.5 s = 100 J =
    100 / 3.6e6 kWh x $0.20 = $0.0000055556. V* = 744.60 / (0.001 - 0.0000055556) = 748,759.8."""
    machine = owned(8760, lifetime_years=1, busy_watts=300, idle_watts=100, usd_per_kwh="0.20")
    assert machine.usd_per_hour == Decimal(1)
    [be] = breakeven(sweep() + api(), hardware=machine)
    assert be.fixed_usd_per_month == Decimal("744.60")
    assert float(be.usd_per_call) == pytest.approx(100 / 3.6e6 * 0.20)
    assert be.volume is not None and float(be.volume) == pytest.approx(744.6 * 180000 / 179)


def test_owned_power_from_the_records_energy() -> None:
    """No busy watts given: 50 J a call x 2 calls/s = 100 W; idle defaults to half, 50 W."""
    machine = owned(8760, lifetime_years=1, usd_per_kwh="0.20")
    [be] = breakeven(sweep() + api(), hardware=machine)
    assert be.busy_watts == pytest.approx(100.0)
    # fixed: 730 + 50 W x 730 h x 0.2 / 1000 = 730 + 7.30
    assert be.fixed_usd_per_month == Decimal("737.30")
    assert any("Barroso" in note for note in be.notes)


def test_never_breaks_even_on_an_expensive_machine() -> None:
    """$100/h: $73,000 a month over 2,628,000 calls = $0.02778 a call, 27.8x the API's."""
    [be] = breakeven(sweep() + api(), hardware=rented(100))
    assert be.volume is None
    assert "27.8x" in be.reason


def test_serverless_has_no_fixed_cost() -> None:
    """Billed per active second at $3.60/h: 0.5 s a call = $0.0005 < $0.001: any volume."""
    machine = Hardware("serverless", Decimal("3.6"), billing="active_seconds")
    [be] = breakeven(sweep() + api(), hardware=machine)
    assert be.usd_per_call == Decimal("0.0005")
    assert be.volume == 0
    assert be.self_hosted_per_month(1000) == Decimal("0.5000")
    expensive = dataclasses.replace(machine, usd_per_hour=Decimal(36))
    [be] = breakeven(sweep() + api(), hardware=expensive)
    assert be.volume is None and be.reason.startswith("never")


def test_api_priced_on_the_same_prompts() -> None:
    """The API answered prompts p0..p3; the local model p0, p1 only: the API's cost per call
    is over p0 and p1 ($0.001 and $0.003)."""
    local = [call(i, "small", 2 * i, 1.0, prompt=f"p{i}", distribution="local") for i in range(2)]
    remote = [
        call(10 + i, "api", 10 + i, 1.0, usd=usd, prompt=f"p{i}", distribution="api")
        for i, usd in enumerate(("0.001", "0.003", "0.010", "0.010"))
    ]
    [be] = breakeven(local + remote, hardware=rented(1))
    assert be.api.cost_per_call == Decimal("0.002")
    assert be.api.calls == 2


def test_quality_is_shown_beside_the_cost() -> None:
    records = sweep() + api()
    scores = [Score(r.id, "contains", 1.0 if r.alias == "api" else 0.6, T0) for r in records]
    [be] = breakeven(records, scores, hardware=rented(1))
    assert be.local_quality == pytest.approx(0.6)
    assert be.quality_note == "lower quality: 0.60 vs 1.00 (contains)"


def test_against_an_api_not_run_prices_the_local_usage() -> None:
    """gpt-4o-mini priced by genai-prices for each local call's usage (10 in, 20 out)."""
    from fmgate._cost import list_price

    [be] = breakeven(sweep(), hardware=rented(1), against=["openai:gpt-4o-mini"])
    expected = list_price("openai", "gpt-4o-mini", Usage(input_tokens=10, output_tokens=20))
    assert expected.cost.amount is not None
    assert be.api.cost_per_call == expected.cost.amount
    assert be.api.estimated_from == "small"
    assert be.quality_note == "not compared: API not run (small not scored)"
    assert be.capacity.target_p90_s is None  # no API latency to keep


def test_hardware_table_has_sources_and_dates() -> None:
    table = hardware_table()
    assert len(table) >= 8
    for row in table.values():
        assert row.usd_per_hour > 0
        assert row.source.rsplit(", ", 1)[1][:2] == "20"  # a date
    assert find_hardware("aws-g5-xlarge").usd_per_hour == Decimal("1.006")
    assert find_hardware("H100").name == "lambda-h100-sxm"
    assert find_hardware("1.25").usd_per_hour == Decimal("1.25")
    with pytest.raises(ConfigurationError, match="aws-g5-xlarge"):
        find_hardware("a-tpu")


def test_default_hardware_follows_the_records() -> None:
    cpu = default_hardware(sweep())
    assert cpu.name == "aws-m7g-large" and cpu.assumed
    h100 = [call(0, "x", 0, 1.0, hardware="cuda:NVIDIA H100 80GB HBM3")]
    assert default_hardware(h100).name == "lambda-h100-sxm"
    other = [call(0, "x", 0, 1.0, hardware="cuda:NVIDIA GeForce RTX 4090")]
    assert default_hardware(other).name == "aws-g5-xlarge"


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="utilisation"):
        breakeven(sweep() + api(), hardware=rented(1), utilisation=0)
    with pytest.raises(ConfigurationError, match="USD"):
        rented("lots")
    with pytest.raises(ConfigurationError, match="lifetime_years"):
        owned(1000, lifetime_years=0)
    assert HOURS_PER_MONTH == 730


def test_the_store_path_reads_only_what_it_needs_and_agrees(tmp_path: object) -> None:
    """calls_from_store reads a few columns (tags decoded) and gives the same break-even as the
    records themselves, scores included."""
    from pathlib import Path

    from fmgate import SqliteStore
    from fmgate._economics import calls_from_store

    records = sweep() + api()
    scores = [Score(r.id, "contains", 1.0 if r.alias == "api" else 0.5, T0) for r in records]
    store = SqliteStore(Path(str(tmp_path)) / "store.db")
    for record in records:
        store.write(record)
    for score in scores:
        store.write_score(score)
    calls, values = calls_from_store(store)
    assert len(calls) == len(records) and len(values) == len(scores)
    assert {c.concurrency for c in calls} == {1, 4, 8, None}
    [stored] = breakeven(calls, values, hardware=rented("1.46"))
    [direct] = breakeven(records, scores, hardware=rented("1.46"))
    assert stored.volume == direct.volume == Decimal("1065800")
    assert stored.local_quality == direct.local_quality == pytest.approx(0.5)
    only_api, _ = calls_from_store(store, alias="api")
    assert {c.label for c in only_api} == {"api"}
    with pytest.raises(Exception, match="latency_total_s"):
        store.rows(["no_such_column"])
    store.close()


def test_the_docs_list_every_hardware_row_at_its_price() -> None:
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "economics.md").read_text(encoding="utf-8")
    for name, row in hardware_table().items():
        assert f"| `{name}` |" in text
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| `{name}` |"))
        assert f"| {row.usd_per_hour} |" in line


def test_the_worked_example_in_the_docs() -> None:
    """docs/economics.md: 12 served calls over 3.2184 s of busy time (r = 3.729 calls/s) on
    aws-m7g-large ($0.0816/h): F = $59.568, P = 4,899,258 calls a month at 50%; Haiku at
    $0.00006787 a call breaks even at 877,721 calls a month; gpt-4o-mini at $0.0000115 never
    (1.06x its price per call)."""
    # 12 calls starting 0.25 s apart, all ending at 3.2184 s: one busy stretch of 3.2184 s
    served = [call(i, "smollm2-served", 0.25 * i, 3.2184 - 0.25 * i) for i in range(12)]
    haiku = [
        call(
            100 + i,
            "haiku",
            10 + i,
            1.0,
            usd="0.00006786666666666666666666666667",
            distribution="api",
        )
        for i in range(3)
    ]
    mini = [
        call(200 + i, "mini", 20 + i, 1.0, usd="0.0000115", distribution="api") for i in range(3)
    ]
    machine = find_hardware("aws-m7g-large")
    pairs = {
        be.api.label: be
        for be in breakeven(served + haiku + mini, hardware=machine, target_p90_s=10)
    }
    be = pairs["haiku"]
    assert be.capacity.calls_per_s == pytest.approx(12 / 3.2184)
    assert be.fixed_usd_per_month == Decimal("59.5680")
    assert float(be.calls_per_machine_month) == pytest.approx(4_899_258, rel=1e-4)
    assert be.volume is not None and round(be.volume) == 877_721
    assert pairs["mini"].volume is None and "1.06x" in pairs["mini"].reason


def test_a_server_that_names_no_hardware_is_assumed_a_one_gpu_machine_and_said_so() -> None:
    unknown = [dataclasses.replace(c, access=Access()) for c in sweep()]
    machine = default_hardware(unknown)
    assert machine.name == "aws-g5-xlarge" and machine.assumed
    assert "unknown" in machine.why_assumed
    assert default_hardware(sweep()).why_assumed == "the records ran on cpu"
