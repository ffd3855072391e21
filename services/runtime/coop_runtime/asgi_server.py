"""Running an ASGI app (the FastStream app and its HTTP routes) under uvicorn, with a
bound on the time a client may take to send its request headers (slow clients that send
headers a byte at a time are cut off) and a clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from types import FrameType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["DEFAULT_HEADER_TIMEOUT_S", "serve_asgi"]

DEFAULT_HEADER_TIMEOUT_S = 10.0


class _GracefulServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM after a graceful shutdown (exit status -15); a service that
    finished its work and stopped cleanly should exit 0, so the signal is not re-raised."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if sig in (signal.SIGTERM, signal.SIGINT):
            self._captured_signals.clear()


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete
    ``header_timeout_s`` after the connection opened or the request began (uvicorn itself
    only times out idle keep-alive connections)."""

    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self._header_timer is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


async def serve_asgi(
    app: Any,
    host: str,
    port: int,
    graceful_timeout_s: float,
    log_level: str,
    *,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then shut down gracefully."""
    assert 0 < header_timeout_s <= 300, header_timeout_s
    protocol = type("BoundedHeaderProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": header_timeout_s})
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=int(graceful_timeout_s),
        lifespan="on",
        http=protocol,
        log_config=None,
    )
    await _GracefulServer(config).serve()
