"""The record's edge: what a server or a caller hands fmgate is made safe to keep.

A string a server returns (a model id, a finish reason, an error message) may echo a key, or hold
a lone surrogate that no UTF-8 file or SQLite column can store; a token count may be negative or
beyond any real call. Before such a value enters a record it is redacted, its lone surrogates
become U+FFFD, and an impossible count becomes ``None`` (unknown, never priced); the names of the
fields changed are kept in the record's ``fmgate.sanitized`` tag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ._record import Usage
from ._secrets import redact
from ._types import lone_surrogate

SANITIZED_TAG = "fmgate.sanitized"
MAX_TOKENS_PER_CALL = 10**9
"""A count above this is no real call's (no model reads a billion tokens at once)."""


def storable(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (valid pairs are joined)."""
    if lone_surrogate(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_text(text: str | None, field: str, changed: list[str]) -> str | None:
    """A server-provided string as a record may keep it: storable, with every key masked."""
    if text is None:
        return None
    fixed = storable(text)
    if fixed is not text:
        changed.append(field)
    return redact(fixed)


def clean_value(value: Any, field: str, changed: list[str]) -> Any:
    """A parameter or tag value, at any depth: strings redacted and made storable."""
    if isinstance(value, str):
        return clean_text(value, field, changed)
    if isinstance(value, Mapping):
        return {
            clean_text(str(k), field, changed): clean_value(v, field, changed)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [clean_value(v, field, changed) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
        changed.append(field)
        return str(value)
    return value


_COUNTS = tuple(
    f.name
    for f in dataclasses.fields(Usage)
    if f.name.endswith(("_tokens", "items", "_in", "_out")) and not f.name.startswith("pixels")
)  # pixels are counted by fmgate, not reported by a server


def clean_usage(usage: Usage, changed: list[str]) -> Usage:
    """``usage`` with each impossible count (negative, or above any real call) set to unknown."""
    bad = {
        name: None
        for name in _COUNTS
        if (n := getattr(usage, name)) is not None and not 0 <= n <= MAX_TOKENS_PER_CALL
    }
    if not bad:
        return usage
    changed.extend(f"usage_{name}" for name in bad)
    return dataclasses.replace(usage, **bad)
