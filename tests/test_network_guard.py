import socket

import pytest

from tests.conftest import NetworkBlocked


def test_non_loopback_connections_are_refused() -> None:
    with socket.socket() as s, pytest.raises(NetworkBlocked):
        s.connect(("93.184.216.34", 80))


def test_name_resolution_outside_loopback_is_refused() -> None:
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("api.openai.com", 443)
