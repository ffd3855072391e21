"""Delivery: send one alert, exactly once per (alert id, channel).

Bounded attempts with exponential back-off and jitter, a bounded pool of concurrent sends
per channel (the back-off waits hold no slot). The alert is rendered before the first
attempt (on its own thread, not the store's). "Sent" is recorded the instant the far end
accepts: the sender calls back at the SMTP 250 / HTTP 2xx and the callback appends to the
sent journal on the spot (microseconds, no store, no lock), then the store records ``sent``
(the message is acked only after that). After the last attempt the alert is recorded
``failed`` and a notice is published to ``notifier.failed``. One delivery per alert at a
time in a process.

An e-mail that carries an attachment (a statement's PDF) fetches it at each attempt that
does not have it yet, before taking a sending slot: a fetch that fails is that attempt's
failure (retried with the back-off, or permanent: a refused link, a 4xx other than
408/425/429, a link past its expiry). Once fetched, the file is kept for the round's
later attempts.

An alert whose party is erased while it is being delivered (its row deleted) is dropped at
the next step that reads the store (before rendering, before each retry): nothing more is
sent, nothing is recorded, no failure notice goes out. An attempt already under way cannot
be called back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial

import structlog

from notifier.application.compose import AlertWithdrawn, load_content, render_delivery
from notifier.application.ports import (
    AcceptedAlert,
    AlertRecord,
    AlertStore,
    AttachmentFetcher,
    Clock,
    Delivery,
    FailureNotice,
    FailurePublisher,
    Observer,
    Runner,
    Sender,
    SendFailure,
    SentJournal,
)
from notifier.application.render import Renderer
from notifier.domain.backoff import RetryPolicy
from notifier.domain.events import AlertKey, Channel
from notifier.domain.statements import STATEMENT_KIND

__all__ = ["Deliverer", "failure_msg_id", "record_accepted"]

log = structlog.get_logger("notifier.delivery")


def failure_msg_id(key: AlertKey, failures: int) -> str:
    """``Nats-Msg-Id`` of a failure notice: one per alert, channel and failed round."""
    return f"{key.alert_id}#{key.channel}#failed-{failures}"


def record_accepted(store: AlertStore, alerts: list[AcceptedAlert]) -> int:
    """Record ``sent`` for alerts a far end accepted (the sent journal of a process that
    stopped before its store record); returns how many were not recorded yet."""
    with store.transaction():
        return sum(store.record_sent(a.key, a.attempts, a.at) for a in alerts)


class _Acceptance:
    """What a sender calls the instant the far end accepted: the journal entry, written at
    once (nothing is awaited between the acceptance and this call)."""

    def __init__(self, journal: SentJournal, clock: Clock, key: AlertKey, attempts: int) -> None:
        self.journal = journal
        self.clock = clock
        self.key = key
        self.attempts = attempts
        self.alert: AcceptedAlert | None = None

    def __call__(self) -> None:
        self.record()

    def record(self) -> AcceptedAlert:
        if self.alert is None:
            self.alert = AcceptedAlert(self.key, self.attempts, self.clock())
            self.journal.accepted(self.alert)
        return self.alert


class Deliverer:
    """Sends alerts and settles them (see the module docstring)."""

    def __init__(
        self,
        *,
        store: AlertStore,
        renderer: Renderer,
        senders: Mapping[Channel, Sender],
        publisher: FailurePublisher,
        journal: SentJournal,
        observer: Observer,
        policy: RetryPolicy,
        clock: Clock,
        run: Runner,
        render: Runner,
        send_concurrency: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        fetcher: AttachmentFetcher | None = None,
    ) -> None:
        assert 1 <= send_concurrency <= 1000, send_concurrency
        self.store = store
        self.renderer = renderer
        self.senders = dict(senders)
        self.publisher = publisher
        self.journal = journal
        self.observer = observer
        self.policy = policy
        self.clock = clock
        self._run = run
        self._render = render
        self._sleep = sleep
        self._fetcher = fetcher
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._slots = {channel: asyncio.Semaphore(send_concurrency) for channel in self.senders}
        self._inflight: dict[AlertKey, asyncio.Future[None]] = {}

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
        earlier = self.journal.unsettled(key)
        if earlier is not None:  # accepted before, but the store's record failed: not again
            await self._record_sent(record, earlier)
            return
        delivery = await self._compose(record)
        if delivery is None:
            return
        accepted, attempts, failure = await self._attempt_round(record, delivery)
        if accepted is not None:
            await self._record_sent(record, accepted)
        elif failure is None:
            log.info("alert withdrawn (its party was erased); no more attempts", alert=str(key))
        else:
            await self._fail(record, record.attempts + attempts, failure)

    async def _compose(self, record: AlertRecord) -> Delivery | None:
        """The alert, read and rendered; None when it is withdrawn (its party erased) or
        cannot be rendered (then recorded failed)."""
        try:
            content = await self._run(load_content, self.store, record)
            return await self._render(render_delivery, self.renderer, content)
        except AlertWithdrawn:
            log.info("alert withdrawn (its party was erased); not sent", alert=str(record.key))
            return None
        except Exception as exc:  # a template or stored-data defect: retrying cannot help
            log.exception("alert cannot be rendered", alert=str(record.key))
            await self._fail(record, record.attempts, SendFailure("render", repr(exc)[:300], permanent=True))
            return None

    async def _record_sent(self, record: AlertRecord, accepted: AcceptedAlert) -> None:
        """The store's ``sent`` record (the journal has it already); then the journal's entry
        may go."""
        await self._run(self.store.record_sent, record.key, accepted.attempts, accepted.at)
        self.journal.settled(record.key)
        self.observer.sent(record.key.channel)
        if record.kind == STATEMENT_KIND:
            self.observer.statement_sent(record.party[0], record.key.channel)
        log.info("alert sent", alert=str(record.key), party=record.recipient, attempts=accepted.attempts)

    async def _attempt_round(
        self, record: AlertRecord, delivery: Delivery
    ) -> tuple[AcceptedAlert | None, int, SendFailure | None]:
        """Up to ``max_attempts`` sends with back-off: (the acceptance, or None; attempts
        made; the last failure, or None). Neither an acceptance nor a failure: the alert was
        withdrawn (deleted by an erasure) during a back-off."""
        channel = record.key.channel
        sender = self.senders.get(channel)
        if sender is None:
            return None, 0, SendFailure("channel_disabled", channel, permanent=True)
        for attempt in range(1, self.policy.max_attempts + 1):
            on_accepted = _Acceptance(self.journal, self.clock, record.key, record.attempts + attempt)
            try:
                delivery = await self._with_attachments(delivery)
                async with self._slots[channel]:
                    started = time.perf_counter()
                    try:
                        await sender.send(delivery, on_accepted)
                    finally:
                        self.observer.send_seconds(channel, time.perf_counter() - started)
                return on_accepted.record(), attempt, None  # returned: accepted, said so or not
            except SendFailure as exc:
                failure = exc
            except Exception as exc:  # an adapter defect: counted as a transient failure
                failure = SendFailure("error", repr(exc)[:300])
            if on_accepted.alert is not None:  # the far end has it: what failed after does not matter
                log.warning("error after the far end accepted", alert=str(record.key), error=str(failure))
                return on_accepted.alert, attempt, None
            log.warning(
                "send attempt failed",
                alert=str(record.key),
                party=record.recipient,
                attempt=attempt,
                of=self.policy.max_attempts,
                reason=failure.reason,
                detail=failure.detail,
                permanent=failure.permanent,
            )
            if failure.permanent or attempt == self.policy.max_attempts:
                return None, attempt, failure
            self.observer.retried(channel)
            await self._sleep(self.policy.delay(attempt, self._rng.random()))
            if await self._run(self.store.alert, record.key) is None:
                return None, attempt, None
        raise AssertionError("unreachable: the last attempt returns")

    async def _with_attachments(self, delivery: Delivery) -> Delivery:
        """``delivery`` with every attachment fetched (those fetched before are kept)."""
        if delivery.fetched:
            return delivery
        now = self.clock()
        attachments = []
        for attachment in delivery.attachments:
            if attachment.content is None:
                if attachment.expires is not None and now >= attachment.expires:
                    raise SendFailure(
                        "link_expired",
                        f"{attachment.filename}: the link expired at {attachment.expires.isoformat()}",
                        permanent=True,
                    )
                if self._fetcher is None:
                    raise SendFailure("attachment", "no attachment fetcher configured", permanent=True)
                content = await self._fetcher.fetch(attachment.url)
                attachment = dataclasses.replace(attachment, content=content)  # noqa: PLW2901
            attachments.append(attachment)
        return dataclasses.replace(delivery, attachments=tuple(attachments))

    async def _fail(self, record: AlertRecord, attempts: int, failure: SendFailure) -> None:
        failures = await self._run(
            self.store.record_failed, record.key, attempts, failure.reason, failure.detail, self.clock()
        )
        if not failures:  # the alert is gone (its party erased): nobody to tell about it
            log.info("alert withdrawn (its party was erased); failure not recorded", alert=str(record.key))
            return
        self.observer.failed(record.key.channel, failure.reason)
        if record.kind == STATEMENT_KIND:
            self.observer.statement_failed(record.party[0], record.key.channel)
        log.error(
            "alert failed after its attempts",
            alert=str(record.key),
            party=record.recipient,
            attempts=attempts,
            reason=failure.reason,
        )
        updated = await self._run(self.store.alert, record.key)
        if updated is None:  # deleted by an erasure since: nobody to tell about it
            return
        assert updated.failures == failures, (updated, failures)
        await self._publish_failure(updated)

    async def _publish_failure(self, record: AlertRecord) -> None:
        party_kind, party_id = record.party
        notice = FailureNotice(
            event_id=record.key.alert_id,
            channel=record.key.channel,
            introducer_id=party_id if party_kind == "introducer" else None,
            party_kind=party_kind,
            party_id=party_id,
            reason=record.last_reason or "unknown",
            detail=record.last_detail or "",
            attempts=record.attempts,
            failures=record.failures,
            failed_at=self.clock(),
        )
        await self.publisher.publish(notice, failure_msg_id(record.key, record.failures))
        await self._run(self.store.mark_failure_published, record.key)
