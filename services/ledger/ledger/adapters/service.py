"""``ledger serve``: the ledger as a FastStream app over NATS JetStream.

- Inbound: a durable pull consumer on ``LEDGER_IN`` takes batches, the batch is stored
  in one transaction (on a single worker thread, eventsourcing being synchronous), every
  refusal is published to ``ledger.rejected``, and only then are the messages acked.
- Outbound (outbox): derived events are computed from the stored log, position by
  position, published to ``LEDGER_OUT`` with ``Nats-Msg-Id`` = the event id, and the
  published position is tracked in the store. Publishing never runs ahead of storing.
- Queries: the report (and per-introducer and per-client views) over NATS request/reply
  and HTTP; ``/metrics``, ``/healthz``, ``/readyz`` and the AsyncAPI document over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any, TypeVar
from urllib.parse import parse_qs

import orjson
import structlog
from faststream import Context
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import ASGIApp, Scope
from faststream.nats import JStream, NatsBroker
from faststream.specification import AsyncAPI, get_asyncapi_html
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from coop_runtime.broker import build_broker
from coop_runtime.http import json_response, operations_routes
from coop_runtime.http_guard import MAX_QUERY_BYTES
from coop_runtime.retry import retry_until
from coop_runtime.streams import open_stream, stream_config
from ledger.adapters.asyncapi import complete_asyncapi
from ledger.adapters.eventstore import EventSourcedFactStore
from ledger.adapters.jetstream import PipelinedPublisher
from ledger.adapters.metrics import LedgerMetrics
from ledger.application.derive import DerivedEvent
from ledger.application.ledger import Ledger, Outcome
from ledger.application.outbound import OUTBOUND_MODELS
from ledger.application.pipeline import Pipeline
from ledger.application.report import render_report
from ledger.application.views import client_view, introducer_view
from ledger.settings import Settings

__all__ = ["LedgerService", "QueryError", "answer_query", "build_app", "query_params"]

T = TypeVar("T")

log = structlog.get_logger("ledger.service")


class QueryError(ValueError):
    """A report query that cannot be answered as asked."""


class LedgerService:
    """The running service's state: the ledger, its store, the outbox and metrics."""

    def __init__(self, settings: Settings, store: EventSourcedFactStore, ledger: Ledger) -> None:
        self.settings = settings
        self.store = store
        self.ledger = ledger
        self.metrics = LedgerMetrics()
        self.pipeline = Pipeline(ledger, store)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-store")
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.broker: NatsBroker | None = None
        self.consumer_pending = 0
        self.ready_reason = "starting"
        self._in_hand: asyncio.Future[None] | None = None
        self.store_failures = 0
        self.store_error = ""
        self.publisher: PipelinedPublisher | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the single store thread (eventsourcing has no async API)."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    # start-up and shut-down ------------------------------------------------------

    @property
    def published(self) -> int:
        return self.pipeline.published

    def _recover(self) -> None:
        caught = self.pipeline.recover()
        log.info(
            "store recovered",
            facts=caught,
            published_position=self.published,
            head_position=self.ledger.head_position,
            head_hash=self.ledger.head_hash,
        )

    async def start(self, broker: NatsBroker) -> None:
        """Recover the store, then open the streams and start consuming in the background:
        HTTP (/healthz, /readyz with the reason) answers while JetStream is not there yet."""
        self.broker = broker
        await self.run(self._recover)
        self._update_gauges()
        self.ready_reason = "opening the JetStream streams"
        self._tasks = [asyncio.create_task(self._open_then_run(broker), name="open")]

    def _waiting(self, reason: str) -> None:
        self.ready_reason = reason

    async def _open_then_run(self, broker: NatsBroker) -> None:
        js = broker.config.connection_state.stream
        for name, subjects in (
            ("LEDGER_OUT", ["ledger.out.>"]),
            ("LEDGER_REJECTED", ["ledger.rejected"]),
            ("LEDGER_IN", ["ledger.in.>"]),
        ):
            config = stream_config(
                name, subjects, self.settings.duplicate_window_s, self.settings.stream_replicas
            )
            if not await open_stream(
                js,
                config,
                retry_delay_s=self.settings.retry_delay_s,
                stopping=self._stopping,
                on_wait=self._waiting,
            ):
                return
        subscription = await self._subscribe(js)
        if subscription is None:
            return
        self._subscription = subscription
        self.publisher = PipelinedPublisher(broker.config.connection_state.connection)
        await self.publisher.start()
        self._tasks += [
            asyncio.create_task(self._consume_loop(subscription), name="consume"),
            asyncio.create_task(self._outbox_loop(), name="outbox"),
            asyncio.create_task(self._checkpoint_loop(), name="checkpoint"),
            asyncio.create_task(self._watch_consumer(), name="consumer-watch"),
        ]
        self.ready_reason = ""
        log.info(
            "ledger ready",
            http=f"http://{self.settings.http_host}:{self.settings.http_port}",
            head_position=self.ledger.head_position,
            consumer=self.settings.consumer_name,
        )

    async def _subscribe(self, js: JetStreamContext) -> JetStreamContext.PullSubscription | None:
        """The durable pull consumer on ``LEDGER_IN``, retried like the streams; None if
        the service stops first."""

        async def attempt() -> JetStreamContext.PullSubscription:
            return await js.pull_subscribe(
                "ledger.in.>",
                durable=self.settings.consumer_name,
                stream="LEDGER_IN",
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self.settings.ack_wait_s,
                    max_ack_pending=-1,
                    deliver_policy=DeliverPolicy.ALL,
                ),
            )

        return await retry_until(
            attempt,
            what="create the consumer",
            retry_delay_s=self.settings.retry_delay_s,
            stopping=self._stopping,
            on_wait=self._waiting,
        )

    async def _consume_loop(self, subscription: JetStreamContext.PullSubscription) -> None:
        """The hot path: fetch up to a batch (returns as soon as messages are available),
        store it, publish refusals, ack. One batch in hand at a time."""
        while not self._stopping.is_set():
            try:
                msgs = await subscription.fetch(
                    self.settings.batch_size, timeout=self.settings.fetch_timeout_s
                )
            except TimeoutError:
                continue
            except Exception as exc:
                if self._stopping.is_set():
                    return
                log.warning("fetch failed; retrying", error=str(exc))
                await asyncio.sleep(self.settings.retry_delay_s)
                continue
            self._in_hand = asyncio.ensure_future(self.handle_batch(msgs))
            await asyncio.shield(self._in_hand)
            if self.store_failures:
                # the store refuses writes (down, disk full, read-only): stop taking messages
                # for a while, longer each time; the batch was nacked, nothing is lost
                pause = min(self.settings.retry_delay_s * 2 ** (self.store_failures - 1), 30.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)

    async def stop_consuming(self) -> None:
        """First step of a graceful stop (NATS still connected): take no new batch, finish
        and ack the batch in hand, publish what it derived."""
        self.ready_reason = "stopping"
        self._stopping.set()
        self._wake.set()
        if self._in_hand is not None and not self._in_hand.done():
            log.info("finishing the batch in hand before stopping")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._in_hand), self.settings.graceful_timeout_s)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._subscription is not None:
            # a pending fetch would otherwise hold the connection's drain for its full timeout
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drain_outbox(), self.settings.graceful_timeout_s)

    async def close(self) -> None:
        """Last step of a graceful stop: release the store."""
        self._worker.shutdown(wait=True)
        self.store.close()
        log.info("ledger stopped", head_position=self.ledger.head_position, published_position=self.published)

    # inbound -------------------------------------------------------------------------

    async def handle_batch(self, msgs: list[Msg]) -> None:
        raws: list[bytes] = [m.data for m in msgs]
        batch_id = uuid.uuid4().hex[:12]
        started = time.perf_counter()
        bound = log.bind(batch_id=batch_id, batch_size=len(raws))
        try:
            outcomes = await self.run(self.pipeline.accept, raws)
        except Exception as exc:
            self.metrics.store_errors.inc()
            self.store_failures += 1
            self.store_error = f"{type(exc).__name__}: {exc}"[:300]
            bound.error(
                "batch not stored; consuming paused, the batch will be redelivered",
                error=self.store_error,
                consecutive_failures=self.store_failures,
            )
            await asyncio.gather(*(m.nak(delay=self.settings.retry_delay_s) for m in msgs))
            return
        if self.store_failures:
            bound.info("store writes work again; consuming resumed", after_failures=self.store_failures)
        self.store_failures = 0
        self.store_error = ""
        assert self.broker is not None
        for raw, outcome in zip(raws, outcomes, strict=True):
            self._count(outcome)
            if outcome.status == "refused":
                bound.warning(
                    "message refused",
                    envelope_id=outcome.envelope_id,
                    reason=outcome.reason,
                    detail=outcome.message,
                )
                await self._publish_rejection(raw, outcome)
            elif outcome.status == "duplicate":
                bound.debug("duplicate ignored", envelope_id=outcome.envelope_id, position=outcome.position)
        for m in msgs:
            await m.ack()
        self.metrics.batch_size.observe(len(raws))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self._update_gauges()
        self._wake.set()

    def _count(self, outcome: Outcome) -> None:
        if outcome.status == "accepted":
            self.metrics.facts_accepted.labels(outcome.fact_type or "unknown").inc()
        elif outcome.status == "duplicate":
            self.metrics.facts_duplicate.labels(outcome.fact_type or "unknown").inc()
        else:
            self.metrics.facts_refused.labels(outcome.reason or "unknown").inc()

    async def _publish_rejection(self, raw: bytes, outcome: Outcome) -> None:
        assert self.broker is not None
        body = orjson.dumps(
            {
                "reason": outcome.reason,
                "message": outcome.message,
                "id": outcome.envelope_id,
                "original": raw.decode("utf-8", errors="replace"),
            }
        )
        headers = {"Ledger-Reason": outcome.reason or "", "Content-Type": "application/json"}
        js = self.broker.config.connection_state.stream
        await js.publish("ledger.rejected", body, headers=headers, stream="LEDGER_REJECTED")

    # outbound (outbox) -------------------------------------------------------------------

    async def _outbox_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()
            try:
                await self._drain_outbox()
            except Exception as exc:
                self.metrics.publish_errors.inc()
                log.warning("publishing derived events failed; retrying", error=str(exc))
                await asyncio.sleep(self.settings.retry_delay_s)

    async def _drain_outbox(self) -> None:
        while (chunk := await self.run(self.pipeline.outbox_chunk)) is not None:
            await self._publish_events(chunk.events)
            await self.run(self.pipeline.outbox_done, chunk)
            self._update_gauges()

    async def _publish_events(self, events: Sequence[DerivedEvent]) -> None:
        assert self.publisher is not None
        await self.publisher.publish(
            [(e.subject, _cloudevent(e), {"Nats-Msg-Id": e.id}) for e in events],
            self.settings.publish_timeout_s,
        )
        for e in events:
            self.metrics.derived_published.labels(e.kind).inc()
            delta = e.minor_delta()
            if delta is not None:
                currency, minor = delta
                if minor > 0:
                    self.metrics.commission_accrued_minor.labels(currency).inc(minor)
                elif minor < 0:
                    self.metrics.commission_reversed_minor.labels(currency).inc(-minor)

    async def _checkpoint_loop(self) -> None:
        """Publish the chain head on ledger.out.audit.checkpoint whenever it moved."""
        last = -1
        while not self._stopping.is_set():
            await asyncio.sleep(self.settings.checkpoint_interval_s)
            position, digest = self.ledger.head_position, self.ledger.head_hash
            if position == last:
                continue
            event = DerivedEvent(
                f"checkpoint:{position}",
                "audit.checkpoint",
                max(position, 1),
                {"position": position, "hash": digest},
            )
            try:
                assert self.publisher is not None
                await self.publisher.publish(
                    [(event.subject, _cloudevent(event), {"Nats-Msg-Id": event.id})],
                    self.settings.publish_timeout_s,
                )
                self.metrics.checkpoints_published.inc()
                last = position
            except Exception as exc:
                log.warning("checkpoint not published; will retry", error=str(exc))

    async def _watch_consumer(self) -> None:
        while not self._stopping.is_set():
            try:
                assert self.broker is not None
                js = self.broker.config.connection_state.stream
                info = await js.consumer_info("LEDGER_IN", self.settings.consumer_name)
                self.consumer_pending = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
                self.metrics.consumer_pending.set(self.consumer_pending)
            except Exception as exc:
                log.debug("consumer info unavailable", error=str(exc))
            await asyncio.sleep(self.settings.metrics_poll_s)

    def _update_gauges(self) -> None:
        self.metrics.stored_position.set(self.ledger.head_position)
        self.metrics.published_position.set(self.published)
        self.metrics.publish_lag.set(self.ledger.head_position - self.published)
        self.metrics.chain_head.info(
            {"hash": self.ledger.head_hash, "position": str(self.ledger.head_position)}
        )

    # queries ---------------------------------------------------------------------------

    def _report(self, as_of: date | None, introducer_id: str | None, client_id: str | None) -> dict[str, Any]:
        books = self.ledger.books(as_of=as_of)
        report = render_report(
            books, head_position=self.ledger.head_position, head_hash=self.ledger.head_hash
        )
        if introducer_id is not None:
            return introducer_view(report, introducer_id)
        if client_id is not None:
            return client_view(report, client_id)
        return report

    async def query(self, params: dict[str, Any], channel: str) -> dict[str, Any]:
        """Answer a report query; raises :class:`QueryError` for bad parameters."""
        unknown = set(params) - {"as_of", "introducer_id", "client_id"}
        if unknown:
            raise QueryError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        as_of = params.get("as_of")
        day = None
        if as_of is not None:
            try:
                day = date.fromisoformat(str(as_of))
            except ValueError:
                raise QueryError(f"as_of {str(as_of)[:40]!r} is not a date YYYY-MM-DD") from None
        introducer_id, client_id = params.get("introducer_id"), params.get("client_id")
        if introducer_id is not None and client_id is not None:
            raise QueryError("ask for introducer_id or client_id, not both")
        for value in (introducer_id, client_id):
            if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 128):
                raise QueryError("ids are strings of 1-128 characters")
        view = "introducer" if introducer_id else "client" if client_id else "report"
        self.metrics.queries.labels(channel, view).inc()
        return await self.run(self._report, day, introducer_id, client_id)

    async def readiness(self) -> tuple[bool, str]:
        if self.ready_reason:
            return False, self.ready_reason
        assert self.broker is not None
        connection = self.broker.config.connection_state.connection
        if not connection.is_connected:
            return False, "NATS not connected"
        try:
            await asyncio.wait_for(self.run(self.store.ping), timeout=self.settings.ready_timeout_s)
        except Exception as exc:
            return False, f"store unreachable: {exc}"
        if self.store_failures:
            return False, f"store writes failing: {self.store_error}"
        if self.consumer_pending > self.settings.ready_max_pending:
            return False, f"consumer lag {self.consumer_pending} above {self.settings.ready_max_pending}"
        return True, "ready"


