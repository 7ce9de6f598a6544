"""One value SQLite cannot store costs no other record (issue: a lone surrogate or a count past
2^63 used to drop every record committed in the same batch)."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fmgate import CallRecord, SqliteStore, Usage
from fmgate._record import Outcome


def good() -> CallRecord:
    return CallRecord(id=uuid.uuid4().hex, started_at=datetime.now(UTC), backend="b", model_id="m")


def poison(kind: str) -> CallRecord:
    """A record built past fmgate's edge (a custom backend or sink could): not storable as is."""
    r = good()
    if kind == "surrogate_model":
        return CallRecord(id=r.id, started_at=r.started_at, backend="b", model_id="m\ud800")
    if kind == "huge_count":
        return CallRecord(**{**_fields(r), "usage": Usage(2**64, 1)})
    if kind == "surrogate_error":
        return CallRecord(**{**_fields(r), "outcome": Outcome("error", error_message="x\udfff")})
    if kind == "surrogate_param":
        return CallRecord(**{**_fields(r), "params": {"stop": "\ud800"}})
    raise AssertionError(kind)


def _fields(r: CallRecord) -> dict[str, object]:
    return {"id": r.id, "started_at": r.started_at, "backend": r.backend, "model_id": r.model_id}


KINDS = ["surrogate_model", "huge_count", "surrogate_error", "surrogate_param"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_poison_record_costs_no_other_record_and_is_kept_flagged(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(tmp_path / "p.db", linger_s=0.2)  # all in one batch
    before, after = [good() for _ in range(25)], [good() for _ in range(25)]
    bad = poison(kind)
    with caplog.at_level(logging.WARNING, logger="fmgate"):
        for r in (*before, bad, *after):
            store.write(r)
        stored = {r.id: r for r in store.records()}
    assert all(r.id in stored for r in (*before, *after))
    kept = stored[bad.id]
    assert kept.tags["fmgate.sanitized"]  # which columns were replaced
    assert "replaced" in caplog.text
    if kind == "huge_count":
        assert kept.usage.input_tokens is None and kept.usage.output_tokens == 1
    if kind == "surrogate_model":
        assert kept.model_id == "m\ufffd"
    store.close()


def test_a_failing_file_logs_one_traceback_then_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk or a lost table fails every batch: the log must not fill with tracebacks."""
    store = SqliteStore(tmp_path / "p.db")
    store.write(good())
    store.flush()
    db = sqlite3.connect(store.path, isolation_level=None)
    db.execute("ALTER TABLE records RENAME TO hidden")
    try:
        for _ in range(3):
            store.write(good())
            store.flush()
    finally:
        db.execute("ALTER TABLE hidden RENAME TO records")
        db.close()
    failures = [r for r in caplog.records if "failed to store" in r.getMessage()]
    assert len(failures) == 3
    assert [r.exc_info is not None for r in failures] == [True, False, False]
    assert "failure 3" in failures[-1].getMessage()
    store.close()


SHARED = """
import sys, uuid
from datetime import UTC, datetime
from fmgate import CallRecord, SqliteStore, Usage
store = SqliteStore(sys.argv[1], batch_size=int(sys.argv[3]))
n, poison_every = int(sys.argv[2]), 50
for i in range(n):
    model = "m\\ud800" if i % poison_every == 0 else "m"
    usage = Usage(2**64 if i % poison_every == 1 else 1, 1)
    store.write(CallRecord(id=uuid.uuid4().hex, started_at=datetime.now(UTC), backend="b",
                           model_id=model, usage=usage, tags={"good": str(i % poison_every > 1)}))
store.close()
"""


def test_four_processes_with_poison_mixed_in_lose_no_record(tmp_path: Path) -> None:
    path, script = tmp_path / "shared.db", tmp_path / "writer.py"
    script.write_text(SHARED)
    n = 500
    procs = [
        subprocess.Popen([sys.executable, str(script), str(path), str(n), "200"]) for _ in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    store = SqliteStore(path)
    records = store.records()
    assert len(records) == 4 * n  # every record, poisoned ones included (replaced, flagged)
    flagged = [r for r in records if "fmgate.sanitized" in r.tags]
    assert len(flagged) == 4 * 2 * (n // 50)
    assert all(r.tags["good"] == "False" for r in flagged)
