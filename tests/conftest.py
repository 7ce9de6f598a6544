"""Test-wide fixtures: no network beyond loopback, no real keys, no stray records."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import fmgate
from fmgate import _recording
from fmgate._store import DEFAULT_STORE

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _is_loopback(address: Any) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX path
        return True
    return _is_loopback_host(address[0])


def _is_loopback_host(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NetworkBlocked(RuntimeError):
    pass


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise NetworkBlocked(f"test tried to connect to {address!r}: only loopback is allowed")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise NetworkBlocked(f"test tried to connect to {address!r}: only loopback is allowed")
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if host is not None and not _is_loopback_host(host):
        raise NetworkBlocked(f"test tried to resolve {host!r}: only loopback is allowed")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    """No key or config from the developer's machine leaks into a test, and no record into
    the user's store: each test's records go to a store of its own, closed after the test."""
    import os

    for name in list(os.environ):
        if name.endswith(("_API_KEY", "_TOKEN")) or name.startswith("FMGATE_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("FMGATE_STORE", str(tmp_path / "store" / "records.sqlite3"))
    # converted GGUF models and assembled packages go to the test's folder, not the user's cache
    monkeypatch.setenv("FMGATE_CACHE_DIR", str(tmp_path / "cache"))
    yield
    DEFAULT_STORE.reset()


@pytest.fixture
def memory() -> Iterator[fmgate.MemorySink]:
    """A sink that holds exactly the records of one test."""
    sink = fmgate.MemorySink()
    fmgate.add_sink(sink)
    try:
        yield sink
    finally:
        fmgate.remove_sink(sink)


@pytest.fixture(autouse=True)
def _reset_memory() -> None:
    _recording._MEMORY.clear()
