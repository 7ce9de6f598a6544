"""SIGKILL in the middle of a run: the store opens cleanly and keeps every committed record.

A child process writes numbered records to a ``SqliteStore`` without end, flushing every few
hundred and printing how many are committed; the test kills it with SIGKILL (no ``atexit``, no
close, the WAL left as it was) and then opens the file as a user would.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fmgate import CallRecord, SqliteStore
from tests.kill_child import record

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")

ROOT = Path(__file__).resolve().parents[1]
CHILD = "import sys; from tests.kill_child import main; main(sys.argv[1:])"
EVERY = 300  # records between flushes
TIMEOUT_S = 30


def run_until_killed(path: Path, *, flushes: int, after_s: float, batch_size: int) -> int:
    """Start the child, kill it ``after_s`` after its ``flushes``-th report; the last count."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(EVERY), str(batch_size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    watchdog = threading.Timer(TIMEOUT_S, proc.kill)  # a child that hangs fails the test
    watchdog.start()
    try:
        counts = read_counts(proc, flushes)
        time.sleep(after_s)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err
    assert counts == [EVERY * (n + 1) for n in range(flushes)], err
    return counts[-1]


def read_counts(proc: subprocess.Popen[str], flushes: int) -> list[int]:
    assert proc.stdout is not None
    counts: list[int] = []
    while len(counts) < flushes:
        line = proc.stdout.readline()
        if not line:
            break  # the child died (or the watchdog killed it): the caller's assert says so
        counts.append(int(line))
    return counts


def raw(path: Path, query: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


@pytest.mark.parametrize(
    ("flushes", "after_s", "batch_size"),
    [
        (2, 0.0, 1000),  # at once: the child is writing its next records
        (4, 0.002, 7),  # the writer commits many small batches between flushes
        (8, 0.03, 1000),  # later, with many records queued or committing
    ],
)
def test_a_killed_writer_loses_nothing_committed(
    tmp_path: Path, flushes: int, after_s: float, batch_size: int
) -> None:
    path = tmp_path / "kill.sqlite3"
    committed = run_until_killed(path, flushes=flushes, after_s=after_s, batch_size=batch_size)
    assert Path(f"{path}-wal").stat().st_size > 0  # killed, not closed: the WAL holds the rows

    store = SqliteStore(path)  # opens, and migrates, without complaint
    try:
        assert raw(path, "PRAGMA integrity_check") == [("ok",)]
        ids = [row[0] for row in raw(path, "SELECT id FROM records ORDER BY id")]
        assert len(ids) == len(set(ids)) >= committed
        # Commits land in the order of writing: what is stored is a prefix of what was written.
        assert ids == [record(i).id for i in range(len(ids))]
        assert store.records() == [record(i) for i in range(len(ids))]

        store.write(record(len(ids)))  # and the store goes on as before
        assert store.count() == len(ids) + 1
    finally:
        store.close()


def test_the_child_s_records_round_trip() -> None:
    """The comparison above is meaningful: each record survives to_dict/from_dict exactly."""
    for i in (0, 1, 3, 10):
        assert CallRecord.from_dict(record(i).to_dict()) == record(i)
