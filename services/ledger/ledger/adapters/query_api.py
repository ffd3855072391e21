"""The read side of ``ledger serve``: report queries over HTTP and NATS request/reply.

Reads never block writes: they run in their own worker process(es) (see
:mod:`~ledger.adapters.query_worker`), caught up to the position stored when the query
arrived; with an in-memory store (nothing to share), on a worker thread from a consistent
snapshot of the ledger (:class:`~ledger.application.ledger.Head`). Never on the store's
thread. At most ``max_concurrent`` queries are admitted (running or waiting); beyond that
HTTP answers 429 (with ``Retry-After``) and NATS a ``busy`` error. Identical queries are
coalesced: while one is computed, the same query arriving meanwhile waits for the next
computation, which starts when the current one ends and answers all of them from a
snapshot taken after each arrived. So a burst of the same report costs at most two
computations, however many ask, and every answer is at least as fresh as its request. A
NATS answer larger than the connection's max payload is never sent: the caller gets a
``too_large`` error naming the limit and the HTTP route instead of a timeout.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson
import structlog
from faststream.asgi import AsgiResponse, get
from faststream.asgi.types import ASGIApp, Scope
from pydantic import SecretStr

from coop_runtime.http import json_response
from coop_runtime.http_guard import MAX_QUERY_BYTES
from ledger.adapters.answers import Answer, compute_answer
from ledger.adapters.metrics import LedgerMetrics
from ledger.adapters.query_worker import compute_in_worker, start_worker_pool
from ledger.application.ledger import Ledger
from ledger.application.links import LinkError, verify_link
from ledger.application.queries import NotAvailableError, QueryError, ReportQuery, View

__all__ = [
    "Answer",
    "BusyError",
    "QueryService",
    "http_routes",
    "nats_answer",
    "query_params",
    "statement_pages",
]

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
        worker_env: dict[str, str] | None = None,
        auditor_token: SecretStr | None = None,
    ) -> None:
        """``worker_env``: the store's settings, to compute in worker processes; None
        computes on threads of this process (an in-memory store)."""
        assert 1 <= workers <= 16, workers
        assert 1 <= max_concurrent <= 10_000, max_concurrent
        self._ledger = ledger
        self._metrics = metrics
        self._workers = workers
        self._worker_env = worker_env
        self._pool: Executor = self._new_pool()
        self._max_concurrent = max_concurrent
        self._admitted = 0
        self._token = token
        self._auditor_token = auditor_token
        #: Per query: the computation under way, and the one that will follow it.
        self._running: dict[ReportQuery, asyncio.Future[Answer]] = {}
        self._next: dict[ReportQuery, asyncio.Future[Answer]] = {}
        #: The last answer and the head position it was computed at.
        self._last: tuple[ReportQuery, int, Answer] | None = None

    def authorized(self, given: object) -> bool:
        """Reports: open when no query token is configured; otherwise the query token (for
        machines) or the auditor's token must be given (constant-time comparisons)."""
        if self._token is None:
            return True
        return _matches(given, self._token) or self.is_auditor(given)

    def is_auditor(self, given: object) -> bool:
        """The auditor's token: it reads every report and every party's statement page."""
        return self._auditor_token is not None and _matches(given, self._auditor_token)

    async def json(self, query: ReportQuery, channel: str) -> bytes:
        """The answer to ``query`` as JSON bytes; raises :class:`BusyError` when full."""
        return (await self.answer(query, channel)).body

    async def answer(self, query: ReportQuery, channel: str) -> Answer:
        """The answer to ``query`` (JSON, and gzipped); raises :class:`BusyError` when full."""
        if self._admitted >= self._max_concurrent:
            self._metrics.queries_refused.labels(channel).inc()
            raise BusyError(
                f"{self._admitted} queries in progress (limit {self._max_concurrent}); retry shortly"
            )
        self._admitted += 1
        try:
            self._metrics.queries.labels(channel, query.view).inc()
            head = self._ledger.index.head.position
            last = self._last
            if last is not None and last[0] == query and last[1] == head:
                return last[2]
            return await asyncio.shield(self._coalesced(query))
        finally:
            self._admitted -= 1

    def _coalesced(self, query: ReportQuery) -> asyncio.Future[Answer]:
        """The computation that will answer ``query`` asked now: the one that follows the
        computation under way (it starts after this request arrived), or a new one."""
        if query in self._next:
            return self._next[query]
        if query in self._running:
            following: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
            self._next[query] = following
            return following
        return self._start(query)

    def _start(
        self, query: ReportQuery, into: asyncio.Future[Answer] | None = None
    ) -> asyncio.Future[Answer]:
        loop = asyncio.get_running_loop()
        result = into if into is not None else loop.create_future()
        self._running[query] = result
        if self._worker_env is None:
            computation = loop.run_in_executor(self._pool, self._compute, query)
        else:
            at_least = self._ledger.index.head.position
            computation = loop.run_in_executor(self._pool, compute_in_worker, query, at_least)

        def done(finished: asyncio.Future[tuple[int, Answer]]) -> None:
            del self._running[query]
            if finished.cancelled():
                result.cancel()
            elif (error := finished.exception()) is not None:
                if isinstance(error, BrokenProcessPool):
                    log.error("the query worker died; starting a new one", error=str(error))
                    self._pool = self._new_pool()
                result.set_exception(error)
            else:
                position, body = finished.result()
                self._last = (query, position, body)
                result.set_result(body)
            following = self._next.pop(query, None)
            if following is not None:
                self._start(query, following)

        computation.add_done_callback(done)
        return result

    def _new_pool(self) -> Executor:
        if self._worker_env is None:
            return ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="ledger-query")
        return start_worker_pool(self._worker_env, self._workers)

    def _compute(self, query: ReportQuery) -> tuple[int, Answer]:
        position = self._ledger.index.head.position
        return position, compute_answer(self._ledger, query)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _matches(given: object, expected: SecretStr) -> bool:
    return isinstance(given, str) and hmac.compare_digest(
        given.encode(), expected.get_secret_value().encode()
    )


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


