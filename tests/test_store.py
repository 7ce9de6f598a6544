"""The SQLite store: round trip, queries, migrations, the background writer, the default sink."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

import fmgate
from fmgate import (
    Access,
    CallRecord,
    Cost,
    Environment,
    Latency,
    Outcome,
    SqliteStore,
    Usage,
    _recording,
    _registry,
)
from fmgate._store import DEFAULT_STORE, default_path
from fmgate._store import migrations as migrations_module
from fmgate._store.migrations import MIGRATIONS, applied, migrate
from fmgate._store.sqlite import connect

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def full_record(**changes: object) -> CallRecord:
    """A record with every field set to something other than its default."""
    fields: dict[str, object] = dict(
        id=uuid.uuid4().hex,
        started_at=NOW,
        backend="openai",
        model_id="gpt-4o-mini-2024-07-18",
        alias="assistant",
        provider="openai",
        revision="2024-07-18",
        operation="embeddings",
        task="embed",
        distribution="self_hosted",
        endpoint="127.0.0.1:8000",
        params={"max_tokens": 5, "temperature": 0.5, "stop": ["\n", "."], "nested": {"a": None}},
        stream=True,
        usage=Usage(10, 20, 3, 4, 5, "provider", items=6, images_in=7, images_out=8),
        latency=Latency(1.5, 0.25, 2.0, 15.2, 0.075),
        cost=Cost(Decimal("0.000001234567890123456789"), "list_price", "USD", "snap", 12.5),
        access=Access(
            open_weights=False,
            license="apache-2.0",
            parameters=7_000_000_000,
            dtype="bfloat16",
            quantization="awq",
            weights_bytes=14_000_000_000,
            peak_memory_bytes=15_000_000_000,
            context_window=128_000,
            data_leaves_machine=True,
            requires_network=True,
            requires_api_key=False,
            offline_capable=False,
            hardware="cuda:NVIDIA H100",
        ),
        outcome=Outcome("error", "length", "RateLimitError", "slow down", 429, 3, "b:m", 7),
        environment=Environment("0.1.0", "openai 3.57.0", "3.11.7"),
        schema_version=1,
    )
    fields.update(changes)
    return CallRecord(**fields)  # type: ignore[arg-type]


def record(**changes: object) -> CallRecord:
    fields: dict[str, object] = dict(
        id=uuid.uuid4().hex, started_at=NOW, backend="fake", model_id="m"
    )
    fields.update(changes)
    return CallRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "s" / "records.sqlite3")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> fmgate.Model:
    monkeypatch.setattr(_registry, "_plugins", lambda: {"fake": "tests.fakes:FakeBackend"})
    return fmgate.load("fake:echo")


def raw_count(path: Path) -> int:
    """Rows in the file, read with a connection of the test's own."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM records").fetchone()[0])
    finally:
        db.close()


# -- round trip ---------------------------------------------------------------------------------


def test_a_full_record_round_trips_exactly(store: SqliteStore) -> None:
    rec = full_record()
    store.write(rec)
    [back] = store.records()
    assert back == rec
    assert back.cost.amount == Decimal("0.000001234567890123456789")
    assert back.access.open_weights is False and back.stream is True


def test_unknown_fields_stay_none(store: SqliteStore) -> None:
    rec = record()
    store.write(rec)
    [back] = store.records()
    assert back == rec
    assert back.cost.amount is None and back.usage.input_tokens is None
    assert back.access.open_weights is None and back.params == {}


def test_every_record_key_has_a_column(store: SqliteStore) -> None:
    # A new CallRecord field needs a new migration that adds its column.
    db = connect(store.path)
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    finally:
        db.close()
    assert set(full_record().to_dict()) <= columns


def test_times_are_kept_in_utc_and_compare_across_zones(store: SqliteStore) -> None:
    east = datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=3)))  # 11:00 UTC
    store.write(record(started_at=east))
    store.write(record(started_at=NOW))
    first, second = store.records()
    assert first.started_at == east and first.started_at.tzinfo == UTC
    assert second.started_at == NOW
    assert [r.started_at for r in store.records(since="2025-03-01T11:30")] == [NOW]


