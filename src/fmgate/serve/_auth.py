"""Who may call the server: bearer keys, compared in constant time, and where it may listen.

The server listens on loopback unless told otherwise, and refuses any other address without at
least one key: a model reachable from the network by anyone is a bill or a leak waiting to happen.
Keys are never logged or shown; a refused request says only that its key is wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping

from .._errors import ConfigurationError
from ._errors import ApiError

KEYS_ENV = "FMGATE_SERVE_KEYS"


def keys_from_env(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The keys in ``$FMGATE_SERVE_KEYS``: comma-separated, blanks dropped."""
    raw = (environ if environ is not None else os.environ).get(KEYS_ENV, "")
    return tuple(k.strip() for k in raw.split(",") if k.strip())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_bind(host: str, keys: Iterable[str]) -> None:
    """Refuse to listen beyond this machine without a key."""
    if not is_loopback(host) and not any(keys):
        raise ConfigurationError(
            f"fmgate serve refuses to listen on {host} without a key: anyone who can reach it "
            f"could use the model. Set {KEYS_ENV}=key1,key2 (clients send "
            "'Authorization: Bearer key1'), or listen on 127.0.0.1."
        )


class Keys:
    """The accepted bearer keys; none means no check (loopback only, see :func:`check_bind`)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(_digest(k) for k in keys if k)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def check(self, header: str | None) -> None:
        """Raise the 401 answer unless ``header`` is ``Bearer <a key>``."""
        if not self._keys:
            return
        scheme, _, given = (header or "").partition(" ")
        token = _digest(given.strip())
        # Digests of equal length, and every key compared whatever matched: the time taken
        # tells nothing about the keys, not even their length.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(token, key)
        if scheme.lower() != "bearer" or not matched:
            raise ApiError(
                401,
                "Incorrect or missing API key: send 'Authorization: Bearer <key>' with one of "
                "the server's keys.",
                code="invalid_api_key",
                headers={"www-authenticate": "Bearer"},
            )


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
