"""Put on PYTHONPATH of a CLI subprocess: any connection beyond loopback fails, as in-process."""

import ipaddress
import socket

_connect = socket.socket.connect


def _loopback(address):  # type: ignore[no-untyped-def]
    if isinstance(address, str | bytes):
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded(self, address):  # type: ignore[no-untyped-def]
    if not _loopback(address):
        raise OSError(f"network guard: {address!r} is not loopback")
    return _connect(self, address)


socket.socket.connect = _guarded  # type: ignore[method-assign]