def test_writing_the_same_record_twice_stores_it_once(store: SqliteStore) -> None:
    rec = record()
    store.write(rec)
    store.write(rec)
    assert store.count() == 1


# -- queries ------------------------------------------------------------------------------------


@pytest.fixture
def filled(store: SqliteStore) -> SqliteStore:
    rows = [
        ("a", "openai", "gpt", "ok", 1),
        ("a", "openai", "gpt", "error", 2),
        ("b", "anthropic", "claude", "ok", 3),
        (None, "openai", "gpt-big", "ok", 4),
    ]
    for alias, backend, model_id, status, hour in rows:
        store.write(
            record(
                alias=alias,
                backend=backend,
                model_id=model_id,
                outcome=Outcome(status),  # type: ignore[arg-type]
                started_at=NOW + timedelta(hours=hour),
                params={"hour": hour},
            )
        )
    return store


def hours(records: list[CallRecord]) -> list[int]:
    return [r.params["hour"] for r in records]


def test_records_come_oldest_first(filled: SqliteStore) -> None:
    assert hours(filled.records()) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"alias": "a"}, [1, 2]),
        ({"backend": "openai"}, [1, 2, 4]),
        ({"model_id": "gpt"}, [1, 2]),
        ({"backend": "openai", "model_id": "gpt-big"}, [4]),
        ({"status": "error"}, [2]),
        ({"status": "ok", "alias": "a"}, [1]),
        ({"since": NOW + timedelta(hours=2)}, [2, 3, 4]),
        ({"until": NOW + timedelta(hours=2)}, [1]),
        ({"since": "2025-03-01T14:00", "until": "2025-03-01T16:00+00:00"}, [2, 3]),
        ({"since": "2025-03-02"}, []),
        ({"until": "2025-03-02"}, [1, 2, 3, 4]),
        ({"limit": 2}, [3, 4]),
        ({"limit": 0}, []),
        ({"backend": "openai", "limit": 1}, [4]),
    ],
)
def test_each_filter(filled: SqliteStore, filters: dict[str, object], expected: list[int]) -> None:
    assert hours(filled.records(**filters)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("since", "expected"), [("30m", 1), ("12h", 2), ("7d", 3), ("2w", 4)])
def test_since_takes_a_relative_age(store: SqliteStore, since: str, expected: int) -> None:
    now = datetime.now(UTC)
    for age in (timedelta(minutes=10), timedelta(hours=5), timedelta(days=3), timedelta(days=10)):
        store.write(record(started_at=now - age))
    assert len(store.records(since=since)) == expected


@pytest.mark.parametrize("bad", ["yesterday", "7 days", "-3d", ""])
def test_an_unreadable_time_is_a_clear_error(store: SqliteStore, bad: str) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="Cannot read"):
        store.records(since=bad)


def test_a_negative_limit_is_refused(store: SqliteStore) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="limit"):
        store.records(limit=-1)


def test_fmgate_records_reads_a_given_store_or_path(filled: SqliteStore) -> None:
    assert hours(fmgate.records(store=filled, alias="a")) == [1, 2]
    assert hours(fmgate.records(store=filled.path, backend="anthropic")) == [3]
    with pytest.raises(fmgate.ConfigurationError, match="No record store"):
        fmgate.records(store=filled.path.parent / "missing.sqlite3")


# -- schema and migrations ----------------------------------------------------------------------


def schema(db: sqlite3.Connection) -> list[str]:
    """Every table's columns and every index's, as SQLite reports them (not the SQL text)."""
    out = []
    objects = db.execute("SELECT type, name FROM sqlite_master ORDER BY type, name").fetchall()
    for kind, name in objects:
        pragma = "table_info" if kind == "table" else "index_info"
        out.append(f"{kind} {name} {db.execute(f'PRAGMA {pragma}({name})').fetchall()}")
    return out


# What migration 1 creates, pinned: it has shipped, so a change is a new migration, not an edit.
M001_SCHEMA_SHA256 = "480ee8e724a934863989700dcddcc68003d83390d87789a31bf9775f8052b360"


