"""uvicorn's h11 protocol with the connection bounds ``scale serve`` adds."""

from __future__ import annotations

from typing import Any

HEADER_SECONDS = 10.0  # for a new connection's request line and headers
MAX_CONNECTIONS = 64


def guarded_protocol(
    header_seconds: float = HEADER_SECONDS, max_connections: int = MAX_CONNECTIONS
) -> type:
    """uvicorn's h11 protocol, with two bounds it lacks: a connection past
    ``max_connections`` is closed at once, and one that has not sent a whole request line
    and headers within ``header_seconds`` is closed (slowloris)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Guarded(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._header_timer = None
            if len(self.connections) > max_connections:
                transport.close()
                return
            self._header_timer = self.loop.call_later(header_seconds, self._too_slow)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None:
                self._stop_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_timer()
            super().connection_lost(exc)

        def _stop_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

    return Guarded