def _cloudevent(event: DerivedEvent) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": event.id,
            "source": "coop-ledger",
            "type": event.type,
            "datacontenttype": "application/json",
            "subject": event.kind,
            "ledgerposition": event.position,
            "data": event.data,
        }
    )


def query_params(scope: Scope) -> dict[str, Any]:
    raw = scope.get("query_string", b"")
    if len(raw) > MAX_QUERY_BYTES:
        raise QueryError("query string too long")
    parsed = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True, strict_parsing=False)
    out: dict[str, Any] = {}
    for key, values in parsed.items():
        if len(values) != 1:
            raise QueryError(f"parameter {key!r} given {len(values)} times")
        out[key] = values[0]
    return out


async def answer_query(service: LedgerService, body: bytes, view: str) -> dict[str, Any]:
    """Answer one NATS request/reply query (JSON body) with the view or a refusal."""
    try:
        if len(body) > MAX_QUERY_BYTES:
            raise QueryError(f"query of {len(body)} bytes exceeds {MAX_QUERY_BYTES}")
        params = orjson.loads(body) if body.strip() else {}
        if not isinstance(params, dict):
            raise QueryError("the query must be a JSON object")
        if not _token_ok(service.settings, params.pop("token", None)):
            return {"error": {"reason": "unauthorized", "message": "a valid token is required"}}
        if view != "report" and f"{view}_id" not in params:
            raise QueryError(f"{view}_id is required")
        return await service.query(params, "nats")
    except (QueryError, orjson.JSONDecodeError) as exc:
        return {"error": {"reason": "bad_query", "message": str(exc)}}


