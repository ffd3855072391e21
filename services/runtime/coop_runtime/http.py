"""HTTP pieces both services serve the same way: JSON responses and the operations routes
(``/metrics``, ``/healthz``, ``/readyz``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from faststream.asgi import AsgiResponse, get
from faststream.asgi.types import ASGIApp, Scope
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["json_response", "operations_routes"]


def json_response(body: Any, status: int = 200) -> AsgiResponse:
    return AsgiResponse(
        orjson.dumps(body, option=orjson.OPT_INDENT_2),
        status_code=status,
        headers={"Content-Type": "application/json"},
    )


def operations_routes(
    registry: CollectorRegistry, readiness: Callable[[], Awaitable[tuple[bool, str]]]
) -> list[tuple[str, ASGIApp]]:
    """``/metrics`` (Prometheus text format from ``registry``), ``/healthz`` (the process is
    up) and ``/readyz`` (200 or 503 with the reason ``readiness`` gives)."""

    @get
    async def metrics(scope: Scope) -> AsgiResponse:
        return AsgiResponse(
            generate_latest(registry), status_code=200, headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    @get
    async def healthz(scope: Scope) -> AsgiResponse:
        return json_response({"status": "up"})

    @get
    async def readyz(scope: Scope) -> AsgiResponse:
        ok, reason = await readiness()
        return json_response({"ready": ok, "reason": reason}, 200 if ok else 503)

    return [("/metrics", metrics), ("/healthz", healthz), ("/readyz", readyz)]
