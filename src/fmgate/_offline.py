"""Offline mode: ``FMGATE_OFFLINE=1`` refuses, before sending, every call that would leave the
machine, and keeps local models off the Hugging Face Hub (as ``HF_HUB_OFFLINE=1`` does)."""

from __future__ import annotations

import os

OFFLINE_ENV = "FMGATE_OFFLINE"
_TRUE = frozenset({"1", "true", "yes", "on"})


def offline() -> bool:
    """Read now, not at import: a test or a notebook may set it at any time."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE
