"""The read side of ``ledger serve``: report queries over HTTP and NATS request/reply.

Reads never block writes: they run on their own worker thread(s), from a consistent
snapshot of the ledger (:class:`~ledger.application.ledger.Head`), never on the store's
thread. At most ``max_concurrent`` queries are admitted (running or waiting); beyond that
HTTP answers 429 and NATS a ``busy`` error. Identical queries at the same log position
share one computation (and the last answer is kept), so a burst of the same report costs
one report. A NATS answer larger than the connection's max payload is never sent: the
caller gets a ``too_large`` error naming the limit and the HTTP route instead of a timeout.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

import orjson
import structlog
from faststream.asgi import AsgiResponse, get
from faststream.asgi.types import ASGIApp, Scope
from pydantic import SecretStr

from coop_runtime.http import json_response
from coop_runtime.http_guard import MAX_QUERY_BYTES
from ledger.adapters.metrics import LedgerMetrics
from ledger.application.ledger import Ledger
from ledger.application.queries import QueryError, ReportQuery, View, answer

__all__ = ["BusyError", "QueryService", "http_routes", "nats_answer", "query_params"]

log = structlog.get_logger("ledger.queries")

#: Room kept under the max payload for the reply's headers.
REPLY_MARGIN_BYTES = 4096


class BusyError(RuntimeError):
    """Too many queries at once: try again shortly."""


class QueryService:
    """Runs report queries off the store thread, bounded, de-duplicated."""

    def __init__(
        self,
        ledger: Ledger,
        metrics: LedgerMetrics,
        *,
        workers: int,
        max_concurrent: int,
        token: SecretStr | None,
    ) -> None:
        assert 1 <= workers <= 16, workers
        assert 1 <= max_concurrent <= 10_000, max_concurrent
        self._ledger = ledger
        self._metrics = metrics
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ledger-query")
        self._max_concurrent = max_concurrent
        self._admitted = 0
        self._token = token
        self._running: dict[tuple[int, ReportQuery], asyncio.Future[bytes]] = {}
        self._last: tuple[tuple[int, ReportQuery], bytes] | None = None

    def authorized(self, given: object) -> bool:
        """No token configured: open. Otherwise the given one must match (constant time)."""
        if self._token is None:
            return True
        expected = self._token.get_secret_value().encode()
        return isinstance(given, str) and hmac.compare_digest(given.encode(), expected)

    async def json(self, query: ReportQuery, channel: str) -> bytes:
        """The answer to ``query`` as JSON bytes; raises :class:`BusyError` when full."""
        if self._admitted >= self._max_concurrent:
            self._metrics.queries_refused.labels(channel).inc()
            raise BusyError(
                f"{self._admitted} queries in progress (limit {self._max_concurrent}); retry shortly"
            )
        self._admitted += 1
        try:
            self._metrics.queries.labels(channel, query.view).inc()
            key = (self._ledger.index.head.position, query)
            if self._last is not None and self._last[0] == key:
                return self._last[1]
            running = self._running.get(key)
            if running is None:
                running = asyncio.get_running_loop().run_in_executor(self._pool, self._compute, query)
                self._running[key] = running
                running.add_done_callback(lambda _: self._running.pop(key, None))
            body = await asyncio.shield(running)
            self._last = (key, body)
            return body
        finally:
            self._admitted -= 1

    def _compute(self, query: ReportQuery) -> bytes:
        return orjson.dumps(answer(self._ledger, query), option=orjson.OPT_INDENT_2)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _error(reason: str, message: str) -> dict[str, Any]:
    return {"error": {"reason": reason, "message": message}}


# HTTP -------------------------------------------------------------------------------------


def query_params(scope: Scope) -> dict[str, Any]:
    raw = scope.get("query_string", b"")
    if len(raw) > MAX_QUERY_BYTES:
        raise QueryError("query string too long")
    parsed = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True, strict_parsing=False)
    out: dict[str, Any] = {}
    for key, values in parsed.items():
        if len(values) != 1:
            raise QueryError(f"parameter {key[:40]!r} given {len(values)} times")
        out[key] = values[0]
    return out


def _bearer(scope: Scope) -> str | None:
    header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def http_routes(service: QueryService) -> list[tuple[str, ASGIApp]]:
    """``/report``, ``/report/introducer?id=``, ``/report/client?id=``."""

    def route(view: View) -> Callable[[Scope], Any]:
        async def handler(scope: Scope) -> AsgiResponse:
            if not service.authorized(_bearer(scope)):
                return json_response(_error("unauthorized", "a valid bearer token is required"), 401)
            try:
                params = query_params(scope)
                if view != "report" and "id" in params:
                    params[f"{view}_id"] = params.pop("id")
                body = await service.json(ReportQuery.from_params(view, params), "http")
            except QueryError as exc:
                return json_response(_error("bad_query", str(exc)), 400)
            except BusyError as exc:
                return AsgiResponse(
                    orjson.dumps(_error("busy", str(exc))),
                    status_code=429,
                    headers={"Content-Type": "application/json", "Retry-After": "1"},
                )
            return AsgiResponse(body, status_code=200, headers={"Content-Type": "application/json"})

        return handler

    return [
        ("/report", get(route("report"))),
        ("/report/introducer", get(route("introducer"))),
        ("/report/client", get(route("client"))),
    ]


# NATS request/reply -------------------------------------------------------------------------


async def nats_answer(service: QueryService, body: bytes, view: View, max_payload: int) -> bytes:
    """The reply to one NATS query (JSON body): the answer, or an error object. Never
    larger than ``max_payload``: an answer that would be is replaced by a ``too_large``
    error naming the limit and the HTTP route that serves it."""
    try:
        if len(body) > MAX_QUERY_BYTES:
            raise QueryError(f"query of {len(body)} bytes exceeds {MAX_QUERY_BYTES}")
        params = orjson.loads(body) if body.strip() else {}
        if not isinstance(params, dict):
            raise QueryError("the query must be a JSON object")
        if not service.authorized(params.pop("token", None)):
            return orjson.dumps(_error("unauthorized", "a valid token is required"))
        answer_json = await service.json(ReportQuery.from_params(view, params), "nats")
    except (QueryError, orjson.JSONDecodeError) as exc:
        return orjson.dumps(_error("bad_query", str(exc)))
    except BusyError as exc:
        return orjson.dumps(_error("busy", str(exc)))
    limit = max_payload - REPLY_MARGIN_BYTES
    if len(answer_json) > limit:
        route = {"report": "/report", "introducer": "/report/introducer", "client": "/report/client"}[view]
        log.warning("query answer too large for NATS", view=view, size=len(answer_json), limit=limit)
        return orjson.dumps(
            _error(
                "too_large",
                f"the answer is {len(answer_json)} bytes, over the {limit}-byte limit of a NATS reply "
                f"(max payload {max_payload}): narrow it with introducer_id or client_id, "
                f"or read it over HTTP at GET {route}",
            )
        )
    return answer_json