def test_migration_1_is_unchanged(tmp_path: Path) -> None:
    db = connect(tmp_path / "m1.sqlite3")
    try:
        migrate(db, MIGRATIONS[:1])
        text = "\n".join(schema(db))
    finally:
        db.close()
    assert hashlib.sha256(text.encode()).hexdigest() == M001_SCHEMA_SHA256, (
        "migration 1 changed: add a new migration instead of editing a shipped one"
    )


def test_migrations_are_numbered_in_order() -> None:
    names = [fn.__name__ for fn in MIGRATIONS]
    numbers = [int(name[1:4]) for name in names]
    assert all(name.startswith("m") and name[4] == "_" for name in names)
    assert numbers == list(range(1, len(names) + 1))


def test_a_new_store_is_in_wal_mode_and_fully_migrated(store: SqliteStore) -> None:
    db = sqlite3.connect(store.path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert applied(db) == [fn.__name__ for fn in MIGRATIONS]
    finally:
        db.close()


def m999_add_region(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE records ADD COLUMN region TEXT")
    db.execute("UPDATE records SET region = 'eu'")


def test_a_later_migration_runs_once_and_rows_survive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.sqlite3"
    old = SqliteStore(path)  # a file made by an older fmgate
    before = [full_record(), record()]
    for rec in before:
        old.write(rec)
    old.close()

    monkeypatch.setattr(migrations_module, "MIGRATIONS", [*MIGRATIONS, m999_add_region])
    new = SqliteStore(path)  # a newer fmgate opens it: its new migration runs
    try:
        new.write(after := record())
        assert new.records() == [*before, after]
        db = connect(path)
        try:
            assert applied(db) == [*(fn.__name__ for fn in MIGRATIONS), "m999_add_region"]
            assert migrate(db) == []  # already applied: not run again
            regions = [r[0] for r in db.execute("SELECT region FROM records ORDER BY rowid")]
        finally:
            db.close()
        assert regions == ["eu", "eu", None]
    finally:
        new.close()


def test_an_older_fmgate_reads_and_writes_a_newer_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A newer version added a column this code does not know: it stays NULL and is ignored.
    path = tmp_path / "newer.sqlite3"
    db = connect(path)
    try:
        migrate(db, [*MIGRATIONS, m999_add_region])
    finally:
        db.close()
    s = SqliteStore(path)
    try:
        s.write(rec := full_record())
        assert s.records() == [rec]
    finally:
        s.close()


# -- the writer ---------------------------------------------------------------------------------


def test_flush_waits_until_everything_written_is_committed(store: SqliteStore) -> None:
    for _ in range(2500):
        store.write(record())
    store.flush()
    assert raw_count(store.path) == 2500


def test_flush_with_nothing_written_starts_no_writer(store: SqliteStore) -> None:
    before = threading.active_count()
    store.flush()
    assert threading.active_count() == before


def test_eight_threads_write_at_once(store: SqliteStore) -> None:
    def work() -> None:
        for _ in range(500):
            store.write(record())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 4000
    assert len({r.id for r in store.records()}) == 4000


def test_a_failed_batch_is_logged_and_the_writer_goes_on(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.write(record())
    store.flush()
    db = sqlite3.connect(store.path, isolation_level=None)
    try:
        db.execute("ALTER TABLE records RENAME TO hidden")
        store.write(record())  # its table is gone: this batch fails
        store.flush()
        assert "failed to store 1 records" in caplog.text
        db.execute("ALTER TABLE hidden RENAME TO records")
    finally:
        db.close()
    store.write(record())
    store.write(object())  # type: ignore[arg-type]  # not a record: logged and skipped
    store.write(record())
    assert store.count() == 3
    assert "cannot store" in caplog.text


def test_writes_after_close_are_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = SqliteStore(tmp_path / "c.sqlite3")
    s.write(record())
    s.close()
    s.write(record())
    s.write(record())
    s.flush()
    assert raw_count(s.path) == 1
    assert caplog.text.count("is closed") == 1


WRITE_AND_EXIT = """
import sys, uuid
from datetime import UTC, datetime
import fmgate
from fmgate._recording import emit

def rec():
    return fmgate.CallRecord(id=uuid.uuid4().hex, started_at=datetime.now(UTC),
                             backend="b", model_id="m")

if sys.argv[1] == "default":
    for _ in range(5000):
        emit(rec())              # through the default store, as every call is
else:
    store = fmgate.SqliteStore(sys.argv[2])
    for _ in range(5000):
        store.write(rec())
# no flush, no close: interpreter exit must commit what is queued
"""


@pytest.mark.parametrize("how", ["default", "explicit"])
def test_nothing_queued_is_lost_on_a_normal_exit(tmp_path: Path, how: str) -> None:
    path = tmp_path / "exit.sqlite3"
    env = {"FMGATE_STORE": str(path), "PATH": "", "HOME": str(tmp_path)}
    subprocess.run(
        [sys.executable, "-c", WRITE_AND_EXIT, how, str(path)], env=env, check=True, timeout=120
    )
    assert raw_count(path) == 5000


WRITE_IN_CHILDREN = """
import multiprocessing as mp, sys, uuid
from datetime import UTC, datetime
import fmgate
from fmgate._recording import emit

def work(n):
    for _ in range(n):
        emit(fmgate.CallRecord(id=uuid.uuid4().hex, started_at=datetime.now(UTC),
                               backend="b", model_id="m"))

if __name__ == "__main__":
    work(10)                     # the parent's store is open before the fork
    ctx = mp.get_context(sys.argv[1])
    children = [ctx.Process(target=work, args=(1000,)) for _ in range(3)]
    for c in children:
        c.start()
    for c in children:
        c.join()
        assert c.exitcode == 0
"""


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_children_lose_nothing(tmp_path: Path, method: str) -> None:
    path = tmp_path / "mp.sqlite3"
    script = tmp_path / "children.py"
    script.write_text(WRITE_IN_CHILDREN)
    env = {"FMGATE_STORE": str(path), "PATH": "", "HOME": str(tmp_path)}
    subprocess.run([sys.executable, str(script), method], env=env, check=True, timeout=120)
    assert raw_count(path) == 3010


# -- the default store --------------------------------------------------------------------------


def test_calls_are_stored_in_the_default_store(model: fmgate.Model) -> None:
    r = model.generate("hi")
    assert fmgate.records() == [r.record]
    path = default_path()
    assert path is not None and raw_count(path) == 1


def test_fmgate_flush_commits_the_default_store(model: fmgate.Model) -> None:
    for i in range(20):
        model.generate(f"hi {i}")
    fmgate.flush()
    path = default_path()
    assert path is not None and raw_count(path) == 20


def test_the_default_store_follows_fmgate_store(
    model: fmgate.Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "one.sqlite3", tmp_path / "two.sqlite3"
    monkeypatch.setenv("FMGATE_STORE", str(first))
    model.generate("a")
    monkeypatch.setenv("FMGATE_STORE", str(second))
    model.generate("b")
    model.generate("c")
    fmgate.flush()
    assert (raw_count(first), raw_count(second)) == (1, 2)


def test_the_default_path_is_in_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FMGATE_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    if sys.platform.startswith("linux"):
        assert default_path() == tmp_path / "data" / "fmgate" / "records.sqlite3"
    else:
        assert default_path() is not None
    monkeypatch.setenv("FMGATE_STORE", "~/x.sqlite3")
    assert default_path() == Path.home() / "x.sqlite3"


@pytest.mark.parametrize("value", ["none", "None", " NONE ", "off", "false", "0"])
def test_fmgate_store_none_turns_the_store_off(
    model: fmgate.Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("FMGATE_STORE", value)
    r = model.generate("hi")
    assert _recording.recent() == [r.record]  # still recorded in memory
    assert DEFAULT_STORE.current() is None
    assert not any(p.suffix == ".sqlite3" for p in tmp_path.rglob("*"))
    with pytest.raises(fmgate.ConfigurationError, match="No record store"):
        fmgate.records()


@pytest.mark.parametrize("where", ["a-file/records.sqlite3", "a-file"])
def test_a_broken_store_path_logs_once_and_calls_go_on(
    model: fmgate.Model,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    (tmp_path / "a-file").write_text("neither a folder nor a SQLite database " * 100)
    monkeypatch.setenv("FMGATE_STORE", str(tmp_path / where))
    with caplog.at_level(logging.ERROR, logger="fmgate"):
        assert model.generate("a").text == "A"
        assert model.generate("b").text == "B"
    assert caplog.text.count("records are not stored") == 1
    assert len(_recording.recent()) == 2


def test_opening_a_file_that_is_not_a_store_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello " * 1000)
    with pytest.raises(fmgate.ConfigurationError, match="Cannot open the record store"):
        SqliteStore(tmp_path / "notes.txt")


def test_import_creates_no_store_and_loads_no_sqlite(tmp_path: Path) -> None:
    code = (
        "import sys, fmgate; fmgate.flush(); fmgate.recent(); "
        "print('sqlite3' in sys.modules, '_sqlite3' in sys.modules)"
    )
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]
    assert list(tmp_path.rglob("*")) == []


def test_a_schema_1_file_is_upgraded_and_its_records_read_back(tmp_path: Path) -> None:
    # A store written by fmgate 0.1 (migration 1 only, no tags column, no scores table).
    path = tmp_path / "v1.sqlite3"
    db = connect(path)
    try:
        migrate(db, MIGRATIONS[:1])
        old = full_record()
        columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
        flat = {k: v for k, v in old.to_dict().items() if k in columns}
        flat["params"] = '{"temperature": 0.2}'
        flat["stream"] = int(flat["stream"])
        names = ", ".join(flat)
        db.execute(
            f"INSERT INTO records ({names}) VALUES ({', '.join('?' * len(flat))})",
            [v if not isinstance(v, bool) else int(v) for v in flat.values()],
        )
    finally:
        db.close()
    s = SqliteStore(path)
    try:
        (back,) = s.records()
        assert back.tags == {}
        assert back.task == "embed"  # rows older than schema 5: the task read from the operation
        tokens = dataclasses.replace(old.usage, items=None, images_in=None, images_out=None)
        assert back.usage == tokens and back.cost == old.cost
        s.write(tagged := record(tags={"fmgate.run": "r1"}))
        s.write_score(fmgate.Score(tagged.id, "contains", 1.0, datetime.now(UTC)))
        assert s.records(tags={"fmgate.run": "r1"}) == [tagged]
        assert [sc.value for sc in s.scores([tagged.id])] == [1.0]
    finally:
        s.close()
    db = connect(path)
    try:
        assert applied(db) == [fn.__name__ for fn in MIGRATIONS]
    finally:
        db.close()


def test_tags_filter_matches_every_given_tag(store: SqliteStore) -> None:
    a = record(tags={"fmgate.run": "r1", "fmgate.role": "model"})
    b = record(tags={"fmgate.run": "r1", "fmgate.role": "judge"})
    c = record(tags={"fmgate.run": "r2", 'odd "key"': "x"})
    for rec in (a, b, c):
        store.write(rec)
    assert store.records(tags={"fmgate.run": "r1"}) == [a, b]
    assert store.records(tags={"fmgate.run": "r1", "fmgate.role": "judge"}) == [b]
    assert store.records(tags={'odd "key"': "x"}) == [c]


def test_a_later_score_by_the_same_scorer_replaces_the_earlier(store: SqliteStore) -> None:
    rec = record()
    store.write(rec)
    now = datetime.now(UTC)
    store.write_score(fmgate.Score(rec.id, "exact", 0.0, now))
    store.write_score(fmgate.Score(rec.id, "exact", 1.0, now, detail="regraded"))
    store.write_score(fmgate.Score(rec.id, "judge:gpt", None, now, judge_record_id="j1"))
    got = {sc.scorer: sc for sc in store.scores()}
    assert got["exact"].value == 1.0 and got["exact"].detail == "regraded"
    assert got["judge:gpt"].value is None and got["judge:gpt"].judge_record_id == "j1"
    assert store.scores(["nope"]) == []


def test_calls_inside_tagged_carry_the_tags(model: fmgate.Model) -> None:
    with fmgate.tagged(experiment="a"), fmgate.tagged({"fmgate.run": "r"}, experiment="b"):
        inner = model.generate("hi").record
        many = model.generate_many(["x", "y", "z"], concurrency=3)
    outside = model.generate("hi").record
    assert inner.tags == {"experiment": "b", "fmgate.run": "r"}
    assert all(r.record.tags == inner.tags for r in many)
    assert outside.tags == {}
    stored = fmgate.records(tags={"experiment": "b"})
    assert {r.id for r in stored} == {inner.id, *(r.record.id for r in many)}


async def test_tags_follow_async_tasks(model: fmgate.Model) -> None:
    with fmgate.tagged(k="v"):
        rs = await model.agenerate_many(["a", "b"], concurrency=2)
    assert [r.record.tags for r in rs] == [{"k": "v"}] * 2


@pytest.mark.parametrize("bad", [{"": "x"}, {"k": 1}])
def test_tags_must_be_strings(bad: dict[str, object]) -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="tags must map"):
        with fmgate.tagged(bad):  # type: ignore[arg-type]
            pass


def test_the_store_table_in_fmgate_toml_sets_the_default_path(
    model: fmgate.Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "project" / "fmgate.toml"
    conf.parent.mkdir()
    conf.write_text('[store]\npath = "runs/records.sqlite3"\n')
    monkeypatch.delenv("FMGATE_STORE")
    monkeypatch.setenv("FMGATE_CONFIG", str(conf))
    assert default_path() == conf.parent / "runs" / "records.sqlite3"  # relative to the file
    r = model.generate("hi")
    assert [x.id for x in fmgate.records()] == [r.record.id]
    assert raw_count(conf.parent / "runs" / "records.sqlite3") == 1
    monkeypatch.setenv("FMGATE_STORE", str(tmp_path / "env.sqlite3"))  # the variable wins
    assert default_path() == tmp_path / "env.sqlite3"


def test_store_none_in_fmgate_toml_turns_the_store_off(
    model: fmgate.Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "fmgate.toml"
    conf.write_text('[store]\npath = "none"\n')
    monkeypatch.delenv("FMGATE_STORE")
    monkeypatch.setenv("FMGATE_CONFIG", str(conf))
    model.generate("hi")
    assert DEFAULT_STORE.current() is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[store]\npath = 3\n", r"\[store\]: 'path' must be str"),
        ("[store]\nwhere = 'x'\n", r"\[store\]: unknown key 'where'"),
        ("[store]\npath = ''\n", r"\[store\]: 'path' must not be empty"),
        ("store = 'x'\n", r"\[store\] must be a table"),
    ],
)
def test_a_bad_store_table_names_the_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    conf = tmp_path / "fmgate.toml"
    conf.write_text(body)
    with pytest.raises(fmgate.ConfigFileError, match=message) as info:
        fmgate.load("some-alias", config=conf)
    assert str(conf) in str(info.value)


def test_newest_tag_finds_the_latest_value_of_a_tag(store: SqliteStore) -> None:
    assert store.newest_tag("fmgate.run") is None
    store.write(record(tags={"fmgate.run": "r1"}))
    store.write(record(started_at=NOW + timedelta(seconds=1), tags={"fmgate.run": "r2"}))
    store.write(record(started_at=NOW + timedelta(seconds=2)))  # untagged: skipped
    assert store.newest_tag("fmgate.run") == "r2"


def test_a_schema_4_file_gets_the_task_of_each_old_row(tmp_path: Path) -> None:
    # Before schema 5 a record had no task: chat and embed calls are told apart by operation.
    path = tmp_path / "v4.sqlite3"
    db = connect(path)
    try:
        migrate(db, MIGRATIONS[:4])
        for rid, operation in (("c", "chat"), ("e", "embeddings")):
            db.execute(
                "INSERT INTO records (id, started_at, backend, model_id, operation) "
                "VALUES (?, ?, 'b', 'm', ?)",
                (rid, NOW.isoformat(), operation),
            )
    finally:
        db.close()
    s = SqliteStore(path)
    try:
        tasks = {r.id: (r.task, r.usage.items) for r in s.records()}
    finally:
        s.close()
    assert tasks == {"c": ("chat", None), "e": ("embed", None)}


def test_a_classify_record_keeps_its_task_and_items(store: SqliteStore) -> None:
    rec = record(operation="classify", task="classify", usage=Usage(items=100))
    store.write(rec)
    store.flush()
    (back,) = store.records()
    assert back.task == "classify" and back.usage.items == 100
