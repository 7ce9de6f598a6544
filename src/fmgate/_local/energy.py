"""Local cost: what one in-process call cost, never a silent zero.

A meter is started when a call starts and stopped when it ends (``Meter`` in ``backends/_base``).
The basis, in order of preference:

- ``hardware_time``: the configured ``hardware_usd_per_hour`` x busy seconds x share;
- ``energy_measured``: NVML's energy counter on CUDA, RAPL package counters on CPU, x $/kWh;
- ``energy_estimated``: process CPU-seconds x watts per busy core on CPU, busy seconds x board
  watts on an accelerator, x $/kWh;
- ``unknown``: amount ``None``, with the reason in ``source``.

docs/cost.md gives the formulas and where every default number comes from. Which energy source a
device has is probed once per process; starting and stopping a meter then costs microseconds.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import InvalidRequestError
from .._record import Cost, CostBasis

if TYPE_CHECKING:
    from ..backends._base import Meter

__all__ = [
    "DEFAULT_CPU_WATTS",
    "DEFAULT_GPU_WATTS",
    "DEFAULT_USD_PER_KWH",
    "SETTINGS",
    "CostSettings",
    "EnergyCounter",
    "NvmlCounter",
    "RaplCounter",
    "make_meter",
    "nvml_counter",
    "nvml_power_limit_watts",
    "process_peak_memory",
    "rapl_counter",
]

# US average residential retail price of electricity in 2023, about 16 cents/kWh (EIA, Electric
# Power Annual 2023). docs/cost.md has the reference.
DEFAULT_USD_PER_KWH = Decimal("0.16")
USD_PER_KWH_SOURCE = "EIA 2023 US residential average"
# Green Algorithms' TDP per core for an unknown CPU ("Any" row of data/TDP_cpu.csv).
DEFAULT_CPU_WATTS = 12.0
CPU_WATTS_SOURCE = "Green Algorithms TDP/core for any CPU"
# Green Algorithms' TDP for an unknown GPU ("Any" row of data/TDP_gpu.csv).
DEFAULT_GPU_WATTS = 200.0
GPU_WATTS_SOURCE = "Green Algorithms TDP for any GPU"

RAPL_ROOT = Path("/sys/class/powercap")
_J_PER_KWH = Decimal(3_600_000)
_S_PER_HOUR = Decimal(3600)
_MONEY = Context(prec=12)

SETTINGS: dict[str, tuple[type, ...]] = {
    "usd_per_kwh": (float, int, str, Decimal),
    "cpu_watts": (float, int),
    "gpu_watts": (float, int),
    "hardware_usd_per_hour": (float, int, str, Decimal),
}


@dataclass(frozen=True, slots=True)
class CostSettings:
    """How local calls are priced: from the alias or load() settings (docs/cost.md).

    ``cpu_watts`` is per busy core; ``None`` for either watts means the documented default (for
    CUDA, the power limit NVML reports). ``hardware_usd_per_hour`` switches to ``hardware_time``.
    """

    usd_per_kwh: Decimal = DEFAULT_USD_PER_KWH
    cpu_watts: float | None = None
    gpu_watts: float | None = None
    hardware_usd_per_hour: Decimal | None = None

    def __post_init__(self) -> None:
        _check_price("usd_per_kwh", self.usd_per_kwh)
        _check_price("hardware_usd_per_hour", self.hardware_usd_per_hour)
        _check_watts("cpu_watts", self.cpu_watts)
        _check_watts("gpu_watts", self.gpu_watts)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> CostSettings:
        """The settings named in ``SETTINGS``, from a backend's options; other keys are ignored."""
        price = options.get("usd_per_kwh")
        hardware = options.get("hardware_usd_per_hour")
        return cls(
            usd_per_kwh=DEFAULT_USD_PER_KWH if price is None else _decimal("usd_per_kwh", price),
            cpu_watts=_float("cpu_watts", options.get("cpu_watts")),
            gpu_watts=_float("gpu_watts", options.get("gpu_watts")),
            hardware_usd_per_hour=(
                None if hardware is None else _decimal("hardware_usd_per_hour", hardware)
            ),
        )


