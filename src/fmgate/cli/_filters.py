"""The stored records a command reads: ``--since``, ``--until``, ``--run``, ``--alias``,
``--store`` (``fmgate report`` and ``fmgate breakeven``)."""

from __future__ import annotations

import argparse
from typing import Any


def add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", metavar="WHEN", help="an age (30m, 12h, 7d, 2w) or ISO date")
    parser.add_argument("--until", metavar="WHEN")
    parser.add_argument("--run", metavar="ID", help="one compare run ('latest' for the newest)")
    parser.add_argument("--alias", action="append", metavar="NAME", help="repeatable")
    parser.add_argument("--store", metavar="FILE", help="a store file (default: the default store)")


def select_records(args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """The stored records that :func:`add_filters`' options select, and their scores."""
    store, queries = selection(args)
    records = [r for query in queries for r in store.records(**query)]
    return records, (store.scores([r.id for r in records]) if records else [])


def selection(args: argparse.Namespace) -> tuple[Any, list[dict[str, Any]]]:
    """The store :func:`add_filters`' options name, and one query (keyword filters) per alias:
    the filters combine with AND, repeated aliases with OR."""
    from .._store import _resolve

    store = _resolve(args.store)
    tags = None
    if args.run:
        tags = {"fmgate.run": _latest_run(store) if args.run == "latest" else args.run}
    return store, [
        {"alias": alias, "since": args.since, "until": args.until, "tags": tags}
        for alias in (args.alias or [None])
    ]


def _latest_run(store: Any) -> str:
    from .._errors import InvalidRequestError
    from .._tags import RUN

    run = store.newest_tag(RUN)
    if run is None:
        raise InvalidRequestError("No compare run in the store: run fmgate compare first.")
    return str(run)
