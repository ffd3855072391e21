"""``notifier serve``: a FastStream app (NATS + HTTP) around ingest, delivery and digests.

The hot path is a plain nats-py pull loop (as in the ledger): ``fetch`` returns as soon as
messages are there, each message is settled in its own task (bounded by
``max_in_flight``), kept alive with ``in_progress`` while its alerts are being sent or
retried, and acked only once settled. A failure to settle (store or NATS down) naks it
with a delay; JetStream redelivers it and the store makes the redelivery harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import Scope
from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from pydantic import ValidationError

from coop_runtime.http import json_response, operations_routes
from coop_runtime.retry import retry_until
from coop_runtime.streams import open_stream
from notifier.adapters.jetstream import (
    IN_STREAM,
    failed_stream_config,
    subscribe_ledger_out,
    wait_for_stream,
)
from notifier.adapters.metrics import NotifierMetrics
from notifier.application.delivery import Deliverer
from notifier.application.digests import Digester
from notifier.application.ingest import Ingestor
from notifier.application.ports import AlertStore, Runner
from notifier.domain.events import MAX_EVENT_BYTES, MAX_STATEMENT_BYTES, LedgerEnvelope
from notifier.domain.statements import STATEMENT_KIND
from notifier.settings import NotifierSettings

__all__ = ["NotifierService", "build_asgi", "parse_message"]

log = structlog.get_logger("notifier.service")


def parse_message(raw: bytes) -> LedgerEnvelope | None:
    """The envelope of a ``ledger.out`` message, or None (logged) when it is not one. A
    statement may be up to :data:`MAX_STATEMENT_BYTES`, any other event :data:`MAX_EVENT_BYTES`."""
    if len(raw) > MAX_STATEMENT_BYTES:
        log.error("message too large; skipped", size=len(raw))
        return None
    try:
        envelope = LedgerEnvelope.model_validate(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        log.error("not a ledger event; skipped", error=str(exc)[:300])
        return None
    if len(raw) > MAX_EVENT_BYTES and envelope.kind != STATEMENT_KIND:
        log.error("message too large; skipped", size=len(raw), event_id=envelope.id)
        return None
    return envelope


class NotifierService:
    """The running notifier: consumer loop, digest loop, consumer watch, readiness."""

    def __init__(
        self,
        *,
        settings: NotifierSettings,
        ingestor: Ingestor,
        deliverer: Deliverer,
        digester: Digester,
        store: AlertStore,
        run: Runner,
        metrics: NotifierMetrics,
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.ingestor = ingestor
        self.deliverer = deliverer
        self.digester = digester
        self.store = store
        self._run = run
        self.metrics = metrics
        self._close = close
        self.broker: NatsBroker | None = None
        self.ready_reason = "starting"
        self.consumer_pending = 0
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._settling: set[asyncio.Task[None]] = set()
        self._subscription: JetStreamContext.PullSubscription | None = None

    def _js(self) -> JetStreamContext:
        assert self.broker is not None, "not started"
        js: JetStreamContext = self.broker.config.connection_state.stream
        return js

    # lifecycle -------------------------------------------------------------------------

    async def start(self, broker: NatsBroker) -> None:
        self.broker = broker
        self._tasks = [
            asyncio.create_task(self._consume_loop(), name="consume"),
            asyncio.create_task(self._watch_consumer(), name="consumer-watch"),
        ]
        if self.digester.policy.enabled:
            self._tasks.append(asyncio.create_task(self._digest_loop(), name="digests"))

    async def stop_consuming(self) -> None:
        """Graceful stop, NATS still connected: fetch no more, let the messages in hand
        settle for up to the graceful timeout, then leave the rest unacked (redelivered)."""
        self.ready_reason = "stopping"
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._subscription is not None:
            # an orphaned pull request would hold the connection's drain for its full timeout
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None
        if self._settling:
            log.info("settling the messages in hand before stopping", messages=len(self._settling))
            _, late = await asyncio.wait(set(self._settling), timeout=self.settings.graceful_timeout_s)
            for task in late:
                task.cancel()
            await self.deliverer.cancel_inflight()
            await asyncio.gather(*late, return_exceptions=True)

    async def close(self) -> None:
        await self._close()
        log.info("notifier stopped")

    # consuming -----------------------------------------------------------------------------

    def _waiting(self, reason: str) -> None:
        self.ready_reason = reason

    async def _consume_loop(self) -> None:
        js = self._js()
        failed = failed_stream_config(self.settings.duplicate_window_s, self.settings.stream_replicas)
        if not await open_stream(
            js,
            failed,
            retry_delay_s=self.settings.stream_wait_s,
            stopping=self._stopping,
            on_wait=self._waiting,
        ):
            return
        wait_s = self.settings.stream_wait_s
        if not await wait_for_stream(js, IN_STREAM, wait_s, self._stopping, self._waiting):
            return

        async def subscribe() -> JetStreamContext.PullSubscription:
            return await subscribe_ledger_out(
                js, self.settings.consumer_name, self.settings.ack_wait_s, self.settings.max_in_flight
            )

        subscription = await retry_until(
            subscribe,
            what="create the consumer",
            retry_delay_s=self.settings.stream_wait_s,
            stopping=self._stopping,
            on_wait=self._waiting,
        )
        if subscription is None:
            return
        self._subscription = subscription
        self.ready_reason = ""
        log.info("consuming", stream=IN_STREAM, consumer=self.settings.consumer_name)
        limit = self.settings.max_in_flight
        while not self._stopping.is_set():
            free = limit - len(self._settling)
            if free <= 0:
                await asyncio.wait(set(self._settling), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                msgs = await subscription.fetch(
                    min(self.settings.batch_size, free), timeout=self.settings.fetch_timeout_s
                )
            except TimeoutError:
                continue
            except Exception as exc:
                if self._stopping.is_set():
                    return
                log.warning("fetch failed; retrying", error=str(exc))
                await asyncio.sleep(self.settings.retry_delay_s)
                continue
            for msg in msgs:
                task = asyncio.create_task(self._settle(msg))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)
            self.metrics.in_flight.set(len(self._settling))

    async def _settle(self, msg: Msg) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            envelope = parse_message(msg.data)
            if envelope is not None:
                keys = await self.ingestor.ingest(envelope)
                await self.deliverer.deliver_all(keys)
            if self.settings.ack_delay_s:
                await asyncio.sleep(self.settings.ack_delay_s)
            heartbeat.cancel()
            await msg.ack()
        except asyncio.CancelledError:
            raise  # shutting down: the message stays unacked and is redelivered
        except Exception as exc:
            self.metrics.store_errors.inc()
            log.error("message not settled; it will be redelivered", error=repr(exc)[:300])
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.settings.retry_delay_s)
        finally:
            heartbeat.cancel()
            self.metrics.in_flight.set(len(self._settling))

    async def _heartbeat(self, msg: Msg) -> None:
        """Tell JetStream the message is being worked on, so that a long retry round is
        not mistaken for a dead consumer."""
        interval = max(0.5, self.settings.ack_wait_s / 3)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _digest_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                count = await self.digester.run_digests()
                if count:
                    log.info("digests delivered", digests=count)
            except Exception as exc:
                log.warning("digests not settled; will retry", error=repr(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.settings.digest_check_s)

    async def _watch_consumer(self) -> None:
        while not self._stopping.is_set():
            try:
                info = await self._js().consumer_info(IN_STREAM, self.settings.consumer_name)
                self.consumer_pending = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
                self.metrics.consumer_pending.set(self.consumer_pending)
            except Exception as exc:
                log.debug("consumer info unavailable", error=str(exc))
            self.metrics.in_flight.set(len(self._settling))
            await self._refresh_statement_gauges()
            await asyncio.sleep(self.settings.metrics_poll_s)

    async def _refresh_statement_gauges(self) -> None:
        """Statements not delivered yet, read from the store (the alert rule's source)."""
        try:
            backlog = await self._run(self.store.statement_backlog)
        except Exception as exc:
            log.debug("statement backlog unavailable", error=str(exc))
            return
        self.metrics.statement_backlog(backlog, datetime.now(UTC))

    # health ------------------------------------------------------------------------------------

    async def readiness(self) -> tuple[bool, str]:
        if self.ready_reason:
            return False, self.ready_reason
        assert self.broker is not None
        if not self.broker.config.connection_state.connection.is_connected:
            return False, "NATS not connected"
        try:
            await asyncio.wait_for(self._run(self.store.ping), timeout=2.0)
        except Exception as exc:
            return False, f"store unreachable: {exc}"
        if self.consumer_pending > self.settings.ready_max_pending:
            return False, f"consumer lag {self.consumer_pending} above {self.settings.ready_max_pending}"
        return True, "ready"

    async def status(self) -> dict[str, Any]:
        counts = await self._run(self.store.counts)
        backlog = await self._run(self.store.statement_backlog)
        oldest = backlog.oldest_unsettled
        return {
            "alerts": counts,
            "statements": {
                "pending": backlog.unsettled,
                "oldest_pending": None if oldest is None else oldest.isoformat(),
                "waiting": backlog.waiting,
            },
            "consumer_pending": self.consumer_pending,
            "in_flight": len(self._settling),
            "ready_reason": self.ready_reason or "ready",
        }


def build_asgi(settings: NotifierSettings, service: NotifierService, broker: NatsBroker) -> AsgiFastStream:
    """The FastStream app: NATS lifecycle plus ``/metrics``, ``/healthz``, ``/readyz``, ``/status``."""

    @get
    async def status(scope: Scope) -> AsgiResponse:
        return json_response(await service.status())

    async def after_startup() -> None:
        await service.start(broker)
        log.info("notifier ready", http=f"http://{settings.http_host}:{settings.http_port}")

    async def on_shutdown() -> None:
        await service.stop_consuming()

    async def after_shutdown() -> None:
        await service.close()

    return AsgiFastStream(
        broker,
        asgi_routes=[*operations_routes(service.metrics.registry, service.readiness), ("/status", status)],
        after_startup=[after_startup],
        on_shutdown=[on_shutdown],
        after_shutdown=[after_shutdown],
    )
