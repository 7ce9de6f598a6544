"""``fmgate bench``: one model's capacity, from a concurrency sweep."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._console import console, load_model
from ._exit import CALLS_FAILED, OK
from ._fmt import DASH, seconds
from ._run import _positive_int

if TYPE_CHECKING:
    from rich.table import Table

    from .._compare.sweep import Level, Sweep

COLUMNS = (
    "concurrency",
    "calls",
    "ok",
    "calls/s",
    "output tok/s",
    "p50",
    "p90",
    "p50 TTFT",
)


def add_commands(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure one model's capacity: a concurrency sweep (1, 2, 4, ... in flight)",
        description="Load the model once, make one warm-up call, then run calls with 1, 2, 4, "
        "... in flight (concurrent calls for API and self-hosted models, a batch of that many "
        "prompts for local models that batch; a local model that does not batch runs one at a "
        "time). Per level: calls, successes, calls/s and output tokens/s over the level's busy "
        "time (the union of its calls' intervals), p50 and p90 latency, p50 TTFT. The sweep "
        "stops raising the level when calls/s fell two levels in a row, when p90 passed "
        "--p90-target, or when no call of a level "
        "succeeded. The capacity is the highest calls/s whose p90 kept to --p90-target (without "
        "one: the highest calls/s). Records are stored, tagged fmgate.sweep and "
        "fmgate.concurrency, for the report's break-even.",
    )
    bench.add_argument("model", help="a 'backend:model' spec or an alias from fmgate.toml")
    bench.add_argument(
        "--prompts",
        default="capitals",
        metavar="FILE|NAME",
        help="a chat prompt set, cycled: a .jsonl or .csv file, or a bundled set "
        "(default capitals)",
    )
    bench.add_argument(
        "--max-concurrency",
        type=_positive_int,
        default=32,
        metavar="N",
        help="the highest level tried (default 32)",
    )
    bench.add_argument(
        "--calls",
        type=_positive_int,
        metavar="N",
        help="calls per level (default max(2 x level, 8); never fewer than the level)",
    )
    bench.add_argument("--max-tokens", type=_positive_int, metavar="N")
    bench.add_argument(
        "--p90-target",
        type=_positive_seconds,
        metavar="S",
        help="the p90 latency in seconds a level must keep to count as capacity; the sweep "
        "stops past it",
    )
    bench.add_argument(
        "--out",
        metavar="DIR",
        help="also write the levels here (bench.csv, bench.md)",
    )
    bench.set_defaults(handler=_bench)


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def _bench(args: argparse.Namespace) -> int:
    from .._compare import load_prompts
    from .._compare.sweep import check_prompts
    from ._comparing import _refuse_offline, failures

    items = check_prompts(load_prompts(args.prompts))  # a bad set fails before the model loads
    _refuse_offline([args.model])
    params = {"max_tokens": args.max_tokens} if args.max_tokens is not None else {}
    with load_model(args.model) as model:
        sweep = _sweep_with_progress(model, items, args, params)
    capacity = sweep.capacity(args.p90_target)
    console().print(levels_table(sweep, capacity))
    line = capacity_line(sweep, capacity, args.p90_target)
    print(line)
    if args.out is not None:
        written = write_levels(Path(args.out), sweep, capacity, line)
        print("Written: " + ", ".join(str(path) for path in written))
    for line in failures(sweep.records):
        print(line, file=sys.stderr)
    print(
        f"sweep id: {sweep.sweep_id} (records tagged fmgate.sweep={sweep.sweep_id})",
        file=sys.stderr,
    )
    return CALLS_FAILED if sweep.errors else OK


def _sweep_with_progress(
    model: Any, items: Sequence[Any], args: argparse.Namespace, params: dict[str, Any]
) -> Sweep:
    from .._compare.sweep import planned_calls, run_sweep

    settings = {"max_concurrency": args.max_concurrency, "calls_per_level": args.calls}
    label = model.alias or model.spec
    with progress(label, planned_calls(model, **settings)) as on_progress:
        return run_sweep(
            model,
            items,
            params=params,
            on_progress=on_progress,
            stop_p90_s=args.p90_target,
            **settings,
        )


@contextmanager
def progress(label: str, total: int) -> Iterator[Any]:
    """One rich progress bar on stderr, named after the level running; yields the sweep's
    ``on_progress(concurrency, done)`` hook. The bar ends full when the sweep stops early."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(stderr=True),
    )
    name = escape(label)
    task = bar.add_task(f"{name} warm-up", total=total)

    def on_progress(concurrency: int, done: int) -> None:
        bar.update(task, completed=done, description=f"{name} concurrency {concurrency}")

    with bar:
        yield on_progress
        bar.update(task, total=bar.tasks[0].completed)


def levels_table(sweep: Sweep, capacity: Level | None) -> Table:
    """The levels as a rich table, the capacity's row marked."""
    from rich.table import Table

    table = Table(title=f"fmgate bench {sweep.model} (sweep {sweep.sweep_id})")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    table.add_column("")
    for level in sweep.levels:
        mark = "<- capacity" if level is capacity else ""
        table.add_row(*cells(level), mark)
    return table


def cells(level: Level) -> list[str]:
    """One level's values, as the table shows them."""
    return [
        str(level.concurrency),
        str(level.calls),
        str(level.ok),
        rate(level.calls_per_s),
        rate(level.output_tokens_per_s),
        seconds(level.latency_p50_s),
        seconds(level.latency_p90_s),
        seconds(level.ttft_p50_s),
    ]


def rate(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:#.3g}" if value < 100 else f"{value:.0f}"  # 3.00, 0.146, 24.7, 193


def capacity_line(sweep: Sweep, capacity: Level | None, p90_target: float | None) -> str:
    """What the sweep found, in a sentence: the capacity, or why there is none."""
    target = f" with p90 <= {seconds(p90_target)}" if p90_target is not None else ""
    stopped = f"; stopped: {sweep.stopped}" if sweep.stopped else ""
    if capacity is None:
        why = f"no level kept p90 <= {seconds(p90_target)}" if p90_target else "no call succeeded"
        return f"capacity: none ({why}){stopped}"
    return (
        f"capacity: {rate(capacity.calls_per_s)} calls/s, "
        f"{rate(capacity.output_tokens_per_s)} output tok/s at concurrency "
        f"{capacity.concurrency}{target} (p90 {seconds(capacity.latency_p90_s)}){stopped}"
    )


def write_levels(out: Path, sweep: Sweep, capacity: Level | None, line: str) -> list[Path]:
    """``bench.csv`` (numbers in seconds and per second, unrounded) and ``bench.md`` (the
    table and the capacity ``line``)."""
    out.mkdir(parents=True, exist_ok=True)
    from .._compare.sweep import Level

    fields = [f.name for f in dataclasses.fields(Level)]
    with (out / "bench.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow([*fields, "capacity"])
        for level in sweep.levels:
            values = ["" if getattr(level, f) is None else getattr(level, f) for f in fields]
            writer.writerow([*values, "true" if level is capacity else ""])
    rows = [f"| {' | '.join(COLUMNS)} | |", "|" + "---:|" * len(COLUMNS) + "---|"]
    for level in sweep.levels:
        mark = "capacity" if level is capacity else ""
        rows.append(f"| {' | '.join(cells(level))} | {mark} |")
    title = f"# fmgate bench {sweep.model} (sweep {sweep.sweep_id})"
    (out / "bench.md").write_text("\n".join([title, "", *rows, "", line, ""]), encoding="utf-8")
    return [out / "bench.csv", out / "bench.md"]