def _accepts_gzip(scope: Scope) -> bool:
    header = dict(scope.get("headers") or []).get(b"accept-encoding", b"").decode("latin-1").lower()
    return any(
        part.split(";")[0].strip() == "gzip" and "q=0" not in part.replace(" ", "")
        for part in header.split(",")
    )


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
                found = await service.answer(ReportQuery.from_params(view, params), "http")
            except NotAvailableError as exc:
                return json_response(_error("not_available", str(exc)), 404)
            except QueryError as exc:
                return json_response(_error("bad_query", str(exc)), 400)
            except BusyError as exc:
                return AsgiResponse(
                    orjson.dumps(_error("busy", str(exc))),
                    status_code=429,
                    headers={"Content-Type": "application/json", "Retry-After": "1"},
                )
            headers = {"Content-Type": "application/json", "Vary": "Accept-Encoding"}
            if _accepts_gzip(scope):
                headers["Content-Encoding"] = "gzip"
                return AsgiResponse(found.gzipped, status_code=200, headers=headers)
            return AsgiResponse(found.body, status_code=200, headers=headers)

        return handler

    return [
        ("/report", get(route("report"))),
        ("/report/introducer", get(route("introducer"))),
        ("/report/client", get(route("client"))),
        ("/report/period", get(route("period"))),
    ]


def statement_pages(
    service: QueryService, key: Callable[[], bytes | None], clock: Callable[[], datetime]
) -> ASGIApp:
    """``/statements/<kind>/<id>[.pdf|.json]?period=YYYY-MM&expires=...&sig=...``: one
    party's statement of a month, opened by its signed link (only that party, that month,
    until the expiry) or by the auditor's bearer token. Anything else: 403, no figure."""

    async def handler(scope: Scope, receive: Any, send: Any) -> None:
        response = await _statement_page(service, key, clock, scope)
        await response(scope, receive, send)

    return handler


#: How a statement page's failure is answered: (reason, HTTP status). A link that does not
#: open the page says why, and shows no figure.
_PAGE_ERRORS: tuple[tuple[type[Exception], str, int], ...] = (
    (LinkError, "forbidden", 403),
    (NotAvailableError, "not_available", 404),
    (QueryError, "bad_query", 400),
    (BusyError, "busy", 429),
)


async def _statement_page(
    service: QueryService, key: Callable[[], bytes | None], clock: Callable[[], datetime], scope: Scope
) -> AsgiResponse:
    parts = str(scope.get("path", "")).split("/")
    if len(parts) != 4 or not parts[2] or not parts[3]:
        return json_response(_error("not_found", "no such statement page"), 404)
    kind, name = parts[2], unquote(parts[3])
    page_format = "html"
    for suffix in (".pdf", ".json"):
        if name.endswith(suffix):
            name, page_format = name.removesuffix(suffix), suffix[1:]
    try:
        params = query_params(scope)
        period = str(params.get("period", ""))
        if not service.is_auditor(_bearer(scope)):
            signing_key = key()
            if signing_key is None:
                raise LinkError("statement links are not open yet")
            verify_link(
                signing_key,
                kind=kind,
                party_id=name,
                period=period,
                expires=str(params.get("expires", "")),
                signature=str(params.get("sig", "")),
                now=clock(),
            )
        found = await service.answer(ReportQuery.page(kind, name, period, page_format), "http")
    except tuple(kind for kind, _, _ in _PAGE_ERRORS) as exc:
        reason, status = next((r, code) for k, r, code in _PAGE_ERRORS if isinstance(exc, k))
        extra = {"Retry-After": "1"} if status == 429 else {}
        return AsgiResponse(
            orjson.dumps(_error(reason, str(exc))),
            status_code=status,
            headers={"Content-Type": "application/json", **extra},
        )
    headers = {"Content-Type": found.media_type, "Cache-Control": "private, no-store"}
    return AsgiResponse(found.body, status_code=200, headers=headers)


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
    except NotAvailableError as exc:
        return orjson.dumps(_error("not_available", str(exc)))
    except (QueryError, orjson.JSONDecodeError) as exc:
        return orjson.dumps(_error("bad_query", str(exc)))
    except BusyError as exc:
        return orjson.dumps(_error("busy", str(exc)))
    limit = max_payload - REPLY_MARGIN_BYTES
    if len(answer_json) > limit:
        route = {
            "report": "/report",
            "introducer": "/report/introducer",
            "client": "/report/client",
            "period": "/report/period",
        }[view]
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