def _decimal(key: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, SETTINGS[key]):
        raise InvalidRequestError(f"{key!r} must be a number of USD, not {value!r}.")
    try:
        # str() first, so 0.1 (a float) becomes Decimal("0.1"), not its binary expansion.
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRequestError(f"{key!r} must be a number of USD, not {value!r}.") from None


def _float(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestError(f"{key!r} must be a number of watts, not {value!r}.")
    return float(value)


def _check_price(key: str, value: Decimal | None) -> None:
    if value is None:
        return
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise InvalidRequestError(f"{key!r} must be a finite amount of USD >= 0, not {value}.")


def _check_watts(key: str, value: float | None) -> None:
    if value is None:
        return
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidRequestError(f"{key!r} must be a positive, finite number of watts: {value}.")


# --- energy counters -------------------------------------------------------------------------


class EnergyCounter(Protocol):
    """A cumulative energy counter: ``read`` a snapshot (None when unreadable now)."""

    label: str

    def read(self) -> tuple[int, ...] | None: ...

    def joules(self, start: tuple[int, ...], end: tuple[int, ...]) -> float: ...


class RaplCounter:
    """The package domains of Linux powercap RAPL (``intel-rapl:N``), summed.

    The files stay open and are re-read with ``pread`` at offset 0, which makes sysfs regenerate
    them: a few microseconds per read, safe from any thread.
    """

    label = "RAPL package energy"

    def __init__(self, fds: Sequence[int], max_ranges_uj: Sequence[int]) -> None:
        self._fds = tuple(fds)
        self._ranges = tuple(max_ranges_uj)

    def read(self) -> tuple[int, ...] | None:
        try:
            return tuple(int(os.pread(fd, 32, 0)) for fd in self._fds)
        except (OSError, ValueError):
            return None

    def joules(self, start: tuple[int, ...], end: tuple[int, ...]) -> float:
        total = 0
        for before, after, wrap in zip(start, end, self._ranges, strict=True):
            delta = after - before
            # The counter restarts from 0 past max_energy_range_uj; one wrap per call is
            # recoverable (a package at 200 W takes minutes to wrap a typical 262 kJ range).
            total += delta + wrap if delta < 0 else delta
        return total / 1e6

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)


def rapl_counter(root: Path | None = None) -> RaplCounter | None:
    """RAPL package counters under ``root`` (``/sys/class/powercap``), or None where absent or
    unreadable (the energy files are root-only on most distributions since 2020)."""
    root = RAPL_ROOT if root is None else root
    fds: list[int] = []
    ranges: list[int] = []
    try:
        for domain in _package_domains(root):
            fd = os.open(domain / "energy_uj", os.O_RDONLY)
            fds.append(fd)
            int(os.pread(fd, 32, 0))
            ranges.append(int((domain / "max_energy_range_uj").read_text()))
    except (OSError, ValueError):
        for fd in fds:
            os.close(fd)
        return None
    return RaplCounter(fds, ranges) if fds else None


def _package_domains(root: Path) -> list[Path]:
    """``intel-rapl:N`` whose name is ``package-N``: not subdomains (``intel-rapl:N:M``), not
    ``psys`` (the whole platform, which overlaps the packages), not the MMIO duplicate."""
    domains = []
    for path in sorted(root.glob("intel-rapl:*")):
        if path.name.count(":") != 1:
            continue
        try:
            name = (path / "name").read_text().strip()
        except OSError:
            continue
        if name.startswith("package"):
            domains.append(path)
    return domains


class NvmlCounter:
    """NVML's total energy of one GPU since the driver loaded (millijoules, Volta and newer)."""

    label = "NVML GPU energy"

    def __init__(self, nvml: Any, handle: Any) -> None:
        self._nvml = nvml
        self._handle = handle

    def read(self) -> tuple[int, ...] | None:
        try:
            return (int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)),)
        except Exception:  # NVMLError and its subclasses: not supported, GPU lost, ...
            return None

    def joules(self, start: tuple[int, ...], end: tuple[int, ...]) -> float:
        return (end[0] - start[0]) / 1000.0


