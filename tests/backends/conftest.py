"""The backend tests check how one response maps to one result or error, so their models make
one try: retries are tested in tests/test_reliability.py and the fault-injection suite."""

from __future__ import annotations

import pytest

from fmgate import _model
from fmgate._retry import NO_RETRIES


@pytest.fixture(autouse=True)
def one_try(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_model, "RetryPolicy", lambda: NO_RETRIES)
