"""What a caller hands fmgate that no model or store could carry is refused before sending, with a
typed error, and recorded as a call that sent nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import fmgate
from fmgate._model import Model
from tests.fakes import FakeBackend, fake_config


def model() -> Model:
    return Model(FakeBackend(fake_config()))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prompt", "params", "where"),
    [
        ("hi \ud800", {}, "The prompt"),
        ([{"role": "user", "content": "\udfff"}], {}, "Message 0 content"),
        ("hi", {"system": "\ud800"}, "The system prompt"),
        ("hi", {"stop": "\ud800"}, "A stop string"),
        ("hi", {"stop": ["ok", "x\udc00"]}, "A stop string"),
    ],
)
def test_a_lone_surrogate_is_refused_before_sending(
    prompt: Any, params: dict[str, Any], where: str, memory: fmgate.MemorySink
) -> None:
    m = model()
    with pytest.raises(fmgate.InvalidRequestError, match=f"{where} holds a lone surrogate"):
        m.generate(prompt, **params)
    assert memory.records[-1].outcome.sent is False
    assert memory.records[-1].outcome.error_type == "InvalidRequestError"


def test_a_valid_surrogate_pair_is_text_like_any_other() -> None:
    assert model().generate("smile \U0001f600").text == "SMILE \U0001f600"


def test_a_lone_surrogate_in_a_backend_parameter_is_recorded_replaced() -> None:
    record = model().generate("hi", fake_note="x\ud800").record
    assert record.params["note"] == "x\ufffd"
    assert record.tags["fmgate.sanitized"] == "params.note"


def test_generate_many_refuses_one_str() -> None:
    for call in (lambda m: m.generate_many("abc"), lambda m: asyncio.run(m.agenerate_many("abc"))):
        with pytest.raises(fmgate.InvalidRequestError, match="not one str"):
            call(model())


def test_credentials_in_a_bad_base_url_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for url in ("ftp://user:hunter2secret@host/v1", "ftp://host/v1?api_key=hunter2secret"):
        with pytest.raises(fmgate.ConfigurationError, match="base_url") as info:
            fmgate.load("openai:gpt-4o-mini", base_url=url)
        assert "hunter2secret" not in str(info.value)


def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    from fmgate._config import load_config

    path = tmp_path / "fmgate.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'[models.a]\nbackend = "openai"\nmodel = "gpt-4o-mini"\n')
    assert list(load_config(path).models) == ["a"]


def test_a_damaged_store_is_a_typed_error_that_names_the_file(tmp_path: Path) -> None:
    store = fmgate.SqliteStore(tmp_path / "s.db")
    store.close()
    with (tmp_path / "s.db").open("r+b") as f:  # keep the header, garble the pages after it
        f.seek(100)
        f.write(b"\x07" * 8000)
    with pytest.raises(fmgate.StoreError, match="record store") as info:
        fmgate.records(store=tmp_path / "s.db")
    assert str(tmp_path / "s.db") in str(info.value)