def nvml_counter(index: int, nvml: Any | None = None) -> NvmlCounter | None:
    """The energy counter of CUDA device ``index``, or None where NVML or the counter is absent."""
    found = _nvml_device(index, nvml)
    if found is None:
        return None
    counter = NvmlCounter(*found)
    return counter if counter.read() is not None else None


def nvml_power_limit_watts(index: int, nvml: Any | None = None) -> float | None:
    """The enforced board power limit of CUDA device ``index``, or None where unknown."""
    found = _nvml_device(index, nvml)
    if found is None:
        return None
    try:
        watts = float(found[0].nvmlDeviceGetEnforcedPowerLimit(found[1])) / 1000.0
    except Exception:
        return None
    return watts if watts > 0 else None


_NVML_LOCK = threading.Lock()
_NVML: list[Any] = []  # empty: not tried yet; then [module] or [None]


def _nvml() -> Any | None:
    """pynvml, initialised once per process; None without the package, a driver or a GPU."""
    with _NVML_LOCK:
        if not _NVML:
            try:
                import pynvml

                pynvml.nvmlInit()
                _NVML.append(pynvml)
            except Exception:
                _NVML.append(None)
        return _NVML[0]


def _nvml_device(index: int, nvml: Any | None) -> tuple[Any, Any] | None:
    """(NVML module, device handle) for CUDA device ``index``, or None."""
    nvml = nvml if nvml is not None else _nvml()
    handle = _nvml_handle(nvml, index) if nvml is not None else None
    return None if handle is None else (nvml, handle)


def _nvml_handle(nvml: Any, index: int) -> Any | None:
    """NVML numbers GPUs by PCI bus, CUDA by speed and CUDA_VISIBLE_DEVICES: match by UUID."""
    try:
        uuid = _cuda_uuid(index)
        if uuid is not None:
            return nvml.nvmlDeviceGetHandleByUUID(uuid)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        entry = visible[index].strip() if index < len(visible) else ""
        if entry.startswith("GPU-"):
            return nvml.nvmlDeviceGetHandleByUUID(entry)
        return nvml.nvmlDeviceGetHandleByIndex(int(entry) if entry.isdigit() else index)
    except Exception:
        return None


def _cuda_uuid(index: int) -> str | None:
    torch = sys.modules.get("torch")  # a CUDA model is loaded, so torch is; never import it here
    if torch is None:
        return None
    try:
        uuid = torch.cuda.get_device_properties(index).uuid
    except Exception:
        return None
    return f"GPU-{uuid}" if uuid else None


# --- meters ----------------------------------------------------------------------------------


_Snap = tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class _Energy:
    joules: float
    basis: CostBasis
    how: str


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a device's meters do, decided once per (device, settings)."""

    settings: CostSettings
    counter: EnergyCounter | None
    accelerator: bool
    watts: float
    watts_source: str
    price: str

    def energy(self, busy_s: float, cpu_s: float, start: _Snap, end: _Snap) -> _Energy:
        if start is not None and end is not None and self.counter is not None:
            joules = self.counter.joules(start, end)
            if joules > 0:  # a counter that did not move measured nothing: estimate instead
                return _Energy(joules, "energy_measured", f"{self.counter.label} {joules:.4g} J")
        if self.accelerator:
            how = f"estimate: {busy_s:.4g} s x {self.watts:g} W ({self.watts_source})"
            return _Energy(busy_s * self.watts, "energy_estimated", how)
        if cpu_s > 0:
            how = f"estimate: {cpu_s:.4g} CPU-s x {self.watts:g} W/core ({self.watts_source})"
            return _Energy(cpu_s * self.watts, "energy_estimated", how)
        # No CPU time seen (a coarse process clock): assume one core busy for the whole call.
        how = f"estimate: {busy_s:.4g} s x {self.watts:g} W, 1 core ({self.watts_source})"
        return _Energy(busy_s * self.watts, "energy_estimated", how)

    def cost(self, energy: _Energy, busy_s: float, share: float) -> Cost:
        part = "" if share == 1.0 else f" x share {share:.4g}"
        joules = energy.joules * share
        rate = self.settings.hardware_usd_per_hour
        if rate is not None:
            held = _MONEY.multiply(_dec(busy_s * share), rate) / _S_PER_HOUR
            how = f"hardware time: {busy_s:.4g} s x ${rate}/h{part}; energy {energy.how}"
            return Cost(_MONEY.plus(held), "hardware_time", source=how, energy_j=joules)
        amount = _MONEY.multiply(_dec(joules), self.settings.usd_per_kwh) / _J_PER_KWH
        how = f"{energy.how} x {self.price}{part}"
        return Cost(_MONEY.plus(amount), energy.basis, source=how, energy_j=joules)


