"""What the notifier's use cases need from the outside world (implemented in adapters)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from notifier.application.render import Rendered
from notifier.domain.events import AlertKey, Channel, Introducer, LedgerEnvelope

__all__ = [
    "Accepted",
    "AcceptedAlert",
    "AlertRecord",
    "AlertStatus",
    "AlertStore",
    "Clock",
    "Delivery",
    "EventState",
    "FailureNotice",
    "FailurePublisher",
    "Observer",
    "Runner",
    "SendFailure",
    "Sender",
    "SentJournal",
    "StoredEvent",
]

T = TypeVar("T")

Clock = Callable[[], datetime]


class Runner(Protocol):
    """Runs a blocking call (the store's) off the event loop and awaits its result."""

    async def __call__(self, fn: Callable[..., T], /, *args: Any) -> T: ...


#: pending: to send now; queued: waits for its daily digest; digested: part of a digest
#: (the digest's own record says whether it was sent); sent; failed (every attempt of a
#: round failed); resending: claimed by ``notifier resend-failed``.
AlertStatus = Literal["pending", "queued", "digested", "sent", "failed", "resending"]
#: routed: has alerts; waiting: its introducer is not in the directory yet; ignored: tells
#: nobody; no_channel: its introducer has no usable channel; directory: a registration;
#: invalid: a relevant kind whose data did not validate.
EventState = Literal["routed", "waiting", "ignored", "no_channel", "directory", "invalid"]


class SendFailure(Exception):
    """One attempt failed. ``reason`` is a short, bounded code (a metric label);
    ``permanent`` failures are not retried (e.g. a mailbox refused with 5xx, HTTP 4xx)."""

    def __init__(self, reason: str, detail: str, *, permanent: bool = False) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail[:500]
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Delivery:
    """One alert to one introducer on one channel, rendered."""

    key: AlertKey
    introducer: Introducer
    rendered: Rendered
    #: what the alert is about: the ledger event (``kind``, ``ledger_position``, ``data``)
    #: or the digest's events; the webhook body carries it as is.
    about: dict[str, Any]


#: Called by a sender the instant the far end accepted an alert (see :class:`Sender`).
Accepted = Callable[[], None]


class Sender(Protocol):
    """A channel. ``send`` calls ``accepted()`` the instant the far end accepted the alert
    (SMTP 250 after the message data, HTTP 2xx status line), before awaiting anything else,
    so that "sent" is recorded before any other work; it may then finish (SMTP QUIT, closing
    the connection) and return. Before acceptance it raises :class:`SendFailure`; after
    acceptance it never raises."""

    async def send(self, delivery: Delivery, accepted: Accepted) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AcceptedAlert:
    """A far end accepted ``key`` at ``at``, after ``attempts`` attempts in all."""

    key: AlertKey
    attempts: int
    at: datetime


class SentJournal(Protocol):
    """The record of "the far end accepted this alert" that is written first, on the event
    loop, within microseconds of the acceptance and without waiting for the store: once
    :meth:`accepted` returns, a crash of the process no longer loses it (the store's own
    ``sent`` record follows; at the next start the journal's entries are applied to the
    store). :meth:`settled` says the store has the record, so the entry may be dropped."""

    def accepted(self, alert: AcceptedAlert) -> None: ...

    def settled(self, key: AlertKey) -> None: ...

    def unsettled(self, key: AlertKey) -> AcceptedAlert | None:
        """The acceptance of ``key`` this process journaled and the store did not record
        (the store failed): record it, do not send again."""
        ...


class FailureNotice(BaseModel):
    """What goes to ``notifier.failed`` after the last attempt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str
    channel: Channel
    introducer_id: str
    reason: str
    detail: str
    attempts: int
    failures: int
    failed_at: datetime


class FailurePublisher(Protocol):
    async def publish(self, notice: FailureNotice, msg_id: str) -> None: ...


class Observer(Protocol):
    """Metrics hooks (Prometheus in production)."""

    def sent(self, channel: Channel) -> None: ...

    def failed(self, channel: Channel, reason: str) -> None: ...

    def retried(self, channel: Channel) -> None: ...

    def send_seconds(self, channel: Channel, seconds: float) -> None: ...

    def duplicate(self, channel: Channel) -> None: ...

    def event(self, kind: str, state: str) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredEvent:
    envelope: LedgerEnvelope
    recipient: str | None
    state: EventState


@dataclass(frozen=True, slots=True)
class AlertRecord:
    key: AlertKey
    recipient: str
    status: AlertStatus
    is_digest: bool
    queued_day: date | None
    attempts: int
    failures: int
    failure_published: bool
    last_reason: str | None
    last_detail: str | None


class AlertStore(Protocol):
    """The notifier's durable state. Synchronous; called from one thread at a time."""

    def transaction(self) -> AbstractContextManager[None]: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...

    # events and the directory
    def event(self, event_id: str) -> StoredEvent | None: ...

    def add_event(
        self, envelope: LedgerEnvelope, recipient: str | None, state: EventState, at: datetime
    ) -> None: ...

    def set_event_state(self, event_id: str, state: EventState) -> None: ...

    def waiting_events(self, recipient: str) -> Sequence[LedgerEnvelope]: ...

    def introducer(self, introducer_id: str) -> Introducer | None: ...

    def add_introducer(self, introducer: Introducer, event_id: str, at: datetime) -> bool: ...

    # alerts
    def add_alert(
        self, key: AlertKey, recipient: str, status: AlertStatus, queued_day: date | None, at: datetime
    ) -> bool: ...

    def alert(self, key: AlertKey) -> AlertRecord | None: ...

    def open_alerts_of_event(self, event_id: str) -> list[AlertKey]: ...

    def open_alerts_of_recipient(self, recipient: str) -> list[AlertKey]: ...

    def record_sent(self, key: AlertKey, attempts: int, at: datetime) -> bool: ...

    def record_failed(self, key: AlertKey, attempts: int, reason: str, detail: str, at: datetime) -> int: ...

    def mark_failure_published(self, key: AlertKey) -> None: ...

    def claim_failed(
        self, at: datetime, stale_before: datetime, alert_id: str | None, channel: Channel | None, limit: int
    ) -> list[AlertKey]: ...

    # digests
    def queued_groups(self, last_day: date) -> list[tuple[str, Channel, date]]: ...

    def make_digest(
        self, *, recipient: str, channel: Channel, day: date, digest_id: str, limit: int, at: datetime
    ) -> int: ...

    def digest_items(self, digest_id: str, channel: Channel) -> list[LedgerEnvelope]: ...

    def pending_digests(self) -> list[AlertKey]: ...

    def counts(self) -> dict[str, int]: ...
