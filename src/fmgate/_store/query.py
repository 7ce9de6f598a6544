"""Filters of ``fmgate.records()`` as SQL, and the times they accept (``"7d"``, ISO, datetime)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .._errors import InvalidRequestError

TimeLike = datetime | str

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def utc_text(moment: datetime) -> str:
    """The one text form of a UTC time the store sorts and compares: fixed width, microseconds.

    A naive datetime is taken to be UTC already, as every record's ``started_at`` is.
    """
    if moment.tzinfo is not UTC:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


def parse_time(value: TimeLike, *, now: datetime | None = None) -> datetime:
    """A datetime, a relative age (``"30m"``, ``"12h"``, ``"7d"``, ``"2w"``) or an ISO date/time."""
    if isinstance(value, datetime):
        return value
    text = value.strip()
    match = _RELATIVE.fullmatch(text)
    if match:
        amount, unit = float(match[1]), _UNITS[match[2]]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequestError(
            f"Cannot read {value!r} as a time: give a datetime, an age like '30m', '12h', '7d' "
            "or '2w', or an ISO date such as '2025-01-31' or '2025-01-31T12:00'."
        ) from None


def select(
    *,
    alias: str | None,
    backend: str | None,
    model_id: str | None,
    status: str | None,
    since: TimeLike | None,
    until: TimeLike | None,
    limit: int | None,
    tags: Mapping[str, str] | None = None,
    columns: Sequence[str] | None = None,
) -> tuple[str, list[Any]]:
    """The ``SELECT`` of the matching records, newest first (the caller reverses them):
    every column, or ``columns`` (names the caller has checked against the table's)."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("alias", alias),
        ("backend", backend),
        ("model_id", model_id),
        ("outcome_status", status),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    for key, value in (tags or {}).items():
        # json_each, not a JSON path: a tag key may hold any character.
        where.append("EXISTS (SELECT 1 FROM json_each(records.tags) WHERE key = ? AND value = ?)")
        args.extend([key, value])
    if since is not None:
        where.append("started_at >= ?")
        args.append(utc_text(parse_time(since)))
    if until is not None:
        where.append("started_at < ?")
        args.append(utc_text(parse_time(until)))
    names = "*" if columns is None else ", ".join(f'"{name}"' for name in columns)
    query = f"SELECT {names} FROM records"
    if where:
        query += " WHERE " + " AND ".join(where)
    query += " ORDER BY started_at DESC, rowid DESC"
    if limit is not None:
        if limit < 0:
            raise InvalidRequestError(f"limit must be 0 or more, not {limit}")
        query += " LIMIT ?"
        args.append(limit)
    return query, args
