"""API keys held so that they cannot be printed by accident, and redaction of text."""

from __future__ import annotations

import os
import re
import threading

from ._errors import MissingAPIKeyError

_KNOWN: set[str] = set()
_LONGEST_FIRST: tuple[str, ...] = ()  # _KNOWN sorted for redact(), which runs on every record
_LOCK = threading.Lock()
# Shapes of common provider keys, masked even when fmgate did not load them itself.
_KEY_PATTERNS = re.compile(
    r"(sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{16,}|hf_[A-Za-z0-9]{16,}|gsk_[A-Za-z0-9]{16,}"
    r"|AIza[A-Za-z0-9_\-]{20,}|Bearer\s+[A-Za-z0-9._\-]{8,})"
)
MASK = "***"


class Secret:
    """A key whose repr and str are masked; ``reveal()`` is the one way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= 4:
            global _LONGEST_FIRST
            with _LOCK:
                _KNOWN.add(value)
                _LONGEST_FIRST = tuple(sorted(_KNOWN, key=len, reverse=True))

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("A Secret cannot be pickled.")


def key_from_env(env_var: str, *, required: bool, backend: str) -> Secret | None:
    """Read a key from ``env_var``; a missing required key names the variable to set."""
    value = os.environ.get(env_var, "").strip()
    if value:
        return Secret(value)
    if required:
        raise MissingAPIKeyError(
            f"The {backend} backend needs an API key: set the environment variable {env_var} "
            f"(or name another one with api_key_env in fmgate.toml).",
            env_var=env_var,
        )
    return None


def redact(text: str) -> str:
    """Mask every key fmgate has loaded, and anything shaped like a provider key."""
    for value in _LONGEST_FIRST:  # a tuple, swapped whole: no lock needed to read it
        if value in text:
            text = text.replace(value, MASK)
    return _KEY_PATTERNS.sub(MASK, text)


def scrub(error: BaseException) -> None:
    """Redact the messages of ``error`` and of every exception chained to it, in place.

    A server may echo a key in an error body, and the SDK's exception that fmgate chains as the
    cause would print it in a traceback.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.args = tuple(redact(a) if isinstance(a, str) else a for a in current.args)
        message = getattr(current, "message", None)
        if isinstance(message, str):
            try:
                current.message = redact(message)  # type: ignore[attr-defined]
            except AttributeError:
                pass
        current = current.__cause__ or current.__context__


def redact_url(url: str) -> str:
    """``url`` as a message may show it: credentials (``user:key@``) and the query masked."""
    url = re.sub(r"(?<=//)[^/@?#]*@", f"{MASK}@", url)
    url = re.sub(r"\?[^#]*", f"?{MASK}", url, count=1)
    return redact(url)
