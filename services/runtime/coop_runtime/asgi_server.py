"""Running an ASGI app (the FastStream app and its HTTP routes) under uvicorn."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import uvicorn

__all__ = ["serve_asgi"]


class _GracefulServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM after a graceful shutdown (exit status -15); a service that
    finished its work and stopped cleanly should exit 0, so the signal is not re-raised."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if sig in (signal.SIGTERM, signal.SIGINT):
            self._captured_signals.clear()


async def serve_asgi(app: Any, host: str, port: int, graceful_timeout_s: float, log_level: str) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then shut down gracefully."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=int(graceful_timeout_s),
        lifespan="on",
    )
    await _GracefulServer(config).serve()
