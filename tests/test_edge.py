"""What a caller hands fmgate that no model or store could carry is refused before sending, with a
typed error, and recorded as a call that sent nothing."""

from __future__ import annotations

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
