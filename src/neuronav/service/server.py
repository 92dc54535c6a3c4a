"""How the HTTP server holds connections: the options :func:`~neuronav.service.app.create_app` leaves in
``app.state.uvicorn_options`` for ``neuronav serve`` (or any launcher that runs uvicorn itself).

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but it waits for ever for
the rest of a request whose headers a client started and never finished: a few hundred such
half-open connections ("slowloris") hold the server's sockets as long as the attacker likes. The
protocol of :func:`guarded_h11` closes a connection whose request headers have not all arrived within
``header_timeout_s`` of the connection, or of the previous response on it. A request body that stops
arriving is the app's to refuse (408, :class:`~neuronav.service.app.BodySizeMiddleware`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from neuronav.config import Settings

MAX_CONNECTIONS = 1000  # beyond this uvicorn answers 503 instead of holding more sockets


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for a request's headers (module docstring)."""

    header_timeout_s: float = 15.0
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_overdue)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_overdue(self) -> None:
        self._header_deadline = None
        between_requests = self.cycle is None or self.cycle.response_complete
        if between_requests and not self.transport.is_closing():
            with contextlib.suppress(h11.LocalProtocolError):  # the client's half was already broken
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()


def guarded_h11(header_timeout_s: float) -> type[GuardedH11Protocol]:
    """:class:`GuardedH11Protocol` with this deadline for a request's headers."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": header_timeout_s})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` besides the app, host and port."""
    return {
        "http": guarded_h11(settings.read_timeout_s),
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": MAX_CONNECTIONS,
    }


__all__ = ["MAX_CONNECTIONS", "GuardedH11Protocol", "guarded_h11", "uvicorn_options"]
