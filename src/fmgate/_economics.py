"""When does self-hosting pay? Break-even from measured throughput and stated hardware prices.

Pure arithmetic over call records (docs/economics.md gives every formula and default):

- **capacity** (:func:`capacity`): a local or self-hosted model's calls per second, from its
  records. Calls tagged ``fmgate.concurrency`` (``fmgate bench``) form one level per concurrency;
  other calls form one observed level. A level's rate is its successful calls over its busy
  time, the union of its calls' ``[start, start + total_s]`` intervals, failed calls included (a
  batch or overlapping calls count once, the gaps between sequential calls not at all). The
  capacity is the level with the most calls per second whose p90 latency kept under the target.
- **hardware** (:class:`Hardware`): what a machine costs per hour whatever its load: a rate
  you name, a row of the bundled table of on-demand prices (``_data/hardware.toml``, with
  sources and dates), or hardware you own (price over its lifetime, plus power).
- **break-even** (:func:`breakeven`): each local or self-hosted chat row against each API chat
  row on the same prompts (or against API models priced, not run, from the local row's own
  token counts): self-hosted cost per month ``k(V) x F + b x V`` for ``V`` calls a month, where
  ``F`` is one machine's fixed monthly cost, ``b`` the cost each call adds, and ``k(V)`` the
  machines the volume needs at the stated utilisation; the API's ``a x V``. They cross at
  ``V* = F / (a - b)`` when one machine can serve ``V*`` calls.

Money is Decimal (USD); rates and volumes are floats converted at the edges.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, NamedTuple

from ._errors import ConfigurationError
from ._local.energy import DEFAULT_USD_PER_KWH, USD_PER_KWH_SOURCE
from ._record import CallRecord, Score

__all__ = [
    "DEFAULT_IDLE_FRACTION",
    "DEFAULT_LIFETIME_YEARS",
    "DEFAULT_UTILISATION",
    "HOURS_PER_MONTH",
    "VOLUMES",
    "ApiSide",
    "BreakEven",
    "Call",
    "Capacity",
    "Hardware",
    "Level",
    "ScoreValue",
    "breakeven",
    "calls_from_store",
    "calls_of",
    "capacity",
    "default_hardware",
    "find_hardware",
    "hardware_table",
    "levels",
    "owned",
    "rented",
]

# 8760 hours in a 365-day year, over 12 months.
HOURS_PER_MONTH = Decimal(730)
# The share of a machine's measured capacity that real traffic keeps busy on average: an
# assumption, not a measurement (traffic has peaks; a machine is sized for them). Set your own.
DEFAULT_UTILISATION = 0.5
# Idle power as a share of busy power, for owned hardware whose idle power is not given: "even an
# energy-efficient server still consumes about half its full power when doing virtually no work"
# (Barroso and Hoelzle, The Case for Energy-Proportional Computing, IEEE Computer 40(12), 2007).
DEFAULT_IDLE_FRACTION = 0.5
IDLE_SOURCE = "idle = 50% of busy power (Barroso & Hoelzle 2007)"
# Computers and peripheral equipment are 5-year property under the US MACRS general depreciation
# system (IRS Publication 946, Table B-1, asset class 00.12).
DEFAULT_LIFETIME_YEARS = 5.0
LIFETIME_SOURCE = "5-year life (IRS Publication 946, MACRS class for computers)"
# A quality gap smaller than this reads as "similar" in the table.
QUALITY_GAP = 0.05
# Monthly volumes the break-even table prices, in calls per month.
VOLUMES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)

Billing = Literal["while_running", "active_seconds"]
_S_PER_HOUR = Decimal(3600)
_W_PER_KW = Decimal(1000)
_CONCURRENCY_TAG = "fmgate.concurrency"
_PROMPT_TAG = "fmgate.prompt"
_WARMUP_TAG = "fmgate.warmup"
_ROLE_TAG = "fmgate.role"
_SERVED_TAG = "fmgate.served"


# -- hardware -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hardware:
    """What one machine costs, whatever its load.

    ``usd_per_hour``: the rented rate, or for owned hardware its price spread over its lifetime.
    ``billing``: ``while_running`` (billed every hour it is up, busy or idle) or
    ``active_seconds`` (serverless: billed only while a request runs). Owned hardware adds its
    power: ``busy_watts`` while serving (``None``: taken from the records' energy),
    ``idle_watts`` otherwise, at ``usd_per_kwh``.
    """

    name: str
    usd_per_hour: Decimal
    billing: Billing = "while_running"
    source: str = "configured"
    description: str = ""
    gpu: str = ""
    owned: bool = False
    busy_watts: float | None = None
    idle_watts: float | None = None
    usd_per_kwh: Decimal = DEFAULT_USD_PER_KWH
    assumed: bool = False  # chosen by fmgate from the records' hardware, not named by the user
    why_assumed: str = ""  # for an assumed row: from what (the records' hardware, or nothing)

    def __post_init__(self) -> None:
        if not self.usd_per_hour.is_finite() or self.usd_per_hour < 0:
            raise ConfigurationError(
                f"A machine's price per hour must be a finite amount >= 0, not {self.usd_per_hour}."
            )
        for key in ("busy_watts", "idle_watts"):
            watts = getattr(self, key)
            if watts is not None and (not math.isfinite(watts) or watts < 0):
                raise ConfigurationError(f"{key} must be a finite number of watts >= 0: {watts}.")

    @property
    def label(self) -> str:
        """The name as a report shows it: ``aws-g5-xlarge ($1.006/h)``."""
        return f"{self.name} (${self.usd_per_hour.normalize():f}/h)"


def rented(usd_per_hour: object, *, name: str | None = None) -> Hardware:
    """A machine at a rate you name, billed while it runs."""
    rate = _usd("hardware_usd_per_hour", usd_per_hour)
    return Hardware(name or f"${rate.normalize():f}/h", rate, source="configured")


def owned(
    price_usd: object,
    *,
    lifetime_years: float = DEFAULT_LIFETIME_YEARS,
    busy_watts: float | None = None,
    idle_watts: float | None = None,
    usd_per_kwh: object = None,
    name: str | None = None,
) -> Hardware:
    """Hardware you bought: its price over ``lifetime_years`` (straight line), plus its power.

    ``busy_watts`` ``None``: the power the records measured or estimated while serving.
    ``idle_watts`` ``None``: :data:`DEFAULT_IDLE_FRACTION` of busy power.
    """
    price = _usd("hardware_price_usd", price_usd)
    if not isinstance(lifetime_years, int | float) or not 0 < lifetime_years < 100:
        raise ConfigurationError(
            f"lifetime_years must be a number of years in (0, 100), not {lifetime_years!r}."
        )
    hours = Decimal(str(lifetime_years)) * 12 * HOURS_PER_MONTH
    kwh = DEFAULT_USD_PER_KWH if usd_per_kwh is None else _usd("usd_per_kwh", usd_per_kwh)
    life = (
        LIFETIME_SOURCE
        if lifetime_years == DEFAULT_LIFETIME_YEARS
        else f"{lifetime_years:g}-year life (configured)"
    )
    return Hardware(
        name or f"owned ${price.normalize():f}",
        price / hours,
        source=f"${price.normalize():f} over a {life}",
        owned=True,
        busy_watts=None if busy_watts is None else float(busy_watts),
        idle_watts=None if idle_watts is None else float(idle_watts),
        usd_per_kwh=kwh,
    )


@functools.cache
def hardware_table() -> dict[str, Hardware]:
    """The bundled on-demand prices (``_data/hardware.toml``), by row name."""
    import tomllib
    from importlib import resources

    text = resources.files("fmgate._data").joinpath("hardware.toml").read_text(encoding="utf-8")
    return {
        name: Hardware(
            name,
            Decimal(row["usd_per_hour"]),
            billing=row["billing"],
            source=f"{row['source']}, {row['date']}",
            description=row["description"],
            gpu=row["gpu"],
        )
        for name, row in tomllib.loads(text).items()
    }


def find_hardware(name: str) -> Hardware:
    """A table row by name (``aws-g5-xlarge``) or GPU (``h100``: the first row with that GPU),
    or a number: a rate in USD per hour you name."""
    table = hardware_table()
    key = name.strip().lower()
    if key in table:
        return table[key]
    for row in table.values():
        if row.gpu and row.gpu.lower() == key:
            return row
    try:
        return rented(key.removeprefix("$").removesuffix("/h"))
    except ConfigurationError:
        pass
    raise ConfigurationError(
        f"Unknown hardware {name!r}: name a row of fmgate's price table ("
        + ", ".join(table)
        + "), a GPU ("
        + ", ".join(sorted({r.gpu for r in table.values() if r.gpu}))
        + "), or a price in USD per hour (--hardware 1.2)."
    )


def default_hardware(records: Iterable[CallRecord] | Iterable[Call]) -> Hardware:
    """The table row for the hardware the records ran on, marked ``assumed``: a CUDA GPU the
    table names, else the table's A10G row for a GPU and its 2-vCPU machine for a CPU; records
    that name no hardware (a vLLM or Ollama server does not say) get the A10G row, and
    ``why_assumed`` says so."""
    import dataclasses

    table = hardware_table()
    seen = [c.hardware for c in _as_calls(records) if c.hardware]
    if not seen:  # a server that does not say (vLLM, Ollama...): a one-GPU machine, said so
        why = "the server's hardware is unknown (its records do not say): a one-GPU machine"
        return dataclasses.replace(table["aws-g5-xlarge"], assumed=True, why_assumed=why)
    where = max(set(seen), key=seen.count)
    row = table["aws-m7g-large"]
    if where.startswith("cuda"):
        gpu = where.partition(":")[2].upper()
        known = [r for r in table.values() if r.gpu and r.gpu.upper() in gpu]
        row = max(known, key=lambda r: len(r.gpu)) if known else table["aws-g5-xlarge"]
    why = f"the records ran on {where}"
    return dataclasses.replace(row, assumed=True, why_assumed=why)


def _usd(key: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ConfigurationError(f"{key} must be a number of USD, not {value!r}.")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigurationError(f"{key} must be a number of USD, not {value!r}.") from None
    if not amount.is_finite() or amount < 0:
        raise ConfigurationError(f"{key} must be a finite amount of USD >= 0, not {value!r}.")
    return amount


# -- the calls, as the arithmetic reads them ---------------------------------------------------


class Call(NamedTuple):
    """The fields of a call record that the break-even reads: built from records in memory
    (:func:`calls_of`) or straight from the store's columns (:func:`calls_from_store`), which is
    what keeps a report of 100k stored records fast."""

    id: str
    label: str  # the report's row: alias or backend:model, "(served)" for fmgate serve's own
    role: str
    operation: str
    distribution: str
    start_s: float  # POSIX seconds when the call's steady-state clock started (after load_s)
    total_s: float | None
    ttft_s: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost: Decimal | str | None  # USD
    energy_j: float | None
    hardware: str | None
    ok: bool
    concurrency: int | None  # the fmgate bench level
    prompt: str | None
    warmup: bool


# The store columns :func:`calls_from_store` reads, in the order :func:`_call` takes them.
COLUMNS = (
    "id",
    "alias",
    "backend",
    "model_id",
    "operation",
    "distribution",
    "started_at",
    "latency_total_s",
    "latency_load_s",
    "latency_ttft_s",
    "usage_input_tokens",
    "usage_output_tokens",
    "cost_amount",
    "cost_energy_j",
    "access_hardware",
    "outcome_status",
)
# The tags it reads, after the columns (extracted in SQL when read from the store).
TAGS = (_SERVED_TAG, _ROLE_TAG, _CONCURRENCY_TAG, _PROMPT_TAG, _WARMUP_TAG)


def calls_of(records: Iterable[CallRecord]) -> list[Call]:
    """The records as the arithmetic reads them."""
    return [
        _call(
            r.id,
            r.alias,
            r.backend,
            r.model_id,
            r.operation,
            r.distribution,
            r.started_at,
            r.latency.total_s,
            r.latency.load_s,
            r.latency.ttft_s,
            r.usage.input_tokens,
            r.usage.output_tokens,
            r.cost.amount,
            r.cost.energy_j,
            r.access.hardware,
            r.outcome.status,
            *(r.tags.get(key) for key in TAGS),
        )
        for r in records
    ]


def calls_from_store(store: Any, **filters: Any) -> tuple[list[Call], list[ScoreValue]]:
    """The matching stored records (``SqliteStore.rows`` filters) and their scores, reading only
    the columns the break-even needs: no full record is rebuilt."""
    calls = [_call(*row) for row in store.rows(COLUMNS, tag_values=TAGS, **filters)]
    ids = {c.id for c in calls}
    return calls, [ScoreValue(*v) for v in store.score_values() if v[0] in ids]


def _call(
    ident: str,
    alias: str | None,
    backend: str,
    model_id: str,
    operation: str,
    distribution: str,
    started_at: Any,
    total_s: float | None,
    load_s: float | None,
    ttft_s: float | None,
    input_tokens: int | None,
    output_tokens: int | None,
    amount: Any,
    energy_j: float | None,
    hardware: str | None,
    status: str,
    served: str | None,
    role: str | None,
    level: str | None,
    prompt: str | None,
    warmup: str | None,
) -> Call:
    label = alias or f"{backend}:{model_id}"
    if served == "true":
        label = f"{label} (served)"
    if not isinstance(started_at, datetime):
        started_at = datetime.fromisoformat(str(started_at))
    return Call(
        ident,
        label,
        role or "candidate",
        operation,
        distribution,
        started_at.timestamp() + (load_s or 0.0),
        total_s,
        ttft_s,
        input_tokens,
        output_tokens,
        amount,  # as stored (Decimal or its text): made a Decimal only where priced
        energy_j,
        hardware,
        status == "ok",
        int(level) if isinstance(level, str) and level.isdigit() and int(level) > 0 else None,
        prompt if isinstance(prompt, str) else None,
        warmup == "true",
    )


def _as_calls(records: Iterable[CallRecord] | Iterable[Call]) -> list[Call]:
    """Calls as given, or built from call records."""
    items = list(records)
    calls = [item for item in items if isinstance(item, Call)]
    if len(calls) == len(items):
        return calls
    return calls_of(item for item in items if isinstance(item, CallRecord))


# -- capacity -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Level:
    """What a model did at one concurrency (``None``: calls not made by a sweep)."""

    concurrency: int | None
    calls: int
    ok: int
    busy_s: float
    calls_per_s: float | None
    output_tokens_per_s: float | None
    latency_p50_s: float | None
    latency_p90_s: float | None
    ttft_p50_s: float | None
    output_tokens_per_call: float | None
    energy_j_per_call: float | None  # measured or estimated by fmgate, where recorded

    def within(self, p90_target_s: float | None) -> bool:
        """Whether the level's p90 latency kept at or under the target (always, without one)."""
        if p90_target_s is None:
            return True
        return self.latency_p90_s is not None and self.latency_p90_s <= p90_target_s


@dataclass(frozen=True, slots=True)
class Capacity:
    """The level that served the most calls per second with p90 under ``target_p90_s``.

    ``met`` is False when no level kept under the target: ``level`` is then the one with the
    lowest p90, and a report says so. ``basis``: ``sweep`` (``fmgate bench``) or ``observed``.
    """

    level: Level
    levels: tuple[Level, ...]
    basis: Literal["sweep", "observed"]
    target_p90_s: float | None = None
    met: bool = True

    @property
    def calls_per_s(self) -> float:
        return self.level.calls_per_s or 0.0


def capacity(
    records: Iterable[CallRecord] | Iterable[Call], *, target_p90_s: float | None = None
) -> Capacity | None:
    """The measured capacity of one model's records; ``None`` without a successful timed call."""
    every = levels(records)
    basis: Literal["sweep", "observed"] = "sweep" if every and every[0].concurrency else "observed"
    levels_ = tuple(lv for lv in every if lv.calls_per_s)
    if not levels_:
        return None
    fast = [lv for lv in levels_ if lv.within(target_p90_s)]
    if fast:
        best = max(fast, key=lambda lv: lv.calls_per_s or 0.0)
        return Capacity(best, levels_, basis, target_p90_s)
    lowest_p90 = min(levels_, key=lambda lv: lv.latency_p90_s or math.inf)
    return Capacity(lowest_p90, levels_, basis, target_p90_s, met=False)


def levels(records: Iterable[CallRecord] | Iterable[Call]) -> list[Level]:
    """The records' levels, by concurrency: one per ``fmgate.concurrency`` value when any call
    has the tag (``fmgate bench``: calls without it are left out), else one observed level of
    all the calls. Warm-up calls are left out. ``fmgate bench`` prints these same levels."""
    counted = [c for c in _as_calls(records) if not c.warmup]
    swept: dict[int, list[Call]] = defaultdict(list)
    for c in counted:
        if c.concurrency is not None:
            swept[c.concurrency].append(c)
    if swept:
        return [_level(n, swept[n]) for n in sorted(swept)]
    return [_level(None, counted)] if counted else []


def _level(concurrency: int | None, group: Sequence[Call]) -> Level:
    from ._report.aggregate import percentile

    ok = [c for c in group if c.ok and c.total_s is not None]
    # a failed call held the machine too: its time counts, its call does not
    timed = [c for c in group if c.total_s is not None]
    busy = _union_seconds([(c.start_s, c.start_s + (c.total_s or 0.0)) for c in timed])
    totals = [c.total_s for c in ok if c.total_s is not None]
    ttfts = [c.ttft_s for c in ok if c.ttft_s is not None]
    tokens = [c.output_tokens for c in ok if c.output_tokens is not None]
    energy = [c.energy_j for c in ok if c.energy_j is not None]
    per_s = len(ok) / busy if busy > 0 else None
    return Level(
        concurrency,
        len(group),
        len(ok),
        busy,
        per_s,
        sum(tokens) / busy if busy > 0 and len(tokens) == len(ok) else None,
        percentile(totals, 0.5),
        percentile(totals, 0.9),
        percentile(ttfts, 0.5),
        sum(tokens) / len(tokens) if tokens else None,
        sum(energy) / len(energy) if energy and len(energy) == len(ok) else None,
    )


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of ``[start, end]`` intervals, in seconds."""
    total = 0.0
    start = end = -math.inf
    for lo, hi in sorted(intervals):
        if lo > end:
            total += end - start if end > -math.inf else 0.0
            start, end = lo, hi
        elif hi > end:
            end = hi
    return total + (end - start if end > -math.inf else 0.0)


# -- the API side -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiSide:
    """An API model's price per call on the prompts the self-hosted model also answered.

    ``estimated_from`` names the row whose token counts priced it when the API model was not
    run (its list price for the same usage: the API's own tokenizer would count differently).
    """

    label: str
    cost_per_call: Decimal
    calls: int
    output_tokens_per_call: float | None = None
    latency_p90_s: float | None = None
    quality: float | None = None
    scorer: str | None = None
    estimated_from: str | None = None


# -- break-even ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakEven:
    """One self-hosted row against one API row: monthly cost as a function of volume.

    Self-hosted per month for ``V`` calls: ``machines(V) x fixed_usd_per_month +
    usd_per_call x V``; the API's: ``api.cost_per_call x V``. ``volume``: the calls a month from
    which self-hosting costs less (``0``: at any volume; ``None``: never, ``reason`` says why).
    """

    local: str
    api: ApiSide
    hardware: Hardware
    capacity: Capacity
    utilisation: float
    fixed_usd_per_month: Decimal
    usd_per_call: Decimal
    calls_per_machine_month: Decimal
    volume: Decimal | None
    reason: str
    local_quality: float | None = None
    local_scorer: str | None = None
    busy_watts: float | None = None
    notes: tuple[str, ...] = field(default=())

    def machines(self, volume: float | Decimal) -> int:
        """Machines needed for ``volume`` calls a month (at least one while one is always on)."""
        if self.hardware.billing == "active_seconds":
            return 0
        per = self.calls_per_machine_month
        return max(1, math.ceil(Decimal(volume) / per)) if per > 0 else 1

    def self_hosted_per_month(self, volume: float | Decimal) -> Decimal:
        return self.machines(volume) * self.fixed_usd_per_month + self.usd_per_call * Decimal(
            volume
        )

    def api_per_month(self, volume: float | Decimal) -> Decimal:
        return self.api.cost_per_call * Decimal(volume)

    def per_1k_calls(self, volume: float | Decimal) -> tuple[Decimal, Decimal]:
        """(self-hosted, API) cost per 1,000 calls at ``volume`` calls a month."""
        v = Decimal(volume)
        return self.self_hosted_per_month(v) / v * 1000, self.api.cost_per_call * 1000

    def per_1m_output_tokens(
        self, volume: float | Decimal
    ) -> tuple[Decimal | None, Decimal | None]:
        """(self-hosted, API) cost per million output tokens at ``volume`` calls a month, each
        from its own mean output tokens per call (``None`` where not counted)."""
        v = Decimal(volume)
        local_tokens = self.capacity.level.output_tokens_per_call
        api_tokens = self.api.output_tokens_per_call
        local = (
            self.self_hosted_per_month(v) / (v * Decimal(str(local_tokens))) * 1_000_000
            if local_tokens
            else None
        )
        api = self.api.cost_per_call / Decimal(str(api_tokens)) * 1_000_000 if api_tokens else None
        return local, api

    @property
    def quality_note(self) -> str:
        """The two qualities side by side: cheaper is not the same answer."""
        mine, theirs = self.local_quality, self.api.quality
        own = f"{mine:.2f} ({self.local_scorer})" if mine is not None else "not scored"
        if self.api.estimated_from is not None:
            return f"not compared: API not run ({self.local} {own})"
        if mine is None or theirs is None or self.local_scorer != self.api.scorer:
            return "not compared: no common scorer"
        pair = f"{mine:.2f} vs {theirs:.2f} ({self.local_scorer})"
        if mine < theirs - QUALITY_GAP:
            return f"lower quality: {pair}"
        if mine > theirs + QUALITY_GAP:
            return f"higher quality: {pair}"
        return f"similar quality: {pair}"


def breakeven(
    records: Iterable[CallRecord] | Iterable[Call],
    scores: Iterable[Score] | Iterable[ScoreValue] = (),
    *,
    hardware: Hardware | Mapping[str, Hardware] | None = None,
    utilisation: float = DEFAULT_UTILISATION,
    target_p90_s: float | None = None,
    against: Sequence[str] = (),
) -> list[BreakEven]:
    """Every local or self-hosted chat row against every API chat row in ``records``.

    ``records``: call records, or :class:`Call` rows (:func:`calls_from_store`). ``hardware``:
    one machine for every self-hosted row, or a mapping from row label to machine; rows without
    one get :func:`default_hardware` (marked assumed). ``target_p90_s``: the latency the capacity
    must keep; default, the API row's own p90 on the same prompts. ``against``: API models
    (``openai:gpt-4o-mini``) priced at list price from each self-hosted row's own token counts,
    without calling them. Quality is the mean of each call's latest score of the scorer that
    graded most of a row's calls, as the report's.
    """
    if not 0 < utilisation <= 1:
        raise ConfigurationError(f"utilisation is a fraction in (0, 1], not {utilisation!r}.")
    rows: dict[str, list[Call]] = defaultdict(list)
    for c in _as_calls(records):
        if c.operation == "chat" and c.role == "candidate":
            rows[c.label].append(c)
    if not rows:
        return []
    local = {k: g for k, g in rows.items() if g[-1].distribution in ("local", "self_hosted")}
    apis = {k: g for k, g in rows.items() if g[-1].distribution == "api"}
    if not local:
        return []
    quality = _quality(rows, scores)
    found = []
    for name, group in local.items():
        machine = _machine_for(name, group, hardware)
        sides = [_measured_api(label, g, group, quality) for label, g in apis.items()]
        sides += [_estimated_api(spec, name, group) for spec in against]
        for side in sides:
            if side is None:
                continue
            target = target_p90_s if target_p90_s is not None else side.latency_p90_s
            cap = capacity(_same_prompts(group, apis.get(side.label, ())), target_p90_s=target)
            if cap is None:
                continue
            mine, scorer = quality.get(name, (None, None))
            found.append(_solve(name, side, machine, cap, utilisation, mine, scorer))
    return found


class ScoreValue(NamedTuple):
    """A score as the break-even reads it (``SqliteStore.score_values``)."""

    record_id: str
    scorer: str
    value: float | None


def _quality(
    rows: Mapping[str, Sequence[Call]], scores: Iterable[Score] | Iterable[ScoreValue]
) -> dict[str, tuple[float | None, str | None]]:
    """Per row: the mean of each call's latest score from the scorer that graded most of the
    row's calls (scores come oldest first, so a later one replaces an earlier one)."""
    row_of = {c.id: label for label, group in rows.items() for c in group if not c.warmup}
    latest: dict[str, dict[str, dict[str, float | None]]] = defaultdict(lambda: defaultdict(dict))
    for score in scores:
        label = row_of.get(score.record_id)
        if label is not None:
            latest[label][score.scorer][score.record_id] = score.value
    found: dict[str, tuple[float | None, str | None]] = {}
    for label, by_scorer in latest.items():
        graded = {k: [v for v in vals.values() if v is not None] for k, vals in by_scorer.items()}
        graded = {k: vals for k, vals in graded.items() if vals}
        if graded:
            scorer, values = max(graded.items(), key=lambda kv: len(kv[1]))
            found[label] = (sum(values) / len(values), scorer)
    return found


def _machine_for(
    name: str, group: Sequence[Call], hardware: Hardware | Mapping[str, Hardware] | None
) -> Hardware:
    if isinstance(hardware, Hardware):
        return hardware
    if hardware is not None and name in hardware:
        return hardware[name]
    return default_hardware(group)


def _same_prompts(group: Sequence[Call], other: Iterable[Call]) -> list[Call]:
    """``group``'s calls on the prompts ``other`` also answered, when both name their prompts;
    sweep calls (``fmgate bench``) are kept whatever their prompt: they measure capacity."""
    theirs = {c.prompt for c in other if c.prompt is not None}
    if not theirs:
        return list(group)
    kept = [c for c in group if c.concurrency is not None or c.prompt in theirs]
    return kept or list(group)


def _measured_api(
    label: str,
    group: Sequence[Call],
    local: Sequence[Call],
    quality: Mapping[str, tuple[float | None, str | None]],
) -> ApiSide | None:
    from ._report.aggregate import percentile

    mine = {c.prompt for c in local if c.prompt is not None}
    ok = [c for c in group if c.ok and not c.warmup]
    if mine:
        ok = [c for c in ok if c.prompt in mine] or ok
    amounts = [
        Decimal(c.cost) if isinstance(c.cost, str) else c.cost for c in ok if c.cost is not None
    ]
    if not amounts:
        return None
    tokens = [c.output_tokens for c in ok if c.cost is not None and c.output_tokens is not None]
    score, scorer = quality.get(label, (None, None))
    return ApiSide(
        label,
        sum(amounts, Decimal(0)) / len(amounts),
        len(amounts),
        sum(tokens) / len(tokens) if tokens else None,
        percentile([c.total_s for c in ok if c.total_s is not None], 0.9),
        score,
        scorer,
    )


def _estimated_api(spec: str, name: str, group: Sequence[Call]) -> ApiSide | None:
    """The list price of ``spec`` for the usage of ``group``'s successful calls."""
    from ._config import parse_spec
    from ._cost import list_price
    from ._providers import providers
    from ._record import Usage

    backend, model = parse_spec(spec)
    row = providers().get(backend)
    provider = row.prices_provider if row is not None else backend
    ok = [
        c
        for c in group
        if c.ok and not c.warmup and c.input_tokens is not None and c.output_tokens is not None
    ]
    amounts = [
        list_price(
            provider, model, Usage(input_tokens=c.input_tokens, output_tokens=c.output_tokens)
        ).cost.amount
        for c in ok
    ]
    priced = [a for a in amounts if a is not None]
    if not priced:
        return None
    tokens = [c.output_tokens or 0 for c in ok]
    return ApiSide(
        spec,
        sum(priced, Decimal(0)) / len(priced),
        len(priced),
        sum(tokens) / len(tokens),
        estimated_from=name,
    )


def _solve(
    name: str,
    api: ApiSide,
    machine: Hardware,
    cap: Capacity,
    utilisation: float,
    quality: float | None,
    scorer: str | None,
) -> BreakEven:
    """The fixed and per-call costs of serving at ``cap``, and where the API line crosses."""
    rate = Decimal(str(cap.calls_per_s))
    seconds_per_call = 1 / rate
    per_machine = rate * _S_PER_HOUR * HOURS_PER_MONTH  # calls a month, fully used
    notes: list[str] = []
    busy_watts: float | None = None
    if machine.billing == "active_seconds":
        fixed = Decimal(0)
        per_call = machine.usd_per_hour * seconds_per_call / _S_PER_HOUR
        per_machine_used = per_machine
    else:
        per_machine_used = per_machine * Decimal(str(utilisation))
        fixed = machine.usd_per_hour * HOURS_PER_MONTH
        per_call = Decimal(0)
        if machine.owned:
            busy_watts = _busy_watts(machine, cap)
            if busy_watts is None:
                notes.append("no power known: set busy watts (the records measured no energy)")
            else:
                idle = machine.idle_watts
                if idle is None:
                    idle = busy_watts * DEFAULT_IDLE_FRACTION
                    notes.append(IDLE_SOURCE)
                kwh = machine.usd_per_kwh
                fixed += Decimal(str(idle)) * HOURS_PER_MONTH * kwh / _W_PER_KW
                extra = Decimal(str(max(busy_watts - idle, 0.0)))
                per_call = extra * seconds_per_call / _S_PER_HOUR * kwh / _W_PER_KW
                if kwh == DEFAULT_USD_PER_KWH:
                    notes.append(f"${kwh}/kWh ({USD_PER_KWH_SOURCE})")
    volume, reason = _crossing(api.cost_per_call, fixed, per_call, per_machine_used)
    if not cap.met and cap.target_p90_s is not None:
        notes.append(
            f"p90 above the {cap.target_p90_s:.3g} s target at every concurrency measured: "
            "capacity taken at the lowest p90"
        )
    return BreakEven(
        name,
        api,
        machine,
        cap,
        utilisation,
        fixed,
        per_call,
        per_machine_used,
        volume,
        reason,
        quality,
        scorer,
        busy_watts,
        tuple(notes),
    )


def _busy_watts(machine: Hardware, cap: Capacity) -> float | None:
    """The power while serving: given, or the records' joules per call times calls per second."""
    if machine.busy_watts is not None:
        return machine.busy_watts
    joules = cap.level.energy_j_per_call
    return joules * cap.calls_per_s if joules is not None else None


def _crossing(
    api_per_call: Decimal, fixed: Decimal, per_call: Decimal, per_machine: Decimal
) -> tuple[Decimal | None, str]:
    """Where ``fixed + per_call x V`` meets ``api_per_call x V`` within one machine's volume."""
    if api_per_call <= per_call:
        return None, "never: each call costs at least as much self-hosted as the API charges"
    if fixed == 0:
        return Decimal(0), "at any volume: no fixed cost, and each call costs less than the API's"
    volume = fixed / (api_per_call - per_call)
    if volume > per_machine:
        full = (fixed / per_machine + per_call) / api_per_call if per_machine > 0 else None
        times = f" ({full:.3g}x the API's price per call)" if full is not None else ""
        return None, (
            "never at this throughput: one machine, used as stated, costs more than the API "
            f"charges for the calls it can serve{times}"
        )
    return volume, "self-hosting costs less from this volume up"
