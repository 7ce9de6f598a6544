"""Local cost: every basis with fake counters, and never a silent zero."""

from __future__ import annotations

import math
import os
import threading
import time
import types
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fmgate import InvalidRequestError
from fmgate._local import energy
from fmgate._local.energy import (
    DEFAULT_CPU_WATTS,
    DEFAULT_GPU_WATTS,
    DEFAULT_USD_PER_KWH,
    SETTINGS,
    CostSettings,
    make_meter,
    nvml_counter,
    nvml_power_limit_watts,
    rapl_counter,
)
from fmgate.backends._base import Meter

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cost.md"


@pytest.fixture(autouse=True)
def _fresh_probes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """No real RAPL or NVML: each test installs the fakes it wants."""
    monkeypatch.setattr(energy, "RAPL_ROOT", tmp_path / "no-powercap")
    monkeypatch.setattr(energy, "_nvml", lambda: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    energy._clear_caches()
    yield
    energy._clear_caches()


# --- fake RAPL -------------------------------------------------------------------------------


def _domain(root: Path, name: str, label: str, uj: int, max_uj: int = 262_143_328_850) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "name").write_text(label + "\n")
    (path / "energy_uj").write_text(f"{uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def _set(domain: Path, uj: int) -> None:
    (domain / "energy_uj").write_text(f"{uj}\n")  # same inode: an open fd sees the new value


@pytest.fixture
def rapl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Two packages, plus a core subdomain and a psys domain that must not be counted."""
    root = tmp_path / "powercap"
    pkg0 = _domain(root, "intel-rapl:0", "package-0", 1_000_000)
    _domain(root, "intel-rapl:0:0", "core", 5_000_000)
    _domain(root, "intel-rapl:1", "psys", 9_000_000)
    pkg1 = _domain(root, "intel-rapl:2", "package-1", 2_000_000)
    _domain(root, "intel-rapl-mmio:0", "package-0", 7_000_000)
    monkeypatch.setattr(energy, "RAPL_ROOT", root)
    return pkg0, pkg1


def test_rapl_counter_sums_package_domains_only(rapl: tuple[Path, Path]) -> None:
    pkg0, pkg1 = rapl
    counter = rapl_counter(pkg0.parent)
    assert counter is not None
    start = counter.read()
    assert start == (1_000_000, 2_000_000)
    _set(pkg0, 4_000_000)
    _set(pkg1, 2_500_000)
    end = counter.read()
    assert end is not None
    assert counter.joules(start, end) == pytest.approx(3.5)
    counter.close()


def test_rapl_wrap_around_uses_max_energy_range(tmp_path: Path) -> None:
    pkg = _domain(tmp_path, "intel-rapl:0", "package-0", 999_000, max_uj=1_000_000)
    counter = rapl_counter(tmp_path)
    assert counter is not None
    start = counter.read()
    _set(pkg, 500)  # wrapped: 1_000 uJ to the top, then 500 more
    end = counter.read()
    assert start is not None and end is not None
    assert counter.joules(start, end) == pytest.approx(1_500e-6)
    counter.close()


def test_rapl_unreadable_or_absent_is_not_available(
    rapl: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert rapl_counter(tmp_path / "nothing-here") is None
    real_open = os.open

    def root_only(path: Any, flags: int, *args: Any) -> int:
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", root_only)
    assert rapl_counter(rapl[0].parent) is None


def test_rapl_garbage_is_not_available(tmp_path: Path) -> None:
    pkg = _domain(tmp_path, "intel-rapl:0", "package-0", 1)
    (pkg / "energy_uj").write_text("not a number\n")
    assert rapl_counter(tmp_path) is None


def test_cpu_energy_measured_with_rapl(rapl: tuple[Path, Path]) -> None:
    pkg0, pkg1 = rapl
    meter: Meter = make_meter("cpu", CostSettings())
    _set(pkg0, 1_000_000 + 36_000_000)  # 36 J
    _set(pkg1, 2_000_000 + 36_000_000)  # 36 J
    cost = meter.stop(1.5)
    assert cost.basis == "energy_measured"
    assert cost.energy_j == pytest.approx(72.0)
    # 72 J = 2e-5 kWh, at $0.16/kWh
    assert cost.amount == Decimal("72") / Decimal(3_600_000) * DEFAULT_USD_PER_KWH
    assert cost.source is not None and "RAPL" in cost.source and "EIA" in cost.source
    print(cost)


def test_share_splits_energy_and_amount(rapl: tuple[Path, Path]) -> None:
    pkg0, _ = rapl
    settings = CostSettings(usd_per_kwh=Decimal("0.36"))
    whole, quarter = make_meter("cpu", settings), make_meter("cpu", settings)
    _set(pkg0, 1_000_000 + 100_000_000)  # 100 J for the whole batch
    full = whole.stop(2.0, 1.0)
    part = quarter.stop(2.0, 0.25)
    assert full.energy_j == pytest.approx(100.0)
    assert part.energy_j == pytest.approx(25.0)
    assert full.amount == Decimal("0.00001")  # 100 J / 3.6e6 x 0.36
    assert part.amount == Decimal("0.0000025")
    assert part.source is not None and "share 0.25" in part.source


def test_counter_that_does_not_move_is_not_a_measurement(rapl: tuple[Path, Path]) -> None:
    cost = make_meter("cpu", CostSettings()).stop(0.5)
    assert cost.basis == "energy_estimated"
    assert cost.amount is not None and cost.amount > 0


def test_counter_unreadable_at_stop_falls_back_to_estimate(rapl: tuple[Path, Path]) -> None:
    pkg0, _ = rapl
    meter = make_meter("cpu", CostSettings())
    (pkg0 / "energy_uj").write_text("")
    cost = meter.stop(0.5)
    assert cost.basis == "energy_estimated"
    assert cost.amount is not None and cost.amount > 0


# --- estimates -------------------------------------------------------------------------------


def _burn(seconds: float) -> float:
    """Spin for ``seconds`` of CPU time; returns the CPU-seconds this process used meanwhile."""
    cpu0 = time.process_time()
    x = 0
    while time.process_time() - cpu0 < seconds:
        x += sum(i * i for i in range(1000))
    return time.process_time() - cpu0


def test_cpu_estimate_is_cpu_seconds_times_watts_per_core() -> None:
    settings = CostSettings(cpu_watts=10.0)
    t0 = time.perf_counter()
    meter = make_meter("cpu", settings)
    cpu_s = _burn(0.2)
    cost = meter.stop(time.perf_counter() - t0)
    print(f"burned {cpu_s:.3f} CPU-s -> {cost.energy_j:.3f} J, ${cost.amount}: {cost.source}")
    assert cost.basis == "energy_estimated"
    assert cost.energy_j == pytest.approx(cpu_s * 10.0, rel=0.1, abs=0.05)
    expected = Decimal(repr(cost.energy_j)) / Decimal(3_600_000) * DEFAULT_USD_PER_KWH
    assert cost.amount == pytest.approx(expected, rel=Decimal("1e-9"))
    assert cost.source is not None and "CPU-s x 10 W/core (configured)" in cost.source


def test_cpu_estimate_counts_every_thread_of_the_process() -> None:
    meter = make_meter("cpu", CostSettings(cpu_watts=1.0))
    threads = [threading.Thread(target=_burn, args=(0.1,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cost = meter.stop(0.25)
    # each thread burns >= 0.1 CPU-s of process time (the GIL may make it more, never less)
    assert cost.energy_j is not None and cost.energy_j >= 0.1


def test_cpu_without_cpu_time_assumes_one_busy_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "process_time", lambda: 42.0)  # a clock that never moves
    cost = make_meter("cpu", CostSettings()).stop(0.5)
    assert cost.basis == "energy_estimated"
    assert cost.energy_j == pytest.approx(0.5 * DEFAULT_CPU_WATTS)
    assert cost.source is not None and "1 core" in cost.source


def test_accelerator_without_nvml_uses_default_board_watts() -> None:
    cost = make_meter("cuda:0", CostSettings()).stop(2.0)
    assert cost.basis == "energy_estimated"
    assert cost.energy_j == pytest.approx(2.0 * DEFAULT_GPU_WATTS)
    assert cost.source is not None and "default" in cost.source
    mps = make_meter("mps", CostSettings(gpu_watts=30.0)).stop(2.0)
    assert mps.energy_j == pytest.approx(60.0)
    assert mps.source is not None and "30 W (configured)" in mps.source


def test_a_very_short_call_is_never_free() -> None:
    cost = make_meter("cpu", CostSettings()).stop(1e-6)
    assert cost.amount is not None and cost.amount > 0
    assert cost.energy_j is not None and cost.energy_j > 0


@pytest.mark.parametrize(
    ("busy_s", "share"), [(0.0, 1.0), (-1.0, 1.0), (math.nan, 1.0), (1.0, 0.0), (1.0, 2.0)]
)
def test_what_cannot_be_priced_is_unknown_never_zero(busy_s: float, share: float) -> None:
    cost = make_meter("cpu", CostSettings()).stop(busy_s, share)
    assert cost.basis == "unknown"
    assert cost.amount is None
    assert cost.source


# --- hardware time ---------------------------------------------------------------------------


def test_hardware_time_prices_the_time_held_and_keeps_the_energy(rapl: tuple[Path, Path]) -> None:
    pkg0, _ = rapl
    settings = CostSettings(hardware_usd_per_hour=Decimal("1.2"))
    meter = make_meter("cpu", settings)
    _set(pkg0, 1_000_000 + 50_000_000)  # 50 J
    cost = meter.stop(3.0, 0.5)
    assert cost.basis == "hardware_time"
    assert cost.amount == Decimal("0.0005")  # 1.2 $/h x 3 s / 3600 x 0.5
    assert cost.energy_j == pytest.approx(25.0)
    assert cost.source is not None and "$1.2/h" in cost.source and "RAPL" in cost.source


def test_hardware_time_with_an_estimated_energy() -> None:
    cost = make_meter("cuda:0", CostSettings(hardware_usd_per_hour=Decimal("2"))).stop(1.8)
    assert cost.basis == "hardware_time"
    assert cost.amount == Decimal("0.001")
    assert cost.energy_j == pytest.approx(1.8 * DEFAULT_GPU_WATTS)


# --- fake NVML -------------------------------------------------------------------------------


class FakeNvml:
    """The few pynvml calls fmgate makes, over two GPUs numbered in PCI order."""

    def __init__(self, energy_supported: bool = True) -> None:
        self.energy_mj = {0: 10_000, 1: 20_000, 3: 30_000}
        self.supported = energy_supported
        self.uuids = {"GPU-aaaa": 1}

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index not in self.energy_mj:
            raise RuntimeError("NVML_ERROR_INVALID_ARGUMENT")
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:
        return self.uuids[uuid]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if not self.supported:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return self.energy_mj[handle]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return 350_000  # mW


def test_nvml_counter_reads_millijoules() -> None:
    fake = FakeNvml()
    counter = nvml_counter(0, nvml=fake)
    assert counter is not None
    start = counter.read()
    fake.energy_mj[0] += 123_456
    end = counter.read()
    assert start is not None and end is not None
    assert counter.joules(start, end) == pytest.approx(123.456)
    assert nvml_counter(0, nvml=FakeNvml(energy_supported=False)) is None
    assert nvml_power_limit_watts(0, nvml=fake) == 350.0


def test_cuda_energy_measured_with_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml()
    monkeypatch.setattr(energy, "_nvml", lambda: fake)
    meter = make_meter("cuda:0", CostSettings())
    fake.energy_mj[0] += 90_000  # 90 J
    cost = meter.stop(0.3)
    assert cost.basis == "energy_measured"
    assert cost.energy_j == pytest.approx(90.0)
    assert cost.amount == Decimal("0.000004")  # 90 J / 3.6e6 x 0.16
    assert cost.source is not None and "NVML" in cost.source


def test_cuda_without_energy_counter_estimates_from_the_power_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(energy, "_nvml", lambda: FakeNvml(energy_supported=False))
    cost = make_meter("cuda", CostSettings()).stop(2.0)
    assert cost.basis == "energy_estimated"
    assert cost.energy_j == pytest.approx(700.0)
    assert cost.source is not None and "NVML power limit" in cost.source
    configured = make_meter("cuda:0", CostSettings(gpu_watts=100)).stop(2.0)
    assert configured.energy_j == pytest.approx(200.0)


def test_cuda_index_follows_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    counter = nvml_counter(0, nvml=fake)
    assert counter is not None and counter.read() == (30_000,)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa")
    counter = nvml_counter(0, nvml=fake)
    assert counter is not None and counter.read() == (20_000,)


def test_cuda_index_matches_torch_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    props = types.SimpleNamespace(uuid="aaaa")
    cuda = types.SimpleNamespace(get_device_properties=lambda index: props)
    monkeypatch.setitem(__import__("sys").modules, "torch", types.SimpleNamespace(cuda=cuda))
    counter = nvml_counter(0, nvml=FakeNvml())
    assert counter is not None and counter.read() == (20_000,)


# --- concurrency and speed -------------------------------------------------------------------


def test_concurrent_meters_each_keep_their_own_start(rapl: tuple[Path, Path]) -> None:
    pkg0, _ = rapl
    first = make_meter("cpu", CostSettings())
    _set(pkg0, 1_000_000 + 1_000_000)
    second = make_meter("cpu", CostSettings())
    _set(pkg0, 1_000_000 + 3_000_000)
    assert first.stop(1.0).energy_j == pytest.approx(3.0)
    assert second.stop(1.0).energy_j == pytest.approx(2.0)


def test_meters_from_many_threads(rapl: tuple[Path, Path]) -> None:
    results: list[Any] = []

    def call() -> None:
        for _ in range(200):
            results.append(make_meter("cpu", CostSettings()).stop(0.01))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1600
    assert all(r.amount is not None and r.amount > 0 for r in results)


# --- settings --------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = CostSettings.from_options({})
    assert settings == CostSettings()
    assert settings.usd_per_kwh == Decimal("0.16")
    assert settings.cpu_watts is None and settings.gpu_watts is None
    assert settings.hardware_usd_per_hour is None


def test_from_options_reads_its_keys_and_ignores_the_others() -> None:
    settings = CostSettings.from_options(
        {
            "usd_per_kwh": 0.1,
            "cpu_watts": 8,
            "gpu_watts": 300.0,
            "hardware_usd_per_hour": "1.20",
            "device": "cpu",
        }
    )
    assert settings.usd_per_kwh == Decimal("0.1")  # not 0.1000000000000000055511...
    assert settings.cpu_watts == 8.0 and isinstance(settings.cpu_watts, float)
    assert settings.gpu_watts == 300.0
    assert settings.hardware_usd_per_hour == Decimal("1.20")
    assert set(SETTINGS) == {"usd_per_kwh", "cpu_watts", "gpu_watts", "hardware_usd_per_hour"}


@pytest.mark.parametrize(
    "options",
    [
        {"cpu_watts": -5},
        {"gpu_watts": 0},
        {"cpu_watts": math.inf},
        {"gpu_watts": math.nan},
        {"cpu_watts": True},
        {"cpu_watts": "12"},
        {"usd_per_kwh": -0.1},
        {"usd_per_kwh": "cheap"},
        {"usd_per_kwh": "NaN"},
        {"usd_per_kwh": False},
        {"hardware_usd_per_hour": -1},
        {"hardware_usd_per_hour": "Infinity"},
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError, match=next(iter(options))):
        CostSettings.from_options(options)


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(InvalidRequestError):
        CostSettings(cpu_watts=-1.0)


def test_a_configured_zero_price_is_respected() -> None:
    cost = make_meter("cpu", CostSettings(usd_per_kwh=Decimal(0))).stop(0.5)
    assert cost.amount == 0 and cost.source is not None and "(configured)" in cost.source


def test_every_default_is_documented_with_its_source() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for needle in (
        f"${DEFAULT_USD_PER_KWH}/kWh",
        "eia.gov",
        f"{DEFAULT_CPU_WATTS:g} W",
        f"{DEFAULT_GPU_WATTS:g} W",
        "TDP_cpu.csv",
        "TDP_gpu.csv",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetTotalEnergyConsumption",
        "energy_uj",
        "max_energy_range_uj",
        "hardware_usd_per_hour",
        *SETTINGS,
    ):
        assert needle in text, needle
