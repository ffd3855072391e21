"""What the notifier's use cases need from the outside world (implemented in adapters)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from notifier.application.render import Rendered
from notifier.domain.events import AlertKey, Channel, LedgerEnvelope, Party, PartyKind, party_of_key

__all__ = [
    "Accepted",
    "AcceptedAlert",
    "AlertRecord",
    "AlertStatus",
    "AlertStore",
    "Attachment",
    "AttachmentFetcher",
    "Clock",
    "Delivery",
    "Erasure",
    "EventState",
    "FailureNotice",
    "FailurePublisher",
    "Observer",
    "Runner",
    "SendFailure",
    "Sender",
    "SentJournal",
    "StatementBacklog",
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
#: routed: has alerts; waiting: its party is not in the directory yet; ignored: tells
#: nobody; no_channel: its party has no usable channel; directory: a registration;
#: invalid: a relevant kind whose data did not validate; erasure: a ``party.erased``
#: (applied); erased: for a party erased before (dropped, its data not kept).
EventState = Literal[
    "routed", "waiting", "ignored", "no_channel", "directory", "invalid", "erasure", "erased"
]


class SendFailure(Exception):
    """One attempt failed. ``reason`` is a short, bounded code (a metric label);
    ``permanent`` failures are not retried (e.g. a mailbox refused with 5xx, HTTP 4xx)."""

    def __init__(self, reason: str, detail: str, *, permanent: bool = False) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail[:500]
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file an e-mail carries, fetched at send time from ``url`` (a link the ledger
    published, valid until ``expires``); ``content`` once fetched."""

    filename: str
    url: str
    expires: datetime | None = None
    content_type: str = "application/pdf"
    content: bytes | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One alert to one party on one channel, rendered."""

    key: AlertKey
    party: Party
    rendered: Rendered
    #: what the alert is about: the ledger event (``kind``, ``ledger_position``, ``data``)
    #: or the digest's events; the webhook body carries it as is.
    about: dict[str, Any]
    #: files to attach (e-mail only: a statement's PDF); fetched before each attempt that
    #: does not have them yet.
    attachments: tuple[Attachment, ...] = ()

    @property
    def fetched(self) -> bool:
        return all(a.content is not None for a in self.attachments)


class AttachmentFetcher(Protocol):
    """Fetches an attachment from a link the ledger published. Raises :class:`SendFailure`
    (``permanent`` for a refused URL or a 4xx other than 408/425/429): a failure of the
    attempt, retried with the channel's back-off."""

    async def fetch(self, url: str) -> bytes: ...

    async def close(self) -> None: ...


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
    """What goes to ``notifier.failed`` after the last attempt. ``introducer_id`` is the
    party's id when it is an introducer (as before clients and advisers were told
    anything), None otherwise; ``party_kind`` and ``party_id`` say who, always."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str
    channel: Channel
    introducer_id: str | None
    party_kind: PartyKind
    party_id: str
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

    def statement_sent(self, party_kind: PartyKind, channel: Channel) -> None: ...

    def statement_failed(self, party_kind: PartyKind, channel: Channel) -> None: ...


@dataclass(frozen=True, slots=True)
class StatementBacklog:
    """Statements not delivered yet, per party kind: alerts not sent (``pending``,
    ``resending`` or ``failed``), the oldest one's creation, and statements waiting for
    their party's registration."""

    unsettled: dict[PartyKind, int]
    oldest_unsettled: datetime | None
    waiting: dict[PartyKind, int]


@dataclass(frozen=True, slots=True)
class Erasure:
    """What erasing a party deleted: its events and alerts (of which ``unsent`` were not
    sent yet: cancelled), and whether its directory entry became a tombstone now (False
    when it was one already)."""

    events: int
    alerts: int
    unsent: int
    tombstoned: bool


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
    #: the kind of the ledger event the alert is about (None for a digest)
    kind: str | None = None

    @property
    def party(self) -> tuple[PartyKind, str]:
        """``(kind, id)`` of the party told."""
        return party_of_key(self.recipient)


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

    def party(self, key: str) -> Party | None:
        """The directory entry of ``key`` (:func:`notifier.domain.events.party_key`)."""
        ...

    def add_party(self, party: Party, event_id: str, at: datetime) -> bool:
        """Add a directory entry; False (nothing changed) when the party is there already
        (a tombstone included)."""
        ...

    # erasure
    def party_erased(self, key: str) -> bool:
        """Whether ``key``'s directory entry is a tombstone (:meth:`party` is None then)."""
        ...

    def erase_party(self, kind: PartyKind, party_id: str, at: datetime) -> Erasure:
        """Make the party's directory entry a tombstone (kind, id, when erased; its name,
        e-mail, webhook URL and language gone; a tombstone alone when it had no entry) and
        delete every event and alert whose recipient it is (but the events recorded
        ``erasure`` or ``erased``)."""
        ...

    def redact_mentions(self, needles: Sequence[str], redact: Callable[[Any], Any]) -> int:
        """Rewrite with ``redact`` the data of every stored event, and the failure detail of
        every alert, that holds one of ``needles`` (in any case); return how many changed."""
        ...

    def shred(self) -> None:
        """Make what was deleted or rewritten unrecoverable from the store's files (outside
        a transaction); raise when that cannot be done now (the caller tries again)."""
        ...

    # alerts
    def add_alert(
        self, key: AlertKey, recipient: str, status: AlertStatus, queued_day: date | None, at: datetime
    ) -> bool: ...

    def alert(self, key: AlertKey) -> AlertRecord | None: ...

    def open_alerts_of_event(self, event_id: str) -> list[AlertKey]: ...

    def open_alerts_of_recipient(self, recipient: str) -> list[AlertKey]: ...

    def record_sent(self, key: AlertKey, attempts: int, at: datetime) -> bool: ...

    def record_failed(self, key: AlertKey, attempts: int, reason: str, detail: str, at: datetime) -> int:
        """Record a failed round; the alert's failures so far (0: no such alert, erased)."""
        ...

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

    def statement_backlog(self) -> StatementBacklog: ...