def _bearer(scope: Scope) -> str | None:
    header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _token_ok(settings: Settings, given: object) -> bool:
    """No token configured: open. Otherwise the given one must match (constant time)."""
    if settings.query_token is None:
        return True
    expected = settings.query_token.get_secret_value().encode()
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected)


def build_app(settings: Settings | None = None) -> tuple[AsgiFastStream, LedgerService]:
    """Wire the service from settings. Nothing connects until the app starts."""
    from ledger.bootstrap import build_ledger, build_store

    settings = settings or Settings()
    store = build_store(settings)
    service = LedgerService(settings, store, build_ledger(settings, store))
    broker = build_broker(settings, name="ledger", graceful_timeout_s=settings.graceful_timeout_s)

    async def answer(body: bytes, view: str) -> dict[str, Any]:
        return await answer_query(service, body, view)

    @broker.subscriber(
        "ledger.query.report",
        title="ledger.query.report",
        description="Request/reply: the report; JSON body {as_of?, introducer_id?, client_id?}.",
    )
    async def query_report(msg: Any = Context("message")) -> dict[str, Any]:
        return await answer(msg.body, "report")

    @broker.subscriber(
        "ledger.query.introducer",
        title="ledger.query.introducer",
        description="Request/reply: one introducer's view; body {introducer_id, as_of?}.",
    )
    async def query_introducer(msg: Any = Context("message")) -> dict[str, Any]:
        return await answer(msg.body, "introducer")

    @broker.subscriber(
        "ledger.query.client",
        title="ledger.query.client",
        description="Request/reply: one client's view; body {client_id, as_of?}.",
    )
    async def query_client(msg: Any = Context("message")) -> dict[str, Any]:
        return await answer(msg.body, "client")

    # the service opens its streams itself (with their configuration, retried): FastStream
    # must not declare them at connect time
    out_stream = JStream("LEDGER_OUT", declare=False)
    for kind, model in OUTBOUND_MODELS.items():
        broker.publisher(
            f"ledger.out.{kind}",
            stream=out_stream,
            title=f"ledger.out.{kind}",
            schema=model,
            description=f"Derived event coop.ledger.out.{kind}.v1 (CloudEvents; data as this schema).",
        )
    broker.publisher(
        "ledger.rejected",
        stream=JStream("LEDGER_REJECTED", declare=False),
        title="ledger.rejected",
        description="Refused inbound messages: original bytes, reason code, readable message.",
    )

    def http_query(view: str) -> Callable[[Scope], Any]:
        async def handler(scope: Scope) -> AsgiResponse:
            if not _token_ok(settings, _bearer(scope)):
                return json_response(
                    {"error": {"reason": "unauthorized", "message": "a valid bearer token is required"}}, 401
                )
            try:
                params = query_params(scope)
                if view != "report":
                    key = f"{view}_id"
                    if "id" in params:
                        params[key] = params.pop("id")
                    if key not in params:
                        raise QueryError(f"{key} (or id) is required")
                return json_response(await service.query(params, "http"))
            except QueryError as exc:
                return json_response({"error": {"reason": "bad_query", "message": str(exc)}}, 400)

        return handler

    specification = AsyncAPI(
        broker,
        title="Commission ledger",
        version="1.0.0",
        description="Inbound facts, derived events, refusals and report queries.",
    )

    @get
    async def asyncapi_json(scope: Scope) -> AsgiResponse:
        return json_response(complete_asyncapi(specification.to_specification().to_jsonable()))

    @get
    async def asyncapi_html(scope: Scope) -> AsgiResponse:
        html = get_asyncapi_html(specification.to_specification(), try_it_out_path=None)
        return AsgiResponse(
            html.encode(), status_code=200, headers={"Content-Type": "text/html; charset=utf-8"}
        )

    routes: list[tuple[str, ASGIApp]] = [
        *operations_routes(service.metrics.registry, service.readiness),
        ("/report", get(http_query("report"))),
        ("/report/introducer", get(http_query("introducer"))),
        ("/report/client", get(http_query("client"))),
        ("/asyncapi.json", asyncapi_json),
        ("/asyncapi", asyncapi_html),
    ]

    async def after_startup() -> None:
        await service.start(broker)

    async def on_shutdown() -> None:
        await service.stop_consuming()

    async def after_shutdown() -> None:
        await service.close()

    app = AsgiFastStream(
        broker,
        asgi_routes=routes,
        after_startup=[after_startup],
        on_shutdown=[on_shutdown],
        after_shutdown=[after_shutdown],
        specification=specification,
    )
    return app, service