def _dec(value: float) -> Decimal:
    return Decimal(repr(value))


class _Meter:
    """One call's meter: its own start snapshot, so concurrent calls never share state."""

    __slots__ = ("_plan", "_cpu0", "_start")

    def __init__(self, plan: _Plan) -> None:
        self._plan = plan
        counter = plan.counter
        self._start = counter.read() if counter is not None else None
        self._cpu0 = time.process_time()

    def stop(self, busy_s: float, share: float = 1.0) -> Cost:
        cpu_s = time.process_time() - self._cpu0
        counter = self._plan.counter
        end = counter.read() if counter is not None and self._start is not None else None
        problem = _refuse(busy_s, share)
        if problem is not None:
            return Cost(None, "unknown", source=problem)
        energy = self._plan.energy(busy_s, cpu_s, self._start, end)
        return self._plan.cost(energy, busy_s, share)


def _refuse(busy_s: float, share: float) -> str | None:
    if not (math.isfinite(busy_s) and busy_s > 0):
        return f"no busy time measured ({busy_s!r} s): cannot price the call"
    if not (math.isfinite(share) and 0 < share <= 1):
        return f"invalid batch share {share!r}: cannot price the call"
    return None


def make_meter(device: str, settings: CostSettings) -> Meter:
    """A meter for one call on ``device`` (``cpu``, ``cuda:0``, ``mps``, ...), started now."""
    return _Meter(_plan(device, settings))


@functools.lru_cache(maxsize=64)
def _plan(device: str, settings: CostSettings) -> _Plan:
    kind, _, index = device.partition(":")
    price = _price_label(settings.usd_per_kwh)
    if kind == "cpu":
        watts, source = _configured(settings.cpu_watts, DEFAULT_CPU_WATTS, CPU_WATTS_SOURCE)
        return _Plan(settings, _counter(device), False, watts, source, price)
    gpu = int(index) if index.isdigit() else 0
    limit = nvml_power_limit_watts(gpu) if kind == "cuda" and settings.gpu_watts is None else None
    if limit is not None:
        watts, source = limit, "NVML power limit"
    else:
        watts, source = _configured(settings.gpu_watts, DEFAULT_GPU_WATTS, GPU_WATTS_SOURCE)
    return _Plan(
        settings, _counter(f"cuda:{gpu}" if kind == "cuda" else device), True, watts, source, price
    )


def _configured(value: float | None, default: float, source: str) -> tuple[float, str]:
    return (value, "configured") if value is not None else (default, f"default: {source}")


def _price_label(usd_per_kwh: Decimal) -> str:
    if usd_per_kwh == DEFAULT_USD_PER_KWH:
        return f"${usd_per_kwh}/kWh ({USD_PER_KWH_SOURCE})"
    return f"${usd_per_kwh}/kWh (configured)"


@functools.cache
def _counter(device: str) -> EnergyCounter | None:
    """The energy counter for a device, probed once per process."""
    if device == "cpu":
        return rapl_counter()
    if device.startswith("cuda:"):
        return nvml_counter(int(device.partition(":")[2]))
    return None


def _clear_caches() -> None:
    """Forget probed counters and plans (tests swap the RAPL root or the NVML module)."""
    _plan.cache_clear()
    _counter.cache_clear()
    with _NVML_LOCK:
        _NVML.clear()


def process_peak_memory() -> int | None:
    """This process's peak resident set size so far: ``getrusage``, or on Windows psutil's
    peak working set (None without psutil, which the local extra brings)."""
    try:
        import resource
    except ImportError:  # Windows
        import importlib

        try:
            psutil: Any = importlib.import_module("psutil")  # no type stubs
        except ImportError:
            return None
        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", 0) or info.rss)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB elsewhere
