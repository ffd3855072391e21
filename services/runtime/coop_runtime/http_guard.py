"""An ASGI guard in front of the services' HTTP side: only GET and HEAD, no request bodies
above a small limit, bounded query strings. Everything else is refused before any route."""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_BODY_BYTES", "MAX_QUERY_BYTES", "HttpGuard"]

MAX_BODY_BYTES = 64 * 1024
MAX_QUERY_BYTES = 4096
ALLOWED_METHODS = frozenset({"GET", "HEAD"})


class HttpGuard:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ALLOWED_METHODS:
            await _refuse(send, 405, b"method not allowed: only GET and HEAD", [(b"allow", b"GET, HEAD")])
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            await _refuse(send, 413, b"request body too large")
            return
        if len(scope.get("query_string", b"")) > MAX_QUERY_BYTES:
            await _refuse(send, 414, b"query string too long")
            return
        await self.app(scope, receive, send)


async def _refuse(
    send: Any, status: int, message: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = b'{"error": {"reason": "refused", "message": "' + message + b'"}}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})
