"""What uvicorn lacks against slow clients: a deadline for each request's headers and a cap on
open connections.

uvicorn closes a connection left idle between requests (``timeout_keep_alive``) and bounds the
size of a request's headers (h11's 16 KiB), but it waits for those headers for ever: a client
that opens connections and sends a byte now and then (slowloris) keeps every one of them open,
until the process runs out of file descriptors. Here a connection whose next request's headers
are not all in within ``header_timeout_s`` is closed, and connections beyond ``max_connections``
are closed as they open. The body's own deadline is the app's (see ``Server._body``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


def guarded_h11(header_timeout_s: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with those two limits."""

    class Guarded(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.close()
                return
            self._await_request(None)

        def on_response_complete(self) -> None:
            done = self.cycle  # a pipelined request may start a new cycle inside super()
            super().on_response_complete()
            if not self.transport.is_closing():
                self._await_request(done)

        def _await_request(self, cycle: Any) -> None:
            self.loop.call_later(header_timeout_s, self._no_request_by_now, cycle)

        def _no_request_by_now(self, cycle: Any) -> None:
            """No new request has begun since ``cycle``: its headers are late."""
            if self.cycle is cycle and not self.transport.is_closing():
                self.transport.close()

    return Guarded
