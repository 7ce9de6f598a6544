"""The store's schema, as numbered migrations that are only ever appended.

Each migration is a function ``mNNN_name(db)`` registered in order with ``@migration``. The
``_migrations`` table records which have run; :func:`migrate` runs the missing ones, in order, in
one transaction. A schema change is a new migration: a migration that has shipped is never
edited (tests/test_store.py pins the schema migration 1 creates), since databases in the wild
already ran it. The pattern is simonw/llm's ``llm/migrations.py``.

Declared column types say how a value reads back: ``BOOLEAN`` holds 0/1, ``JSON`` holds JSON
text, and ``cost_amount`` is ``TEXT`` so that a Decimal stays exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

Migration = Callable[["sqlite3.Connection"], None]

MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration] | None = None) -> list[str]:
    """Run the migrations ``db`` has not run yet; returns their names.

    ``db`` must be in autocommit mode (``isolation_level=None``). An up-to-date file is only
    read. Otherwise ``BEGIN IMMEDIATE`` takes the write lock before looking again, so that two
    processes opening a new store at once cannot both migrate it.
    """
    todo = MIGRATIONS if migrations is None else migrations
    if not _pending(db, todo):
        return []
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
        )
        ran = []
        for fn in _pending(db, todo):
            fn(db)
            now = datetime.now(UTC).isoformat()
            db.execute("INSERT INTO _migrations VALUES (?, ?)", (fn.__name__, now))
            ran.append(fn.__name__)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return ran


def applied(db: sqlite3.Connection) -> list[str]:
    """The names of the migrations ``db`` has run, in the order they ran."""
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
    ).fetchone()
    if exists is None:
        return []
    return [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY rowid")]


def _pending(db: sqlite3.Connection, migrations: Sequence[Migration]) -> list[Migration]:
    done = set(applied(db))
    return [fn for fn in migrations if fn.__name__ not in done]


@migration
def m001_records(db: sqlite3.Connection) -> None:
    # One column per key of CallRecord.to_dict() as of schema_version 1.
    db.execute(
        """
        CREATE TABLE records (
            id TEXT PRIMARY KEY,
            started_at TEXT NOT NULL,
            backend TEXT NOT NULL,
            model_id TEXT NOT NULL,
            alias TEXT,
            provider TEXT,
            revision TEXT,
            operation TEXT,
            distribution TEXT,
            endpoint TEXT,
            params JSON,
            stream BOOLEAN,
            usage_input_tokens INTEGER,
            usage_output_tokens INTEGER,
            usage_cache_read_tokens INTEGER,
            usage_cache_write_tokens INTEGER,
            usage_reasoning_tokens INTEGER,
            usage_source TEXT,
            latency_total_s REAL,
            latency_ttft_s REAL,
            latency_load_s REAL,
            latency_decode_tokens_per_s REAL,
            latency_e2e_per_token_s REAL,
            cost_amount TEXT,
            cost_basis TEXT,
            cost_currency TEXT,
            cost_source TEXT,
            cost_energy_j REAL,
            access_open_weights BOOLEAN,
            access_license TEXT,
            access_parameters INTEGER,
            access_dtype TEXT,
            access_quantization TEXT,
            access_weights_bytes INTEGER,
            access_peak_memory_bytes INTEGER,
            access_context_window INTEGER,
            access_data_leaves_machine BOOLEAN,
            access_requires_network BOOLEAN,
            access_requires_api_key BOOLEAN,
            access_offline_capable BOOLEAN,
            access_hardware TEXT,
            outcome_status TEXT,
            outcome_finish_reason TEXT,
            outcome_error_type TEXT,
            outcome_error_message TEXT,
            outcome_http_status INTEGER,
            outcome_attempts INTEGER,
            outcome_fallback_from TEXT,
            outcome_chunks INTEGER,
            environment_fmgate_version TEXT,
            environment_backend_library TEXT,
            environment_python_version TEXT,
            schema_version INTEGER
        )
        """
    )
    db.execute("CREATE INDEX records_started_at ON records (started_at)")
    db.execute("CREATE INDEX records_alias ON records (alias, started_at)")
    db.execute("CREATE INDEX records_backend_model ON records (backend, model_id, started_at)")


@migration
def m002_tags_and_scores(db: sqlite3.Connection) -> None:
    # schema_version 2: CallRecord.tags, and the scores ``fmgate compare`` gives to records.
    db.execute("ALTER TABLE records ADD COLUMN tags JSON")
    db.execute(
        """
        CREATE TABLE scores (
            record_id TEXT NOT NULL,
            scorer TEXT NOT NULL,
            value REAL,
            created_at TEXT NOT NULL,
            judge_record_id TEXT,
            detail TEXT,
            PRIMARY KEY (record_id, scorer)
        )
        """
    )


@migration
def m003_retries_and_fallback(db: sqlite3.Connection) -> None:
    # schema_version 3: the caller's whole wait across retries, and why a fallback served.
    db.execute("ALTER TABLE records ADD COLUMN latency_wall_s REAL")
    db.execute("ALTER TABLE records ADD COLUMN outcome_fallback_reason TEXT")


@migration
def m004_sent(db: sqlite3.Connection) -> None:
    # schema_version 4: whether the call sent anything (a refused call left no data anywhere).
    db.execute("ALTER TABLE records ADD COLUMN outcome_sent BOOLEAN")


@migration
def m005_tasks(db: sqlite3.Connection) -> None:
    # schema_version 5: the task asked for, and the items and images a task counts. Rows written
    # before it were chat or embed calls, which their operation tells apart.
    db.execute("ALTER TABLE records ADD COLUMN task TEXT")
    db.execute("ALTER TABLE records ADD COLUMN usage_items INTEGER")
    db.execute("ALTER TABLE records ADD COLUMN usage_images_in INTEGER")
    db.execute("ALTER TABLE records ADD COLUMN usage_images_out INTEGER")
    db.execute(
        "UPDATE records SET task = CASE operation WHEN 'embeddings' THEN 'embed' ELSE 'chat' END"
    )


@migration
def m006_tools_and_output(db: sqlite3.Connection) -> None:
    # schema_version 6: tools offered, the choice asked and calls made; structured output's schema
    # and whether the reply validated. Rows written before it had neither: NULL.
    db.execute("ALTER TABLE records ADD COLUMN tools_offered INTEGER")
    db.execute("ALTER TABLE records ADD COLUMN tools_choice TEXT")
    db.execute("ALTER TABLE records ADD COLUMN tools_called INTEGER")
    db.execute("ALTER TABLE records ADD COLUMN output_schema TEXT")
    db.execute("ALTER TABLE records ADD COLUMN output_schema_hash TEXT")
    db.execute("ALTER TABLE records ADD COLUMN output_valid BOOLEAN")
    db.execute("ALTER TABLE records ADD COLUMN output_mode TEXT")


@migration
def m007_pixels(db: sqlite3.Connection) -> None:
    # schema_version 7: the pixels of the images read and made (width x height, summed).
    db.execute("ALTER TABLE records ADD COLUMN usage_pixels_in INTEGER")
    db.execute("ALTER TABLE records ADD COLUMN usage_pixels_out INTEGER")
