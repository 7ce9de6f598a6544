"""The record store: SQLite, the embedded default sink, and ``fmgate.records()``.

The default store is ``records.sqlite3`` in the user data dir
(``platformdirs.user_data_dir("fmgate")``), or the path in ``$FMGATE_STORE``; ``FMGATE_STORE=none``
turns it off. It is opened on the first record, not at import, and follows the variable: a new
value opens the store it names (and closes the previous one).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from .._errors import ConfigurationError
from .._record import CallRecord
from .query import TimeLike
from .sqlite import SqliteStore

__all__ = ["DEFAULT_STORE", "STORE_ENV", "DefaultStore", "SqliteStore", "records"]

STORE_ENV = "FMGATE_STORE"
# Values that turn the store off: "none" as documented, and the words people try first (a store
# file named "off" in the working directory helps nobody).
OFF = frozenset({"none", "off", "false", "0", "no"})
FILE_NAME = "records.sqlite3"

logger = logging.getLogger("fmgate")


def default_path() -> Path | None:
    """Where the default store lives now, or None when it is off: ``$FMGATE_STORE``, else the
    ``[store]`` path of the config file in force (``fmgate.toml``), else the user data dir."""
    raw = os.environ.get(STORE_ENV, "").strip()
    if not raw:
        raw = _configured() or ""
    if raw.lower() in OFF:
        return None
    if raw:
        return Path(raw).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("fmgate")) / FILE_NAME


def _configured() -> str | None:
    from .._config import load_config

    try:
        return load_config().store_path
    except ConfigurationError as exc:
        logger.error("fmgate: the [store] setting is ignored: %s", exc)
        return None


class DefaultStore:
    """The sink that writes to the default store, opening it on the first record."""

    def __init__(self) -> None:
        # The FMGATE_STORE value the store was opened for, and the store (None: off or unusable).
        self._current: tuple[str, SqliteStore | None] | None = None
        self._lock = threading.Lock()

    def current(self) -> SqliteStore | None:
        """The store for the present ``$FMGATE_STORE``, or None when off or unusable."""
        # Follows both variables; a [store] table in ./fmgate.toml is read when the store opens.
        key = os.environ.get(STORE_ENV, "") + "\0" + os.environ.get("FMGATE_CONFIG", "")
        current = self._current
        if current is not None and current[0] == key:
            return current[1]
        with self._lock:
            if self._current is None or self._current[0] != key:
                self._close()
                self._current = (key, _open_default())
            return self._current[1]

    def write(self, record: CallRecord) -> None:
        store = self.current()
        if store is not None:
            store.write(record)

    def flush(self) -> None:
        current = self._current
        if current is not None and current[1] is not None:
            current[1].flush()

    def reset(self) -> None:
        """Close the open store and forget it: the next record opens it again."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        current, self._current = self._current, None
        if current is not None and current[1] is not None:
            current[1].close()

    def __repr__(self) -> str:
        return f"<DefaultStore {self._current[1] if self._current else None!r}>"


def _open_default() -> SqliteStore | None:
    path = default_path()
    if path is None:
        return None
    try:
        return SqliteStore(path)
    except ConfigurationError as exc:
        logger.error("fmgate: records are not stored (set %s to fix): %s", STORE_ENV, exc)
        return None


DEFAULT_STORE = DefaultStore()


def records(
    *,
    alias: str | None = None,
    backend: str | None = None,
    model_id: str | None = None,
    since: TimeLike | None = None,
    until: TimeLike | None = None,
    status: str | None = None,
    tags: Mapping[str, str] | None = None,
    limit: int | None = None,
    store: str | os.PathLike[str] | SqliteStore | None = None,
) -> list[CallRecord]:
    """Stored records, oldest first, from the default store or ``store`` (a path or a store).

    Every filter is optional: ``alias``, ``backend``, ``model_id`` and ``status`` (``"ok"`` or
    ``"error"``) match exactly; ``since`` (inclusive) and ``until`` (exclusive) take a datetime
    (naive means UTC), an age such as ``"30m"``, ``"12h"``, ``"7d"`` or ``"2w"``, or an ISO date
    such as ``"2025-01-31"``; ``tags`` keeps records carrying every given tag
    (:func:`fmgate.tagged`); ``limit`` keeps the newest ``limit`` records. Pending writes of
    every registered sink are flushed first, so a caller sees its own records.
    """
    from .._recording import flush

    flush()
    return _resolve(store).records(
        alias=alias,
        backend=backend,
        model_id=model_id,
        since=since,
        until=until,
        status=status,
        tags=tags,
        limit=limit,
    )


def _resolve(store: str | os.PathLike[str] | SqliteStore | None) -> SqliteStore:
    if isinstance(store, SqliteStore):
        return store
    if store is None:
        found = DEFAULT_STORE.current()
        if found is None:
            raise ConfigurationError(
                f"No record store: {STORE_ENV} is 'none' or names a path that cannot be opened."
            )
        return found
    path = Path(store).expanduser()
    if not path.is_file():
        raise ConfigurationError(f"No record store at {path}.")
    return SqliteStore(path)
