"""A concurrency sweep: one loaded model's throughput and latency at 1, 2, 4, ... calls in flight.

``fmgate bench`` runs it. One warm-up call pays the cold start (tagged ``fmgate.warmup=true``);
then, level by level, ``calls_per_level(c)`` calls with ``c`` in flight: ``c`` concurrent calls
for API and self-hosted models, ``c`` prompts per ``generate_many`` batch for local models that
batch. A local model that does not batch runs one call at a time (as ``compare`` runs it), so
its sweep has the one level, 1. Every measured call is tagged with the run, its prompt, the sweep
and its level (``fmgate.concurrency``), so :func:`levels_of` computes the same table from the
stored records as :func:`run_sweep` returns.

A level's figures are :class:`fmgate._economics.Level`'s, the one definition the break-even
reads too (``None`` where unknown, never 0):

- busy time = the union of the level's calls' ``[start, start + total_s]`` (failed calls
  included: they held the machine)
- calls/s = successful calls / busy time; output tokens/s = their output tokens / busy time
- p50 and p90 of the successful calls' ``total_s``, and p50 of their ``ttft_s``, by linear
  interpolation between closest ranks (:func:`fmgate._report.aggregate.percentile`)

The sweep stops raising the level when calls/s fell two levels in a row, when a level's p90
passed ``stop_p90_s``, or when no call of a level succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._economics import Level
from .._economics import levels as measure_levels
from .._errors import ConfigurationError, InvalidRequestError
from .._model import Model
from .._record import CallRecord
from .._recording import MemorySink, add_sink, remove_sink
from .._tags import CONCURRENCY, PROMPT, RUN, SWEEP, WARMUP
from .prompts import PromptItem, is_classification
from .runner import embeds_only, new_run_id

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "Level",
    "Sweep",
    "check_prompts",
    "level_calls",
    "levels_of",
    "planned_calls",
    "planned_levels",
    "run_sweep",
]

DEFAULT_MAX_CONCURRENCY = 32
MIN_CALLS = 8  # per level: fewer make a p90 of little more than the slowest call
SweepProgress = Callable[[int, int], None]


@dataclass
class Sweep:
    """What one sweep measured: its levels in order, every record tagged with its id (the
    warm-up's and the failures included), and why it stopped before ``max_concurrency``."""

    sweep_id: str
    model: str
    levels: list[Level] = field(default_factory=list)
    records: list[CallRecord] = field(default_factory=list)
    stopped: str | None = None

    @property
    def errors(self) -> int:
        """Measured calls that failed (the warm-up's failure is not counted)."""
        return sum(level.calls - level.ok for level in self.levels)

    def capacity(self, p90_target_s: float | None = None) -> Level | None:
        """The level with the highest calls/s among those whose p90 stayed at or under
        ``p90_target_s`` (among all levels, without a target); ``None`` when none did."""
        fit = [level for level in self.levels if level.ok > 0 and level.within(p90_target_s)]
        return max(fit, key=lambda level: level.calls_per_s or 0.0, default=None)


def planned_levels(
    model: Model, max_concurrency: int, levels: Sequence[int] | None = None
) -> list[int]:
    """The levels a sweep of ``model`` tries, at most: ``levels`` (default 1, 2, 4, ... and
    ``max_concurrency`` itself) up to ``max_concurrency``; only 1 for a local model that does
    not batch."""
    _check_count("max_concurrency", max_concurrency)
    if levels is None:
        levels = [2**i for i in range(max_concurrency.bit_length()) if 2**i < max_concurrency]
        levels = [*levels, max_concurrency]
    for level in levels:
        _check_count("a level", level)
    chosen = sorted({level for level in levels if level <= max_concurrency})
    if not chosen:
        raise InvalidRequestError(
            f"No level is at or under max_concurrency={max_concurrency}: raise it, or give "
            "lower levels."
        )
    if _one_at_a_time(model):
        return [1]
    return chosen


def level_calls(concurrency: int, calls: int | None = None) -> int:
    """Calls made at a level: ``calls`` (default ``max(2 * c, 8)``), and never fewer than
    ``c``, so that ``c`` are in flight at once."""
    if calls is not None:
        _check_count("calls_per_level", calls)
        return max(calls, concurrency)
    return max(2 * concurrency, MIN_CALLS)


def planned_calls(
    model: Model,
    *,
    levels: Sequence[int] | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    calls_per_level: int | None = None,
) -> int:
    """The most calls :func:`run_sweep` makes with these settings: the warm-up and every
    planned level's (fewer when it stops early)."""
    plan = planned_levels(model, max_concurrency, levels)
    return 1 + sum(level_calls(c, calls_per_level) for c in plan)


def run_sweep(
    model: Model,
    items: Sequence[PromptItem],
    *,
    levels: Sequence[int] | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    calls_per_level: int | None = None,
    params: Mapping[str, Any] | None = None,
    on_progress: SweepProgress | None = None,
    run_id: str | None = None,
    stop_p90_s: float | None = None,
) -> Sweep:
    """Measure ``model`` at each level of concurrency, reusing it as loaded; failed calls are
    counted, not raised (a call refused before sending, such as a bad parameter, is raised).

    ``items`` (a chat prompt set, cycled) give the prompts; ``params`` go to every call
    (``max_tokens=64``). ``on_progress(concurrency, done)`` is called, possibly from worker
    threads, as each call is recorded: the level running and the calls recorded so far, the
    warm-up included (out of :func:`planned_calls` at most: the sweep may stop early). The
    records go to the default store, as compare's do; ``run_id`` (default: a new one) is also
    the sweep's id.
    """
    prompts = _check_items(model, items)
    plan = planned_levels(model, max_concurrency, levels)
    sweep = Sweep(run_id or new_run_id(), model.alias or model.spec)
    collector = _Collector(sweep.sweep_id, on_progress)
    add_sink(collector)
    try:
        _warm_up(model, prompts[0], sweep.sweep_id, dict(params or {}))
        for c in plan:
            collector.level = c
            _run_level(model, prompts, c, level_calls(c, calls_per_level), sweep.sweep_id, params)
            [level] = measure_levels([r for r in collector.records if _at(r, c)])
            sweep.levels.append(level)
            sweep.stopped = _why_stop(sweep.levels, stop_p90_s)
            if sweep.stopped is not None:
                break
    finally:
        remove_sink(collector)
        sweep.records = collector.records
    return sweep


def check_prompts(items: Sequence[PromptItem]) -> list[PromptItem]:
    """Refuse a set a sweep cannot send (none, a classification or image set, rows with a
    schema or tools: one ``generate_many`` takes one set of params). Cheap: the CLI calls it
    before loading the model."""
    if not items:
        raise InvalidRequestError("A sweep needs at least one prompt: give a prompt set.")
    prompts = [item for item in items if isinstance(item, PromptItem)]
    if len(prompts) != len(items) or is_classification(prompts):
        raise InvalidRequestError(
            "A sweep measures chat generation: give a chat prompt set (such as capitals), "
            "not a classification or image set."
        )
    if any(item.structured or item.task == "image" for item in prompts):
        raise InvalidRequestError(
            "A sweep sends every prompt with the same params: give a prompt set without "
            "schemas, tools or images to draw (such as capitals)."
        )
    return prompts


def _check_items(model: Model, items: Sequence[PromptItem]) -> list[PromptItem]:
    """Chat prompts for a model that generates: a sweep measures generation."""
    prompts = check_prompts(items)
    if embeds_only(model) or "chat" not in model.tasks:
        raise InvalidRequestError(
            f"{model.alias or model.spec} does not generate text: a sweep measures chat "
            "generation; bench a chat model."
        )
    return prompts


def _one_at_a_time(model: Model) -> bool:
    """A local model that does not batch runs one call at a time, as compare runs it."""
    backend = model.backend
    return backend.distribution == "local" and backend.default_batch_size <= 1


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(f"{name} must be an int >= 1, not {value!r}.")


def _warm_up(model: Model, item: PromptItem, sweep_id: str, params: dict[str, Any]) -> None:
    """One call that pays the cold start, down the path the levels take (a batch of one for a
    model that batches). A call refused before sending is raised (every measured call would be
    refused too); any other failure is recorded and the sweep goes on."""
    tags = {RUN: sweep_id, PROMPT: item.id, SWEEP: sweep_id, WARMUP: "true"}
    (outcome,) = model.generate_many(
        [item.prompt], concurrency=1, batch_size=1, return_exceptions=True, tags=[tags], **params
    )
    if isinstance(outcome, ConfigurationError):
        raise outcome


def _run_level(
    model: Model,
    prompts: Sequence[PromptItem],
    c: int,
    n: int,
    sweep_id: str,
    params: Mapping[str, Any] | None,
) -> None:
    """``n`` calls with ``c`` in flight, the prompts cycled from the first: ``generate_many``
    runs ``c`` calls at a time for a model that does not batch, ``c`` rows per batch for one
    that does, and records each call under its own tags."""
    chosen = [prompts[i % len(prompts)] for i in range(n)]
    level = {RUN: sweep_id, SWEEP: sweep_id, CONCURRENCY: str(c)}
    model.generate_many(
        [item.prompt for item in chosen],
        concurrency=c,
        batch_size=c,
        return_exceptions=True,
        tags=[{**level, PROMPT: item.id} for item in chosen],
        **(params or {}),
    )


def _at(record: CallRecord, c: int) -> bool:
    return record.tags.get(CONCURRENCY) == str(c) and record.tags.get(WARMUP) != "true"


def levels_of(records: Iterable[CallRecord]) -> list[Level]:
    """The levels of stored sweep records (those tagged ``fmgate.concurrency``; warm-up calls
    left out), by concurrency: the table :func:`run_sweep` returned, from the store."""
    by_level: dict[int, list[CallRecord]] = {}
    for record in records:
        value = record.tags.get(CONCURRENCY)
        if value is None or not value.isdigit() or record.tags.get(WARMUP) == "true":
            continue
        by_level.setdefault(int(value), []).append(record)
    return measure_levels([r for c in sorted(by_level) for r in by_level[c]])


def _why_stop(levels: Sequence[Level], stop_p90_s: float | None) -> str | None:
    """Why the sweep goes no higher than its last level, or ``None`` to go on."""
    last = levels[-1]
    if last.ok == 0:
        return f"no call succeeded at concurrency {last.concurrency}"
    if (
        stop_p90_s is not None
        and last.latency_p90_s is not None
        and last.latency_p90_s > stop_p90_s
    ):
        p90, c = last.latency_p90_s, last.concurrency
        return f"p90 {p90:.3g} s passed {stop_p90_s:g} s at concurrency {c}"
    rates = [level.calls_per_s or 0.0 for level in levels[-3:]]
    if len(rates) == 3 and rates[0] > rates[1] > rates[2]:
        return f"calls/s fell two levels in a row, to concurrency {last.concurrency}"
    return None


class _Collector(MemorySink):
    """A sink that keeps this sweep's records and reports each one as progress."""

    def __init__(self, sweep_id: str, on_progress: SweepProgress | None) -> None:
        super().__init__(maxlen=None)
        self._sweep_id = sweep_id
        self._on_progress = on_progress
        self.level = 1

    def write(self, record: CallRecord) -> None:
        if record.tags.get(SWEEP) != self._sweep_id:
            return
        with self._lock:
            self._records.append(record)
            done = len(self._records)
        if self._on_progress is not None:
            self._on_progress(self.level, done)
