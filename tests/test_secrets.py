"""A key must never reach a record, a log line, an error message or a printed traceback."""

from __future__ import annotations

import logging
import os
import traceback
from pathlib import Path

import httpx
import pytest
import respx

import fmgate
from fmgate._config import load_config

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


# -- a literal api_key in fmgate.toml ------------------------------------------------------------

LITERAL = "sk-literal-0123456789abcdefLITERAL"
# The file's permissions are what let a literal key in; fmgate refuses one where it cannot check.
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file permissions")


def _key_file(tmp_path: Path, mode: int, *, backend: str = "openai", url: str = "") -> Path:
    base_url = f'base_url = "{url}"\n' if url else ""
    path = tmp_path / "fmgate.toml"
    path.write_text(
        f'[models.keyed]\nbackend = "{backend}"\nmodel = "gpt-4o-mini"\n{base_url}'
        f'api_key = "{LITERAL}"\n',
        encoding="utf-8",
    )
    path.chmod(mode)
    return path


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_a_literal_key_in_a_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = _key_file(tmp_path, mode)
    with pytest.raises(fmgate.ConfigFileError) as info:
        fmgate.load("keyed", config=path)
    message = str(info.value)
    assert str(path) in message and "[models.keyed]" in message
    assert "api_key_env" in message and f"chmod 600 {path}" in message
    assert LITERAL not in message and LITERAL not in "".join(traceback.format_exception(info.value))


@posix_only
def test_a_literal_key_in_a_private_file_reaches_the_backend_and_nothing_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from fmgate.testing import stub_server

    caplog.set_level(logging.DEBUG)
    with stub_server() as url:  # OPENAI_API_KEY is unset: only the file's key can satisfy load()
        path = _key_file(tmp_path, 0o600, url=f"{url}/v1")
        model = fmgate.load("keyed", config=path)
        response = model.generate("hi")
        streamed = model.stream("hi").collect()
        config = load_config(path)
    assert response.record.outcome.status == "ok" and streamed.record.outcome.status == "ok"
    assert model.backend.config.api_key is not None
    assert model.backend.config.api_key.reveal() == LITERAL
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "fmgate"]
    assert len(warnings) == 1  # once per file, though the file was read twice
    assert str(path) in warnings[0].getMessage() and "[models.keyed]" in warnings[0].getMessage()
    for text in (
        repr(config),
        repr(config.models["keyed"]),
        repr(model.backend.config),
        repr(model),
        str(response.record.to_dict()),
        str(streamed.record.to_dict()),
        caplog.text,
    ):
        assert LITERAL not in text


@posix_only
def test_the_literal_key_is_the_one_sent(tmp_path: Path, httpx2_mock: respx.Router) -> None:
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    route = httpx2_mock.post(CHAT_URL).mock(return_value=httpx.Response(200, json=body))
    fmgate.load("keyed", config=_key_file(tmp_path, 0o600)).generate("hi")
    assert route.calls.last.request.headers["authorization"] == f"Bearer {LITERAL}"


@posix_only
def test_anthropic_takes_the_literal_key_too(tmp_path: Path) -> None:
    from fmgate.testing import stub_server

    with stub_server() as url:  # ANTHROPIC_API_KEY is unset
        path = _key_file(tmp_path, 0o600, backend="anthropic", url=url)
        response = fmgate.load("keyed", config=path).generate("hi", max_tokens=8)
    assert response.record.outcome.status == "ok" and response.record.access.requires_api_key


@posix_only
def test_api_key_env_given_to_load_beats_the_literal_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _key_file(tmp_path, 0o600)
    with pytest.raises(fmgate.MissingAPIKeyError, match="OTHER_KEY"):
        fmgate.load("keyed", config=path, api_key_env="OTHER_KEY")
    monkeypatch.setenv("OTHER_KEY", CANARY)
    model = fmgate.load("keyed", config=path, api_key_env="OTHER_KEY")
    assert model.backend.config.api_key is None


@posix_only
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("api_key = 3", "'api_key' must be a non-empty str"),
        ('api_key = "  "', "'api_key' must be a non-empty str"),
        (f'api_key = "{LITERAL}"\napi_key_env = "X"', "not both"),
    ],
)
def test_bad_literal_keys(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "k.toml"
    path.write_text(f'[models.k]\nbackend = "openai"\nmodel = "m"\n{line}\n', encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(fmgate.ConfigFileError, match=expected) as info:
        fmgate.load("k", config=path)
    assert LITERAL not in str(info.value) and str(path) in str(info.value)


def test_load_takes_no_api_key() -> None:
    with pytest.raises(fmgate.InvalidRequestError, match="takes no api_key.*api_key_env") as info:
        fmgate.load("openai:gpt-4o-mini", api_key=LITERAL)
    assert LITERAL not in str(info.value)
