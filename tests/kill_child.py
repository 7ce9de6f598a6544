"""The child of ``test_store_kill``: writes numbered records to a store until it is killed.

``main([path, every, batch_size])`` writes ``record(0)``, ``record(1)``, ... and after every
``every`` records flushes the store and prints how many are committed, one number a line.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fmgate import Access, CallRecord, Cost, Environment, Latency, Outcome, SqliteStore, Usage

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def record(i: int) -> CallRecord:
    """Record number ``i``: the same every time, with most fields set and some varying by ``i``."""
    failed = i % 7 == 3
    return CallRecord(
        id=f"rec-{i:08d}",
        started_at=START + timedelta(microseconds=1_001 * i),
        backend="openai",
        model_id="gpt-4o-mini-2024-07-18",
        alias="assistant" if i % 2 else None,
        provider="openai",
        operation="chat",
        distribution="api",
        endpoint="127.0.0.1:8000",
        params={"max_tokens": 5 + i % 3, "stop": ["\n", "."], "nested": {"i": i, "none": None}},
        stream=bool(i % 3),
        tags={"run": "kill", "item": str(i)},
        usage=Usage(10 + i, 20, 3, None, 5, "provider"),
        latency=Latency(total_s=0.25 + i / 1024, ttft_s=0.125, decode_tokens_per_s=80.5),
        cost=Cost(Decimal(f"0.000001234567890123456{i % 10}"), "list_price", "USD", "snap"),
        access=Access(open_weights=False, context_window=128_000, data_leaves_machine=True),
        outcome=Outcome(
            status="error" if failed else "ok",
            finish_reason=None if failed else "stop",
            error_type="ServerError" if failed else None,
            error_message=f"openai: boom #{i} ✗" if failed else None,
            http_status=500 if failed else None,
        ),
        environment=Environment("0.1.0", "openai 3.57.0", "3.11.7"),
    )


def main(argv: list[str]) -> None:
    path, every, batch_size = argv[0], int(argv[1]), int(argv[2])
    store = SqliteStore(path, batch_size=batch_size)
    i = 0
    while True:
        store.write(record(i))
        i += 1
        if i % every == 0:
            store.flush()
            sys.stdout.write(f"{i}\n")
            sys.stdout.flush()
