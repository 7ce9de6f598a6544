"""``SqliteStore``: records in a SQLite file, written by a background thread.

``write`` only puts the record on a queue. One daemon thread per store (started by the first
write) waits for a record, lets ``linger_s`` pass so that more can arrive, then takes all there
are and commits them in transactions of at most ``batch_size`` rows (``executemany``). ``flush``
puts a marker on the queue, cuts the wait short and returns once the writer has committed
everything queued before the marker. Errors in the writer are logged on the ``fmgate`` logger
and never reach the caller. Stores still open are flushed and closed at interpreter exit.

``sqlite3`` is imported on first use, so that ``import fmgate`` stays light.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import operator
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._clean import SANITIZED_TAG, storable
from .._errors import ConfigurationError, InvalidRequestError, StoreError
from .._record import _GROUPS, CallRecord, Score
from .migrations import migrate
from .query import TimeLike, select, utc_text

if TYPE_CHECKING:
    import queue
    import sqlite3

logger = logging.getLogger("fmgate")

BUSY_TIMEOUT_S = 30.0
WAL_CHECKPOINT_PAGES = 10_000
_JSON = "JSON"
_BOOLEAN = "BOOLEAN"


class _Flush:
    """A marker on the queue: set once everything queued before it is committed."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()
# Built once: json.dumps with options builds a new encoder per call. A value JSON cannot hold
# (a tuple is fine, a set is not) is stored as its str().
_to_json = json.JSONEncoder(default=str, ensure_ascii=False).encode
_OPEN: set[SqliteStore] = set()  # stores whose writer runs: flushed and closed at exit
_OPEN_LOCK = threading.Lock()


def _paths() -> dict[str, str]:
    """Each flat key of ``CallRecord.to_dict`` -> its attribute path (``usage.input_tokens``)."""
    import dataclasses

    out: dict[str, str] = {}
    for f in dataclasses.fields(CallRecord):
        if f.name in _GROUPS:
            for sub in dataclasses.fields(_GROUPS[f.name]):
                out[f"{f.name}_{sub.name}"] = f"{f.name}.{sub.name}"
        else:
            out[f.name] = f.name
    return out


