"""Break-even options for ``fmgate compare``, ``report`` and ``breakeven``, and that command.

The options come from fmgate.toml's ``[breakeven]`` table, then the command line: a flag
overrides the key of the same meaning, and a machine named on the command line (``--hardware``
or ``--owned``) replaces any machine the file names.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._console import console
from ._exit import NOTHING, OK

if TYPE_CHECKING:
    from rich.table import Table

    from .._economics import BreakEven, Call, Hardware, ScoreValue
    from .._report.economics import EconomicsOptions

# Each flag's [breakeven] key.
FLAGS = {
    "hardware": "--hardware",
    "owned_price_usd": "--owned",
    "lifetime_years": "--lifetime-years",
    "busy_watts": "--busy-watts",
    "idle_watts": "--idle-watts",
    "usd_per_kwh": "--usd-per-kwh",
    "utilisation": "--utilisation",
    "p90_target_s": "--p90-target",
    "against": "--against",
}
MACHINE_KEYS = ("hardware", "hardware_usd_per_hour", "owned_price_usd")
OWNED_KEYS = ("lifetime_years", "busy_watts", "idle_watts", "usd_per_kwh")


def add_options(parser: argparse.ArgumentParser) -> None:
    """The break-even flags, in a group of their own."""
    from .._local.energy import DEFAULT_USD_PER_KWH, USD_PER_KWH_SOURCE

    group = parser.add_argument_group(
        "break-even",
        "Self-hosted rows against API rows (docs/economics.md); flags override fmgate.toml's "
        "[breakeven] table.",
    )
    group.add_argument(
        "--hardware",
        metavar="NAME|USD_PER_HOUR",
        help="the machine a self-hosted model runs on: a row of the price table "
        "(fmgate breakeven --hardware-list), a GPU (h100), or a price per hour (1.2); "
        "default: the table's row for the hardware the records ran on, marked assumed",
    )
    group.add_argument(
        "--owned",
        dest="owned_price_usd",
        metavar="PRICE_USD",
        help="hardware you bought, at this price: spread over --lifetime-years, plus power",
    )
    group.add_argument("--lifetime-years", type=_positive, metavar="YEARS", help="default 5")
    group.add_argument(
        "--busy-watts",
        type=_non_negative,
        metavar="W",
        help="power while serving (default: the records' measured or estimated energy)",
    )
    group.add_argument(
        "--idle-watts", type=_non_negative, metavar="W", help="default: half the busy power"
    )
    group.add_argument(
        "--usd-per-kwh",
        metavar="USD",
        help=f"the electricity price (default {DEFAULT_USD_PER_KWH}: {USD_PER_KWH_SOURCE})",
    )
    group.add_argument(
        "--utilisation",
        type=_fraction,
        metavar="FRACTION",
        help="the share of measured capacity real traffic uses (default 0.5)",
    )
    group.add_argument(
        "--p90-target",
        dest="p90_target_s",
        type=_positive,
        metavar="SECONDS",
        help="the p90 latency a capacity must keep (default: the API's own p90)",
    )
    group.add_argument(
        "--against",
        action="append",
        metavar="SPEC",
        help="an API model not run (openai:gpt-4o-mini), priced from the self-hosted rows' "
        "own tokens at list price; repeatable",
    )


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number more than 0, not {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of 0 or more, not {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], such as 0.5, not {text}")
    return value


def economics_options(args: argparse.Namespace) -> EconomicsOptions:
    """The [breakeven] table of the config in use, overridden by the flags given."""
    from .._config import load_config

    config = load_config()
    where = f"{config.path}: [breakeven]" if config.path is not None else "[breakeven]"
    values = {key: (value, f"{where} {key}") for key, value in config.breakeven.items()}
    given = {key: getattr(args, key, None) for key in FLAGS}
    given = {key: value for key, value in given.items() if value is not None}
    if any(key in given for key in MACHINE_KEYS):
        values = {k: v for k, v in values.items() if k not in (*MACHINE_KEYS, *OWNED_KEYS)}
    values.update({key: (value, FLAGS[key]) for key, value in given.items()})
    return options_from(values)


def options_from(values: Mapping[str, tuple[Any, str]]) -> EconomicsOptions:
    """Options from ``key: (value, where it was set)``; an error names where."""
    from .._economics import DEFAULT_UTILISATION
    from .._report.economics import EconomicsOptions

    utilisation = values.get("utilisation", (DEFAULT_UTILISATION, ""))
    with _blame(utilisation[1]):
        if not 0 < float(utilisation[0]) <= 1:
            raise _error(f"utilisation is a fraction in (0, 1], not {utilisation[0]!r}")
    target = values.get("p90_target_s", (None, ""))
    with _blame(target[1]):
        if target[0] is not None and not float(target[0]) > 0:
            raise _error(f"the p90 target is a number of seconds above 0, not {target[0]!r}")
    return EconomicsOptions(
        hardware=_machine(values),
        utilisation=float(utilisation[0]),
        target_p90_s=None if target[0] is None else float(target[0]),
        against=tuple(values.get("against", ((), ""))[0]),
    )


def _machine(values: Mapping[str, tuple[Any, str]]) -> Hardware | None:
    from .._economics import DEFAULT_LIFETIME_YEARS, find_hardware, owned, rented

    named = [key for key in MACHINE_KEYS if key in values]
    if len(named) > 1:
        places = " and ".join(values[key][1] for key in named)
        raise _error(f"{places} each name a machine: keep one.")
    extra = [values[key][1] for key in OWNED_KEYS if key in values]
    if extra and named != ["owned_price_usd"]:
        raise _error(f"{', '.join(extra)} describe owned hardware: add --owned PRICE_USD.")
    if not named:
        return None
    value, where = values[named[0]]
    with _blame(where):
        if named[0] == "hardware":
            return find_hardware(str(value))
        if named[0] == "hardware_usd_per_hour":
            return rented(value)
        get = {key: values[key][0] for key in OWNED_KEYS if key in values}
        return owned(
            value,
            lifetime_years=float(get.get("lifetime_years", DEFAULT_LIFETIME_YEARS)),
            busy_watts=get.get("busy_watts"),
            idle_watts=get.get("idle_watts"),
            usd_per_kwh=get.get("usd_per_kwh"),
        )


def _error(message: str) -> Exception:
    from .._errors import ConfigurationError

    return ConfigurationError(message)


@contextmanager
def _blame(where: str) -> Iterator[None]:
    """A configuration error raised inside names ``where`` the value was set."""
    from .._errors import ConfigurationError

    try:
        yield
    except (ConfigurationError, ValueError, TypeError) as exc:
        if not where:
            raise
        raise ConfigurationError(f"{where}: {exc}") from exc


# -- fmgate breakeven ---------------------------------------------------------------------------


def add_commands(commands: Any) -> None:
    from ._filters import add_filters

    parser = commands.add_parser(
        "breakeven",
        help="when does self-hosting cost less than an API? from stored records",
        description="Set every local or self-hosted chat model in the stored records against "
        "every API chat model run on the same prompts (and any --against model, priced from the "
        "self-hosted model's own tokens): the machine's fixed cost per month, its capacity "
        "measured from the records (fmgate bench measures it best), the cost per 1,000 calls "
        "and per million output tokens at each monthly volume, and the volume from which "
        "self-hosting costs less. --out writes breakeven.md, breakeven.html (with a plot) and "
        "breakeven.csv. Filters combine with AND.",
    )
    add_filters(parser)
    parser.add_argument("--out", metavar="DIR", help="write breakeven.md, .html and .csv here")
    parser.add_argument(
        "--hardware-list",
        action="store_true",
        help="print the bundled price table (with sources and dates) and exit",
    )
    add_options(parser)
    parser.set_defaults(handler=_breakeven)


def _breakeven(args: argparse.Namespace) -> int:
    from .._report.economics import breakevens, write_section

    if args.hardware_list:
        console().print(hardware_table())
        return OK
    options = economics_options(args)  # a bad flag or [breakeven] key fails before reading
    records, scores = stored_calls(args)
    if not records:
        print(NO_RECORDS, file=sys.stderr)
        return NOTHING
    found = breakevens(records, scores, options)
    if not found:
        print(NO_PAIR, file=sys.stderr)
        return NOTHING
    show_breakevens(found)
    if args.out is not None:
        written, skipped = write_section(Path(args.out), found)
        print("Written: " + ", ".join(str(path) for path in written.values()))
        if skipped is not None:
            print(f"breakeven.html not written: {skipped}", file=sys.stderr)
    return OK


def stored_calls(args: argparse.Namespace) -> tuple[list[Call], list[ScoreValue]]:
    """The selected records' columns that the break-even reads, and their scores: no whole
    record is rebuilt (a store of 100k records takes about 2 s)."""
    from .._economics import calls_from_store
    from ._filters import selection

    store, queries = selection(args)
    calls: list[Call] = []
    scores: list[ScoreValue] = []
    for query in queries:
        found, graded = calls_from_store(store, **query)
        calls += found
        scores += graded
    return calls, scores


NO_RECORDS = "fmgate breakeven: no records match; widen --since or check --store/--run."
NO_PAIR = (
    "fmgate breakeven: nothing to set side by side: the records need a local or self-hosted "
    "chat model with successful timed calls, and an API chat model run on the same prompts "
    "(with a known cost), or --against SPEC to price one from the self-hosted model's tokens."
)


def show_breakevens(found: Sequence[BreakEven]) -> None:
    """The break-even table, then per pair the cost at each monthly volume, then assumptions."""
    from .._report.economics import assumptions, terminal_table

    screen = console()
    screen.print(terminal_table(found))
    for be in found:
        screen.print(volume_table(be))
    for line in assumptions(found):
        screen.print(f"- {line}", highlight=False)


def volume_table(be: BreakEven) -> Table:
    """Per monthly volume: machines, each side's cost per month and per 1,000 calls."""
    from rich import box
    from rich.table import Table

    from .._economics import VOLUMES
    from .._report.economics import capacity_cell, fmt_volume, hardware_cell
    from .._report.render import fmt_usd

    table = Table(
        title=f"{be.local} on {hardware_cell(be)} vs {be.api.label}",
        caption=f"Capacity: {capacity_cell(be)}.",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        caption_justify="left",
    )
    for header in ("calls/month", "machines", "self-hosted/month", "API/month"):
        table.add_column(header, justify="right")
    for header in ("self-hosted/1k", "API/1k", "cheaper"):
        table.add_column(header, justify="right" if header != "cheaper" else "left")
    for volume in VOLUMES:
        mine, theirs = be.self_hosted_per_month(volume), be.api_per_month(volume)
        per_1k = be.per_1k_calls(volume)
        cheaper = "self-hosted" if mine < theirs else ("API" if theirs < mine else "same")
        table.add_row(
            fmt_volume(volume),
            str(be.machines(volume)),
            fmt_usd(mine),
            fmt_usd(theirs),
            fmt_usd(per_1k[0]),
            fmt_usd(per_1k[1]),
            cheaper,
        )
    return table


def hardware_table() -> Table:
    """The bundled price table: row, GPU, price, billing, what it is, source and date."""
    from rich import box
    from rich.table import Table

    from .._economics import hardware_table as rows

    table = Table(
        title="fmgate's on-demand price table (--hardware NAME, or a GPU for its first row)",
        caption="Prices change and vary by region: name your own with --hardware USD_PER_HOUR.",
        box=box.SIMPLE_HEAD,
        title_justify="left",
        caption_justify="left",
    )
    for header in ("name", "GPU", "USD/hour", "billing", "machine", "source, date"):
        table.add_column(header, justify="right" if header == "USD/hour" else "left")
    for machine in rows().values():
        table.add_row(
            machine.name,
            machine.gpu or "-",
            f"{machine.usd_per_hour.normalize():f}",
            machine.billing,
            machine.description,
            machine.source,
        )
    return table
