"""The missing-extra message: right for an installed package and for a checkout."""

from __future__ import annotations

import pytest

import fmgate
from fmgate import _registry
from fmgate._extras import install_hint, missing_extra


def test_the_hint_names_the_published_and_the_checkout_command() -> None:
    hint = install_hint("anthropic")
    assert 'pip install "fmgate[anthropic]"' in hint
    assert 'pip install -e ".[anthropic]"' in hint
    assert "torch" not in hint


@pytest.mark.parametrize("extra", ["local", "demo"])
def test_extras_that_bring_torch_say_to_install_torch_first(extra: str) -> None:
    hint = install_hint(extra)
    assert hint.index("install torch first") < hint.index(f'"fmgate[{extra}]"')
    assert "download.pytorch.org/whl/cpu" in hint


def test_the_error_names_what_needs_which_module_and_the_extra() -> None:
    error = missing_extra("fmgate serve", "serve", "uvicorn")
    assert isinstance(error, fmgate.MissingExtraError) and error.extra == "serve"
    assert str(error).startswith("fmgate serve needs uvicorn, which is not installed: pip install")


def test_a_backend_whose_sdk_is_missing_gets_the_shared_message() -> None:
    with pytest.raises(fmgate.MissingExtraError) as caught:
        _registry._import("fmgate_no_such_sdk:Backend", extra="local")
    message = str(caught.value)
    assert message.startswith("The fmgate_no_such_sdk backend needs fmgate_no_such_sdk, which")
    assert 'pip install -e ".[local]"' in message and "install torch first" in message