_INSERT_SCORE = (
    "INSERT OR REPLACE INTO scores (record_id, scorer, value, created_at, judge_record_id, detail)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


def _score_row(score: Score) -> tuple[Any, ...]:
    return (
        score.record_id,
        score.scorer,
        score.value,
        utc_text(score.created_at),
        score.judge_record_id,
        score.detail,
    )


def _tag_path(key: str) -> str:
    """The JSON path of one tag: ``$."fmgate.role"`` (JSON string escapes for quotes)."""
    return "$." + json.dumps(key)


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {d[0]: value for d, value in zip(cursor.description, row, strict=True)}


def _new_queue() -> queue.SimpleQueue[object]:
    import queue  # on first use: import fmgate stays light

    return queue.SimpleQueue()


def _queue_empty() -> type[Exception]:
    import queue

    return queue.Empty


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, synchronous=NORMAL."""
    import sqlite3

    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        db.close()
        raise
    return db


def _open(path: Path) -> dict[str, str]:
    """Create or migrate the file; its columns and their declared types."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = connect(path)
    try:
        migrate(db)
        return {row[1]: row[2].upper() for row in db.execute("PRAGMA table_info(records)")}
    finally:
        db.close()


class SqliteStore:
    """A sink that keeps every record in a SQLite file (WAL mode), and reads them back.

    ``SqliteStore(path)`` creates the file and its folder if needed and brings the schema up to
    date. Writing never waits on the disk; ``flush()`` waits until what was written is committed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 1000,
        linger_s: float = 0.05,
    ) -> None:
        if batch_size < 1 or linger_s < 0:
            raise ConfigurationError("batch_size must be 1 or more and linger_s 0 or more")
        self.path = Path(path).expanduser()
        self.batch_size = batch_size
        self.linger_s = linger_s
        try:
            self._columns = _open(self.path)
        except Exception as exc:
            raise StoreError(f"Cannot open the record store {self.path}: {exc}") from exc
        self._prepare_insert()
        self._queue = _new_queue()
        self._wake = threading.Event()  # set by flush and close: stop lingering
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._warned_closed = False
        self._failures = 0  # batches lost to the file (a full disk): one traceback, then counts

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def _prepare_insert(self) -> None:
        # The columns both this code and the file know; a newer file's extra columns stay NULL.
        paths = {k: p for k, p in _paths().items() if k in self._columns}
        keys = list(paths)
        self._getter: Callable[[CallRecord], tuple[Any, ...]] = operator.attrgetter(*paths.values())
        json_keys = ("started_at", "cost_amount", "params", "tags")
        self._at = {k: keys.index(k) for k in json_keys if k in paths}
        self._keys = keys
        names = ", ".join(keys)
        marks = ", ".join("?" * len(keys))
        self._insert = f"INSERT OR IGNORE INTO records ({names}) VALUES ({marks})"

    # -- writing --------------------------------------------------------------------------------

    def write(self, record: CallRecord) -> None:
        """Queue ``record`` for the writer thread; returns at once."""
        if self._thread is None and not self._start():
            return
        self._queue.put(record)

    def write_score(self, score: Score) -> None:
        """Queue ``score`` (a grade of a stored record); a later score by the same scorer wins."""
        if self._thread is None and not self._start():
            return
        self._queue.put(score)

    def flush(self) -> None:
        """Block until every record written so far is committed (or its failure logged)."""
        thread = self._thread
        if thread is None:
            return
        marker = _Flush()
        self._queue.put(marker)
        self._wake.set()
        while not marker.done.wait(0.1):
            if not thread.is_alive():
                return

    def close(self) -> None:
        """Flush, then stop the writer. Records written after ``close`` are dropped, with a log."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread, self._thread = self._thread, None
        with _OPEN_LOCK:
            _OPEN.discard(self)
        if thread is not None:
            self._queue.put(_STOP)
            self._wake.set()
            thread.join()

    def _start(self) -> bool:
        with self._lock:
            if self._thread is not None:
                return True
            if self._closed:
                if not self._warned_closed:
                    self._warned_closed = True
                    logger.warning("fmgate: %r is closed; records written to it are dropped", self)
                return False
            thread = threading.Thread(target=self._run, name="fmgate-store-writer", daemon=True)
            thread.start()
            self._thread = thread
            _hook_exit()
        with _OPEN_LOCK:
            _OPEN.add(self)
        return True

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            stop = False
            while not stop:
                db, stop = self._drain(db, self._gather())
        finally:
            if db is not None:
                db.close()

    def _drain(
        self, db: sqlite3.Connection | None, items: list[object]
    ) -> tuple[sqlite3.Connection | None, bool]:
        """Commit ``items`` in order, ``batch_size`` rows a transaction; answer flush markers."""
        rows: list[tuple[Any, ...]] = []
        scores = [_score_row(item) for item in items if isinstance(item, Score)]
        if scores:
            items = [item for item in items if not isinstance(item, Score)]
        for item in items:
            if isinstance(item, _Flush):
                db, rows = self._commit(db, rows, scores), []
                scores = []
                item.done.set()
            elif item is _STOP:
                return self._commit(db, rows, scores), True
            elif (row := self._row(item)) is not None:
                rows.append(row)
                if len(rows) >= self.batch_size:
                    db, rows = self._commit(db, rows), []
        return self._commit(db, rows, scores), False

    def _gather(self) -> list[object]:
        """Wait for the next item, give more ``linger_s`` to arrive, then take all there are.

        While the writer lingers nobody waits on the queue, so a ``write`` meanwhile is a bare
        append, with no thread to wake; ``flush`` and ``close`` cut the wait short.
        """
        items = [self._queue.get()]
        if not isinstance(items[0], _Flush) and items[0] is not _STOP:
            self._wake.wait(self.linger_s)
        self._wake.clear()
        get = self._queue.get_nowait
        empty = _queue_empty()
        try:
            while True:
                items.append(get())
        except empty:
            return items

    def _row(self, record: Any) -> tuple[Any, ...] | None:
        try:
            values = list(self._getter(record))
            at = self._at
            if "started_at" in at:
                values[at["started_at"]] = utc_text(record.started_at)
            if "cost_amount" in at and values[at["cost_amount"]] is not None:
                values[at["cost_amount"]] = str(values[at["cost_amount"]])
            if "params" in at:
                values[at["params"]] = _to_json(values[at["params"]])
            if "tags" in at:
                tags = values[at["tags"]]
                values[at["tags"]] = _to_json(tags) if tags else "{}"  # most records: none
            return tuple(values)
        except Exception:
            logger.exception("fmgate: %r cannot store %r; it is skipped", self, record)
            return None

    def _commit(
        self,
        db: sqlite3.Connection | None,
        rows: list[tuple[Any, ...]],
        scores: Sequence[tuple[Any, ...]] = (),
    ) -> sqlite3.Connection | None:
        """Insert ``rows`` (and ``scores``, after them) in one transaction; on failure log, and
        reconnect for the next batch."""
        if not rows and not scores:
            return db
        try:
            if db is None:
                db = connect(self.path)
                # Checkpoint less often than every 1,000 pages: a burst is written once, not
                # over and over; the WAL file is cut back to 64 MB after a checkpoint.
                db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
                db.execute("PRAGMA journal_size_limit=67108864")
            db.execute("BEGIN")
            try:
                self._insert_rows(db, rows)
                if scores:
                    db.executemany(_INSERT_SCORE, scores)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return db
        except Exception:
            self._lost(len(rows))
            if db is not None:
                db.close()
            return None

    def _insert_rows(self, db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """All rows at once; if one holds a value SQLite cannot bind (a lone surrogate, an int
        past 64 bits), row by row in the same transaction, so that it costs no other row."""
        import sqlite3

        unbindable = (
            OverflowError,
            UnicodeEncodeError,
            sqlite3.InterfaceError,
            sqlite3.ProgrammingError,
        )
        db.execute("SAVEPOINT batch")
        try:
            db.executemany(self._insert, rows)
        except unbindable:
            db.execute("ROLLBACK TO batch")  # undo the rows before the bad one, then one by one
            for row in rows:
                try:
                    db.execute(self._insert, row)
                except unbindable:
                    self._insert_fixed(db, row)
        db.execute("RELEASE batch")

    def _insert_fixed(self, db: sqlite3.Connection, row: tuple[Any, ...]) -> None:
        fixed, changed = self._storable(row)
        try:
            db.execute(self._insert, fixed)
        except Exception:
            logger.exception("fmgate: %r cannot store record %s; it is skipped", self, row[0])
            return
        logger.warning(
            "fmgate: %r stored record %s with %s replaced (not storable as given)",
            self,
            row[0],
            ", ".join(changed),
        )

    def _storable(self, row: tuple[Any, ...]) -> tuple[tuple[Any, ...], list[str]]:
        """``row`` with each value SQLite cannot hold replaced, and the names of those columns
        added to the record's ``fmgate.sanitized`` tag."""
        values, changed = list(row), []
        for i, value in enumerate(values):
            if isinstance(value, str) and (fixed := storable(value)) is not value:
                values[i] = fixed
            elif isinstance(value, int) and not -(2**63) <= value < 2**63:
                values[i] = None
            elif value is not None and not isinstance(value, str | int | float | bytes):
                values[i] = str(value)
            else:
                continue
            changed.append(self._keys[i])
        if "tags" in self._at:
            at = self._at["tags"]
            tags = json.loads(values[at]) if values[at] else {}
            tags[SANITIZED_TAG] = ",".join(changed)
            values[at] = _to_json(tags)
        return tuple(values), changed

    def _lost(self, n: int) -> None:
        """Log a lost batch: the first with its traceback, later ones as a count."""
        self._failures += 1
        if self._failures == 1:
            logger.exception("fmgate: %r failed to store %d records", self, n)
        else:
            logger.error(
                "fmgate: %r failed to store %d records (failure %d; the first was logged with "
                "its cause)",
                self,
                n,
                self._failures,
            )

    # -- reading --------------------------------------------------------------------------------

    def records(
        self,
        *,
        alias: str | None = None,
        backend: str | None = None,
        model_id: str | None = None,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        status: str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> list[CallRecord]:
        """The stored records that match, oldest first; ``limit`` keeps the newest ones.

        Flushes this store first, so a caller sees its own records.
        """
        query, args = select(
            alias=alias,
            backend=backend,
            model_id=model_id,
            status=status,
            since=since,
            until=until,
            tags=tags,
            limit=limit,
        )
        self.flush()
        with self._reading() as db:
            cursor = db.execute(query, args)
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
            return self._records(names, reversed(rows))

    def _records(self, names: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[CallRecord]:
        """Rows of ``SELECT *`` as records: each column's kind looked up once, not per row."""
        kinds = [self._columns.get(name) for name in names]
        decode = [(i, kind) for i, kind in enumerate(kinds) if kind in (_JSON, _BOOLEAN)]
        records = []
        for row in rows:
            values = list(row)
            for i, kind in decode:
                if values[i] is not None:
                    values[i] = json.loads(values[i]) if kind == _JSON else bool(values[i])
            records.append(CallRecord.from_dict(dict(zip(names, values, strict=True))))
        return records

    def rows(
        self,
        columns: Sequence[str],
        *,
        alias: str | None = None,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        status: str | None = None,
        tags: Mapping[str, str] | None = None,
        tag_values: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        """The named columns of the matching records, oldest first, one tuple per record: JSON
        columns decoded, booleans as bool; then the value of each tag in ``tag_values`` (``None``
        where a record lacks it), read in SQL. Reading a few columns of many records this way is
        several times faster than rebuilding whole records (the break-even reads 100k so)."""
        unknown = [name for name in columns if name not in self._columns]
        if unknown:
            raise InvalidRequestError(
                f"No column {unknown[0]!r} in the records table; columns are the record's flat "
                "names (CallRecord.to_dict keys), e.g. 'latency_total_s'."
            )
        query, args = select(
            alias=alias,
            backend=None,
            model_id=None,
            status=status,
            since=since,
            until=until,
            tags=tags,
            limit=None,
            columns=columns,
        )
        if tag_values:  # json_extract with a quoted key: a tag key may hold dots
            paths = ", ".join("json_extract(tags, ?)" for _ in tag_values)
            query = query.replace(" FROM records", f", {paths} FROM records", 1)
            args = [*(_tag_path(key) for key in tag_values), *args]
        self.flush()
        with self._reading() as db:
            rows = db.execute(query, args).fetchall()
        kinds = [self._columns.get(name) for name in columns]
        decode = [i for i, kind in enumerate(kinds) if kind in (_JSON, _BOOLEAN)]
        if not decode:
            return rows[::-1]
        out = []
        for row in reversed(rows):
            values = list(row)
            for i in decode:
                if values[i] is not None:
                    values[i] = json.loads(values[i]) if kinds[i] == _JSON else bool(values[i])
            out.append(tuple(values))
        return out

    def score_values(self) -> list[tuple[str, str, float | None]]:
        """Every stored score as ``(record_id, scorer, value)``, oldest first: what a summary
        of many records needs, without building :class:`Score` objects."""
        self.flush()
        with self._reading() as db:
            rows = db.execute("SELECT record_id, scorer, value FROM scores ORDER BY rowid")
            return [(str(a), str(b), c) for a, b, c in rows.fetchall()]

    def scores(self, record_ids: Iterable[str] | None = None) -> list[Score]:
        """The stored scores, of the given records only when ``record_ids`` is given."""
        self.flush()
        with self._reading() as db:
            db.row_factory = _dict_row
            if record_ids is None:
                rows = db.execute("SELECT * FROM scores ORDER BY rowid").fetchall()
            else:
                ids = list(record_ids)
                rows = []
                for start in range(0, len(ids), 500):  # under SQLite's limit on parameters
                    chunk = ids[start : start + 500]
                    marks = ", ".join("?" * len(chunk))
                    query = f"SELECT * FROM scores WHERE record_id IN ({marks}) ORDER BY rowid"
                    rows.extend(db.execute(query, chunk).fetchall())
        return [Score.from_dict(row) for row in rows]

    def newest_tag(self, key: str) -> str | None:
        """The value of tag ``key`` on the newest record that has it (e.g. the last compare run),
        found in SQL rather than by reading records back."""
        self.flush()
        with self._reading() as db:
            row = db.execute(
                "SELECT tag.value FROM records, json_each(records.tags) AS tag WHERE tag.key = ? "
                "ORDER BY records.started_at DESC, records.rowid DESC LIMIT 1",
                (key,),
            ).fetchone()
        return None if row is None else str(row[0])

    def count(self) -> int:
        """How many records the file holds (after a flush)."""
        self.flush()
        with self._reading() as db:
            (n,) = db.execute("SELECT count(*) FROM records").fetchone()
        return int(n)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading; a damaged file is a typed error that names it."""
        import sqlite3

        try:
            db = connect(self.path)
        except sqlite3.Error as exc:
            raise self._damaged(exc) from exc
        try:
            yield db
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc
        finally:
            db.close()

    def _damaged(self, exc: Exception) -> StoreError:
        return StoreError(
            f"The record store {self.path} cannot be read ({exc}). Move it aside to start a new "
            f"one, or try to rescue it with: sqlite3 {self.path} .recover"
        )


def close_all() -> None:
    """Flush and stop every open store: run at interpreter exit."""
    with _OPEN_LOCK:
        stores = list(_OPEN)
    for store in stores:
        try:
            store.close()
        except Exception:
            logger.exception("fmgate: closing %r failed", store)


def _after_fork_in_child() -> None:
    # The writer threads did not survive the fork, and a lock held by one of the parent's other
    # threads would never be released: a child starts afresh on its first write.
    global _OPEN_LOCK
    _OPEN_LOCK = threading.Lock()
    stores = list(_OPEN)
    _OPEN.clear()
    for store in stores:
        store._queue = _new_queue()
        store._wake = threading.Event()
        store._thread = None
        store._lock = threading.Lock()


def _hook_exit() -> None:
    """Close stores at exit in a multiprocessing child too: a forked one ends with ``os._exit``,
    which skips ``atexit``, but first runs multiprocessing's own exit finalizers."""
    global _hooked_pid
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None or _hooked_pid == os.getpid():
        return
    _hooked_pid = os.getpid()
    mp_util.Finalize(None, close_all, exitpriority=0)


_hooked_pid: int | None = None
atexit.register(close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
