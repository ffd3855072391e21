"""An ASGI guard in front of the services' HTTP side: only GET and HEAD, no request bodies
above a small limit, bounded query strings, and a JSON 404 for paths no route serves.
Everything it refuses is refused before any route runs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

__all__ = ["MAX_BODY_BYTES", "MAX_QUERY_BYTES", "HttpGuard"]

MAX_BODY_BYTES = 64 * 1024
MAX_QUERY_BYTES = 4096
ALLOWED_METHODS = frozenset({"GET", "HEAD"})


class HttpGuard:
    """Wraps ``app``; ``paths`` are the paths its routes serve (others get 404);
    ``prefixes`` maps a path prefix (ending with ``/``) to the ASGI app serving it."""

    def __init__(
        self, app: Any, paths: Iterable[str] | None = None, prefixes: Mapping[str, Any] | None = None
    ) -> None:
        self.app = app
        self.paths = frozenset(paths) if paths is not None else None
        self.prefixes = dict(prefixes or {})
        assert all(prefix.endswith("/") for prefix in self.prefixes), self.prefixes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ALLOWED_METHODS:
            await _refuse(send, 405, "method not allowed: only GET and HEAD", [(b"allow", b"GET, HEAD")])
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            await _refuse(send, 413, "request body too large")
            return
        if len(scope.get("query_string", b"")) > MAX_QUERY_BYTES:
            await _refuse(send, 414, "query string too long")
            return
        path = str(scope.get("path", ""))
        for prefix, handler in self.prefixes.items():
            if path.startswith(prefix):
                await handler(scope, receive, send)
                return
        if self.paths is not None and path not in self.paths:
            await _refuse(send, 404, "no such path", reason="not_found")
            return
        await self.app(scope, receive, send)


async def _refuse(
    send: Any,
    status: int,
    message: str,
    extra: list[tuple[bytes, bytes]] | None = None,
    reason: str = "refused",
) -> None:
    body = orjson.dumps({"error": {"reason": reason, "message": message}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})
