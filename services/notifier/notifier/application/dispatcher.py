"""The notifier's core: turn ledger events into alerts and send each exactly once.

1. :meth:`Dispatcher.ingest` records an event in the store, in one transaction: a
   registration fills the directory and releases the events that waited for it; an event
   for a known introducer gets one alert per usable channel (``pending``, or ``queued`` for
   the daily digest); an event for an unknown introducer waits in the store. It returns
   the alerts to send now. Re-ingesting an event (redelivery, re-publication with the same
   id) changes nothing and returns only what is still unsettled.
2. :meth:`Dispatcher.deliver` sends one alert: bounded attempts with exponential back-off
   and jitter, a bounded pool of concurrent sends per channel (the back-off waits hold no
   slot), the store recording ``sent`` only once the far end accepted it. After the last
   attempt the alert is recorded ``failed`` and published to ``notifier.failed``.
3. :meth:`Dispatcher.run_digests` gathers yesterday's queued alerts into one digest per
   introducer and channel and delivers it the same way (called by a periodic task with the
   clock's time).

The consumer acks a message only once every alert it caused is settled: sent, failed and
published, queued for a digest, or waiting for its introducer's registration.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import structlog
from pydantic import ValidationError

from notifier.application.ports import (
    AlertRecord,
    AlertStore,
    Clock,
    Delivery,
    FailureNotice,
    FailurePublisher,
    Observer,
    Sender,
    SendFailure,
)
from notifier.application.render import DigestItem, Renderer
from notifier.domain.backoff import RetryPolicy
from notifier.domain.events import (
    AlertKey,
    Channel,
    CommissionEvent,
    DonationCredited,
    Introducer,
    LedgerEnvelope,
    parse_payload,
)
from notifier.domain.routing import channels_for, recipient_of

__all__ = ["MAX_DIGEST_ITEMS", "DigestPolicy", "Dispatcher", "SerialRunner", "failure_msg_id"]

T = TypeVar("T")
MAX_DIGEST_ITEMS = 500
MAX_DIGEST_PARTS = 100
MAX_CLAIM = 10_000

log = structlog.get_logger("notifier.dispatcher")


class SerialRunner:
    """Runs blocking store calls one at a time on a dedicated thread."""

    def __init__(self, name: str = "notifier-store") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


Runner = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class DigestPolicy:
    """Who gets a daily digest instead of one message per event, and when it is sent."""

    mode: Literal["off", "daily"]
    introducers: frozenset[str]
    hour: int
    zone: ZoneInfo

    def applies(self, introducer_id: str) -> bool:
        return self.mode == "daily" or introducer_id in self.introducers

    @property
    def enabled(self) -> bool:
        return self.mode == "daily" or bool(self.introducers)

    def local_day(self, now: datetime) -> date:
        assert now.tzinfo is not None, "the clock must be timezone-aware"
        return now.astimezone(self.zone).date()

    def last_due_day(self, now: datetime) -> date:
        """The latest day whose digest is due at ``now``: day D is sent on D + 1 at ``hour``."""
        local = now.astimezone(self.zone)
        return local.date() - timedelta(days=1 if local.hour >= self.hour else 2)


def failure_msg_id(key: AlertKey, failures: int) -> str:
    """``Nats-Msg-Id`` of a failure notice: one per alert, channel and failed round."""
    return f"{key.alert_id}#{key.channel}#failed-{failures}"


class Dispatcher:
    """Routes ledger events to alerts and sends them (see the module docstring)."""

    def __init__(
        self,
        *,
        store: AlertStore,
        renderer: Renderer,
        senders: Mapping[Channel, Sender],
        publisher: FailurePublisher,
        observer: Observer,
        policy: RetryPolicy,
        digest: DigestPolicy,
        clock: Clock,
        run: Runner,
        send_concurrency: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        assert 1 <= send_concurrency <= 1000, send_concurrency
        self.store = store
        self.renderer = renderer
        self.senders = dict(senders)
        self.publisher = publisher
        self.observer = observer
        self.policy = policy
        self.digest = digest
        self.clock = clock
        self._run = run
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._slots = {channel: asyncio.Semaphore(send_concurrency) for channel in self.senders}
        self._inflight: dict[AlertKey, asyncio.Future[None]] = {}

    @property
    def enabled_channels(self) -> frozenset[Channel]:
        return frozenset(self.senders)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # ingest ------------------------------------------------------------------------------

    async def ingest(self, envelope: LedgerEnvelope) -> list[AlertKey]:
        """Record ``envelope``; return the alerts to send now (none are sent here)."""
        return list(await self._run(self._ingest_sync, envelope, self.clock()))

    def _ingest_sync(self, envelope: LedgerEnvelope, now: datetime) -> list[AlertKey]:
        store = self.store
        with store.transaction():
            known = store.event(envelope.id)
            if known is not None:
                work = store.open_alerts_of_event(envelope.id)
                if known.state == "directory":
                    work += store.open_alerts_of_recipient(str(envelope.data.get("introducer_id", "")))
                return sorted(set(work))
            try:
                payload = parse_payload(envelope.kind, envelope.data)
            except ValidationError as exc:
                store.add_event(envelope, None, "invalid", now)
                self.observer.event(envelope.kind, "invalid")
                log.error(
                    "event data does not validate; no alert",
                    event_id=envelope.id,
                    errors=exc.errors(include_url=False, include_context=False, include_input=False)[:5],
                )
                return []
            if isinstance(payload, Introducer):
                return self._register(envelope, payload, now)
            recipient = None if payload is None else recipient_of(envelope.kind, payload)
            if recipient is None:
                store.add_event(envelope, None, "ignored", now)
                self.observer.event(envelope.kind, "ignored")
                return []
            introducer = store.introducer(recipient)
            if introducer is None:
                store.add_event(envelope, recipient, "waiting", now)
                self.observer.event(envelope.kind, "waiting")
                log.info(
                    "introducer not registered yet; event kept", event_id=envelope.id, introducer=recipient
                )
                return []
            store.add_event(envelope, recipient, "routed", now)
            return self._route(envelope, introducer, now)

    def _register(self, envelope: LedgerEnvelope, introducer: Introducer, now: datetime) -> list[AlertKey]:
        store = self.store
        store.add_event(envelope, None, "directory", now)
        self.observer.event(envelope.kind, "directory")
        if not store.add_introducer(introducer, envelope.id, now):
            log.warning(
                "introducer registered again; the first registration stands",
                introducer=introducer.introducer_id,
                event_id=envelope.id,
            )
        current = store.introducer(introducer.introducer_id)
        assert current is not None
        released = store.waiting_events(current.introducer_id)
        for waiting in released:
            self._route(waiting, current, now)
        if released:
            log.info(
                "events released by a registration", introducer=current.introducer_id, events=len(released)
            )
        return store.open_alerts_of_recipient(current.introducer_id)

    def _route(self, envelope: LedgerEnvelope, introducer: Introducer, now: datetime) -> list[AlertKey]:
        channels = channels_for(introducer, self.enabled_channels)
        if not channels:
            self.store.set_event_state(envelope.id, "no_channel")
            self.observer.event(envelope.kind, "no_channel")
            return []
        self.store.set_event_state(envelope.id, "routed")
        self.observer.event(envelope.kind, "routed")
        digest = self.digest.applies(introducer.introducer_id)
        work: list[AlertKey] = []
        for channel in channels:
            key = AlertKey(envelope.id, channel)
            if digest:
                self.store.add_alert(key, introducer.introducer_id, "queued", self.digest.local_day(now), now)
            elif self.store.add_alert(key, introducer.introducer_id, "pending", None, now):
                work.append(key)
        return work

    # deliver -----------------------------------------------------------------------------

    async def deliver_all(self, keys: Iterable[AlertKey], *, resend: bool = False) -> None:
        """Deliver every alert concurrently; raise if any could not be settled (store or
        ``notifier.failed`` unreachable); a send failure is settled, not raised."""
        results = await asyncio.gather(
            *(self.deliver(k, resend=resend) for k in keys), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def deliver(self, key: AlertKey, *, resend: bool = False) -> None:
        """Send ``key`` unless it is settled; one delivery per key at a time in this process."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._deliver_now(key, resend))
            self._inflight[key] = task
            task.add_done_callback(partial(self._forget, key))
        await asyncio.shield(task)

    def _forget(self, key: AlertKey, task: asyncio.Future[None]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled() and task.exception() is not None:
            log.debug("delivery unsettled", alert=str(key), error=str(task.exception()))

    async def cancel_inflight(self) -> None:
        """On shutdown: stop sending; unsettled alerts stay in the store (their messages
        are not acked, so JetStream redelivers them)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver_now(self, key: AlertKey, resend: bool) -> None:
        record = await self._run(self.store.alert, key)
        if record is None:
            log.warning("no such alert", alert=str(key))
            return
        if record.status == "sent":
            self.observer.duplicate(key.channel)
            log.info("already sent; nothing to do", alert=str(key))
            return
        if record.status == "failed":
            if not record.failure_published:
                await self._publish_failure(record)
            return
        if record.status != ("resending" if resend else "pending"):
            return  # queued for a digest, part of one, or claimed by resend-failed
        try:
            delivery = await self._run(self._prepare_sync, record)
        except Exception as exc:  # a template or stored-data defect: retrying cannot help
            log.exception("alert cannot be rendered", alert=str(key))
            await self._fail(record, record.attempts, SendFailure("render", repr(exc)[:300], permanent=True))
            return
        attempts, failure = await self._attempt_round(record, delivery)
        total = record.attempts + attempts
        if failure is None:
            await self._run(self.store.record_sent, key, total, self.clock())
            self.observer.sent(key.channel)
            log.info("alert sent", alert=str(key), introducer=record.recipient, attempts=total)
        else:
            await self._fail(record, total, failure)

    async def _attempt_round(self, record: AlertRecord, delivery: Delivery) -> tuple[int, SendFailure | None]:
        """Up to ``max_attempts`` sends with back-off; (attempts made, last failure or None)."""
        channel = record.key.channel
        sender = self.senders.get(channel)
        if sender is None:
            return 0, SendFailure("channel_disabled", channel, permanent=True)
        for attempt in range(1, self.policy.max_attempts + 1):
            try:
                async with self._slots[channel]:
                    started = time.perf_counter()
                    try:
                        await sender.send(delivery)
                    finally:
                        self.observer.send_seconds(channel, time.perf_counter() - started)
                return attempt, None
            except SendFailure as exc:
                failure = exc
            except Exception as exc:  # an adapter defect: counted as a transient failure
                failure = SendFailure("error", repr(exc)[:300])
            log.warning(
                "send attempt failed",
                alert=str(record.key),
                introducer=record.recipient,
                attempt=attempt,
                of=self.policy.max_attempts,
                reason=failure.reason,
                detail=failure.detail,
                permanent=failure.permanent,
            )
            if failure.permanent or attempt == self.policy.max_attempts:
                return attempt, failure
            self.observer.retried(channel)
            await self._sleep(self.policy.delay(attempt, self._rng.random()))
        raise AssertionError("unreachable: the last attempt returns")

    async def _fail(self, record: AlertRecord, attempts: int, failure: SendFailure) -> None:
        failures = await self._run(
            self.store.record_failed, record.key, attempts, failure.reason, failure.detail, self.clock()
        )
        self.observer.failed(record.key.channel, failure.reason)
        log.error(
            "alert failed after its attempts",
            alert=str(record.key),
            introducer=record.recipient,
            attempts=attempts,
            reason=failure.reason,
        )
        updated = await self._run(self.store.alert, record.key)
        assert updated is not None and updated.failures == failures, (updated, failures)
        await self._publish_failure(updated)

    async def _publish_failure(self, record: AlertRecord) -> None:
        notice = FailureNotice(
            event_id=record.key.alert_id,
            channel=record.key.channel,
            introducer_id=record.recipient,
            reason=record.last_reason or "unknown",
            detail=record.last_detail or "",
            attempts=record.attempts,
            failures=record.failures,
            failed_at=self.clock(),
        )
        await self.publisher.publish(notice, failure_msg_id(record.key, record.failures))
        await self._run(self.store.mark_failure_published, record.key)

    def _prepare_sync(self, record: AlertRecord) -> Delivery:
        store = self.store
        introducer = store.introducer(record.recipient)
        assert introducer is not None, record
        key = record.key
        if record.is_digest:
            assert record.queued_day is not None, record
            items: list[DigestItem] = []
            events: list[dict[str, Any]] = []
            for envelope in store.digest_items(key.alert_id, key.channel):
                payload = parse_payload(envelope.kind, envelope.data)
                assert isinstance(payload, CommissionEvent | DonationCredited), envelope.id
                items.append(DigestItem(envelope.id, envelope.kind, envelope.ledgerposition, payload))
                events.append(_about(envelope))
            rendered = self.renderer.render_digest(items, introducer, record.queued_day, key.alert_id)
            about: dict[str, Any] = {"kind": "digest", "day": record.queued_day.isoformat(), "events": events}
            return Delivery(key, introducer, rendered, about)
        stored = store.event(key.alert_id)
        assert stored is not None, record
        payload = parse_payload(stored.envelope.kind, stored.envelope.data)
        assert isinstance(payload, CommissionEvent | DonationCredited), key
        rendered = self.renderer.render_event(
            stored.envelope.kind, payload, introducer, stored.envelope.id, stored.envelope.ledgerposition
        )
        return Delivery(key, introducer, rendered, _about(stored.envelope))

    # digests -----------------------------------------------------------------------------

    async def run_digests(self, now: datetime | None = None) -> int:
        """Build the digests due at ``now`` (default: the clock) and deliver every digest
        not yet settled. Returns how many digests were delivered or attempted."""
        keys: list[AlertKey] = await self._run(self._plan_digests_sync, now or self.clock())
        await self.deliver_all(keys)
        return len(keys)

    def _plan_digests_sync(self, now: datetime) -> list[AlertKey]:
        store = self.store
        with store.transaction():
            for recipient, channel, day in store.queued_groups(self.digest.last_due_day(now)):
                for part in range(1, MAX_DIGEST_PARTS + 1):
                    digest_id = f"digest:{day.isoformat()}:{recipient}" + (f":{part}" if part > 1 else "")
                    if store.alert(AlertKey(digest_id, channel)) is not None:
                        continue
                    taken = store.make_digest(
                        recipient=recipient,
                        channel=channel,
                        day=day,
                        digest_id=digest_id,
                        limit=MAX_DIGEST_ITEMS,
                        at=now,
                    )
                    if taken < MAX_DIGEST_ITEMS:
                        break
            return store.pending_digests()

    # operator ----------------------------------------------------------------------------

    async def resend_failed(
        self, *, alert_id: str | None = None, channel: Channel | None = None, limit: int = 1000
    ) -> dict[str, int]:
        """Claim failed alerts (and claims older than an hour, from a crashed run) and send
        them again, each with a fresh round of attempts."""
        assert 1 <= limit <= MAX_CLAIM, limit
        now = self.clock()
        keys: list[AlertKey] = await self._run(
            self.store.claim_failed, now, now - timedelta(hours=1), alert_id, channel, limit
        )
        await self.deliver_all(keys, resend=True)
        sent = 0
        for key in keys:
            record = await self._run(self.store.alert, key)
            sent += record is not None and record.status == "sent"
        return {"claimed": len(keys), "sent": sent, "failed": len(keys) - sent}


def _about(envelope: LedgerEnvelope) -> dict[str, Any]:
    return {
        "id": envelope.id,
        "kind": envelope.kind,
        "type": envelope.type,
        "ledger_position": envelope.ledgerposition,
        "data": envelope.data,
    }
