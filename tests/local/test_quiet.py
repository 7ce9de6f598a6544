"""transformers' and the Hub's own output stays out of fmgate's: no progress bars while a model
loads, no warnings in a server's log; the user's settings for those libraries are put back."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TinyFactory

pytest.importorskip("transformers")


def test_loading_and_an_overlong_prompt_print_nothing(tiny: TinyFactory) -> None:
    code = (
        "import fmgate\n"
        f"m = fmgate.load('transformers:{tiny('llama')}')\n"
        "try:\n"
        "    m.generate('hi ' * 3000, max_tokens=2)\n"
        "except fmgate.ContextLengthError:\n"
        "    print('refused')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout == "refused\n", done.stderr
    assert "Loading weights" not in done.stderr and "%|" not in done.stderr
    assert "Token indices sequence length" not in done.stderr
    assert done.stderr == ""


def test_the_users_settings_are_back_after_a_load(tiny: TinyFactory) -> None:
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    import fmgate

    def state() -> tuple[object, ...]:
        handlers = tuple(logging.getLogger("transformers").handlers)
        bars = (hf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled())
        return handlers, *bars

    before = state()
    fmgate.load(f"transformers:{tiny('gpt2')}").close()
    assert state() == before


def test_transformers_warnings_during_a_load_go_to_the_debug_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from transformers.utils import logging as hf_logging

    from fmgate._local.loading import QUIET

    caplog.set_level(logging.DEBUG, logger="fmgate")
    with QUIET:
        hf_logging.get_logger("transformers.modeling_utils").warning("something odd")
    assert ("fmgate", logging.DEBUG, "transformers: something odd") in caplog.record_tuples


def test_a_forced_off_hub_setting_stays_off_without_a_warning(
    tiny: TinyFactory, tmp_path: Path
) -> None:
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "from huggingface_hub import utils as hub_utils\n"
        "import fmgate\n"
        f"fmgate.load('transformers:{tiny('llama')}').close()\n"
        "print(hub_utils.are_progress_bars_disabled())\n"
    )
    env = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.stdout == "True\n", done.stderr
