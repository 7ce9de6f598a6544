"""A key must never reach a record, a log line, an error message or a printed traceback."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import httpx
import pytest
import respx

import fmgate

CANARY = "sk-canary-0123456789abcdefXYZ"
CHAT_URL = "https://api.openai.com/v1/chat/completions"


def test_secret_repr_is_masked() -> None:
    secret = fmgate.Secret(CANARY)
    assert CANARY not in repr(secret) and CANARY not in str(secret)
    assert secret.reveal() == CANARY


def test_a_key_echoed_by_the_server_leaks_nowhere(
    httpx2_mock: respx.Router,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    caplog.set_level(logging.DEBUG)
    body = {
        "error": {
            "message": f"Incorrect API key provided: {CANARY}",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    httpx2_mock.post(CHAT_URL).mock(return_value=httpx.Response(401, json=body))
    jsonl = fmgate.JsonlSink(tmp_path / "calls.jsonl")
    m = fmgate.load("openai:gpt-4o-mini", sinks=[jsonl])
    with pytest.raises(fmgate.AuthenticationError) as info:
        m.generate("hi", openai_user=CANARY)
    jsonl.close()
    error = info.value
    # the SDK's exception stays chained as the cause, redacted
    assert error.__cause__ is not None and error.__cause__ is not error
    printed = "".join(traceback.format_exception(error))
    outputs = [
        printed,
        str(error),
        repr(m),
        repr(m.backend),
        caplog.text,
        (tmp_path / "calls.jsonl").read_text(),
        str(fmgate.recent()[-1].to_dict()),
    ]
    for text in outputs:
        assert CANARY not in text
    assert "openai" in printed and "AuthenticationError" in printed
