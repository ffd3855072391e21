"""The ledger's outbound events as the notifier reads them (pydantic models).

Only the fields the notifier uses are declared; unknown fields are ignored so that the
ledger may add fields without breaking the notifier (its own models forbid them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from notifier.domain.statements import STATEMENT_KIND, StatementIssued
from notifier.domain.values import Channel, Id, InModel, Language, Money, PartyKind

__all__ = [
    "ALERT_KINDS",
    "COOPERATIVE",
    "DIGESTIBLE_KINDS",
    "ERASURE_KIND",
    "KIND_PREFIX",
    "KNOWN_KINDS",
    "MAX_EVENT_BYTES",
    "MAX_STATEMENT_BYTES",
    "PARTY_KINDS",
    "PAYOUT_KIND",
    "REGISTRATION_KINDS",
    "AdviserRegistered",
    "AlertKey",
    "AlertPayload",
    "Balance",
    "Channel",
    "ClientRegistered",
    "CommissionEvent",
    "DonationCredited",
    "Introducer",
    "Language",
    "LedgerEnvelope",
    "OtherCause",
    "Party",
    "PartyErased",
    "PartyKind",
    "Payload",
    "PayoutRecorded",
    "Registration",
    "VoidCause",
    "parse_payload",
    "party_key",
    "party_of_key",
]

COOPERATIVE = "cooperative"
KIND_PREFIX = "coop.ledger.out."
#: The largest ledger event read, but for a statement (a party's month, which may list many
#: lines): larger messages are logged and skipped.
MAX_EVENT_BYTES = 64 * 1024
#: The largest ``statement.issued`` read (NATS's default maximum payload).
MAX_STATEMENT_BYTES = 1024 * 1024
COMMISSION_KINDS = frozenset({"commission.accrued", "commission.adjusted", "commission.payable"})
PAYOUT_KIND = "payout.recorded"
#: Events that alert an introducer about a commission, a donation or a payout.
ALERT_KINDS = COMMISSION_KINDS | {"donation.credited", PAYOUT_KIND}
#: Events a daily digest may gather (statements never are: each is sent as it comes).
DIGESTIBLE_KINDS = ALERT_KINDS
REGISTRATION_KINDS = frozenset({"introducer.registered", "client.registered", "adviser.registered"})
#: The ledger erased a party's personal data (right to erasure): the notifier forgets it too.
ERASURE_KIND = "party.erased"
PARTY_KINDS: tuple[PartyKind, ...] = ("introducer", "client", "adviser")
#: Kinds the ledger publishes (a bounded set, used as a metric label; others count as "other").
KNOWN_KINDS = (
    ALERT_KINDS
    | REGISTRATION_KINDS
    | {
        STATEMENT_KIND,
        ERASURE_KIND,
        "rebate.owed",
        "rebate.passed_through",
        "fact.voided",
        "period.closed",
        "audit.checkpoint",
    }
)

_In = InModel


class LedgerEnvelope(_In):
    """A CloudEvent from ``ledger.out.<kind>``."""

    specversion: Literal["1.0"]
    id: Id
    source: str = Field(max_length=256)
    type: str = Field(pattern=r"^coop\.ledger\.out\.[a-z_.]+\.v[0-9]+$", max_length=128)
    ledgerposition: int = Field(ge=0)
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        """``commission.accrued`` for type ``coop.ledger.out.commission.accrued.v1``."""
        return self.type.removeprefix(KIND_PREFIX).rsplit(".v", 1)[0]


def party_key(kind: PartyKind, party_id: str) -> str:
    """The directory key (the recipient of an alert): an introducer's id as is (as before
    clients and advisers had a directory), ``client/<id>`` and ``adviser/<id>`` otherwise.
    Ledger ids never hold ``/``, so no two parties share a key."""
    return party_id if kind == "introducer" else f"{kind}/{party_id}"


def party_of_key(key: str) -> tuple[PartyKind, str]:
    """``(kind, id)`` of a directory key (the inverse of :func:`party_key`)."""
    kind, sep, party_id = key.partition("/")
    if sep and kind == "client":
        return "client", party_id
    if sep and kind == "adviser":
        return "adviser", party_id
    return "introducer", key


class Party(_In):
    """A directory entry: someone the notifier can tell something, with how to reach them."""

    kind: PartyKind
    party_id: Id
    display_name: str = Field(min_length=1, max_length=256)
    email: str | None = Field(default=None, max_length=320)
    webhook_url: str | None = Field(default=None, max_length=2048)
    language: Language = "fr"

    @property
    def key(self) -> str:
        return party_key(self.kind, self.party_id)


class _Contact(_In):
    display_name: str = Field(min_length=1, max_length=256)
    email: str | None = Field(default=None, max_length=320)
    webhook_url: str | None = Field(default=None, max_length=2048)
    language: Language = "fr"

    def _party(self, kind: PartyKind, party_id: str) -> Party:
        return Party(
            kind=kind,
            party_id=party_id,
            display_name=self.display_name,
            email=self.email,
            webhook_url=self.webhook_url,
            language=self.language,
        )


class Introducer(_Contact):
    """``introducer.registered``: an introducer's contact details."""

    introducer_id: Id

    def party(self) -> Party:
        return self._party("introducer", self.introducer_id)


class ClientRegistered(_Contact):
    """``client.registered``: a client's contact details (for its monthly statements)."""

    client_id: Id

    def party(self) -> Party:
        return self._party("client", self.client_id)


class AdviserRegistered(_Contact):
    """``adviser.registered``: an adviser's contact details (for its monthly statements)."""

    adviser_id: Id

    def party(self) -> Party:
        return self._party("adviser", self.adviser_id)


Registration = Introducer | ClientRegistered | AdviserRegistered


class PartyErased(_In):
    """``party.erased`` (id ``<position>:party.erased:<party_type>/<party_id>``): the ledger
    erased the personal data of a party (right to erasure, crypto-shredding on its side).
    The notifier keeps only a tombstone of its directory entry and purges what it holds of
    it. (The ledger also sends ``position``, its log position; the envelope has it.)"""

    party_type: PartyKind
    party_id: Id

    @property
    def key(self) -> str:
        return party_key(self.party_type, self.party_id)


class Balance(_In):
    """The beneficiary's running balance in the event's currency, after the event."""

    accrued: Money
    payable: Money
    paid: Money
    outstanding: Money


class VoidCause(_In):
    """The void (rules R8) that caused a commission or donation event: a fact recorded in
    error (``target_type`` ``target_id``) was taken back, for ``reason``."""

    kind: Literal["void"]
    void_id: Id
    target_type: str = Field(min_length=1, max_length=64)
    target_id: Id
    reason: str = Field(min_length=1, max_length=1000)


class OtherCause(_In):
    """A cause of a kind this notifier does not know yet: accepted, and not a correction."""

    kind: str = Field(max_length=64)


def _cause_tag(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "void" if kind == "void" else "other"


#: ``cause`` on an event: a void is validated in full (a malformed one makes the event
#: invalid), any other kind is kept as an :class:`OtherCause`.
Cause = Annotated[
    Annotated[VoidCause, Tag("void")] | Annotated[OtherCause, Tag("other")], Discriminator(_cause_tag)
]


class CommissionEvent(_In):
    """``commission.accrued`` / ``.adjusted`` / ``.payable``: a commission line after the change."""

    invoice_id: Id
    introduction_id: Id
    introducer_id: Id
    adviser_id: Id
    client_id: Id
    beneficiary_id: Id
    donor_id: Id | None = None
    rule: str = Field(max_length=64)
    year: int = Field(ge=1, le=1000)
    rate: Money
    window_start: date
    window_end: date
    invoice_date: date
    base: Money
    amount: Money
    payable: Money
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    delta: Money
    previous_amount: Money | None = None
    previous_beneficiary_id: Id | None = None
    previous_payable: Money | None = None
    balance: Balance
    cause: Cause | None = None


class DonationCredited(_In):
    """``donation.credited``: a commission credited to the cooperative, the introducer its donor."""

    donor_id: Id
    beneficiary_id: Id
    invoice_id: Id
    introduction_id: Id
    client_id: Id
    adviser_id: Id
    rate: Money
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    amount: Money
    cause: Cause | None = None


class PayoutRecorded(_In):
    """``payout.recorded``: money paid to a beneficiary (an introducer, or the cooperative),
    with the beneficiary's balance in that currency after it. Paid by the cooperative through
    a payout run's bank transfer that the bank booked (``run_id``, ``end_to_end_id``,
    ``bank_reference``; ``adviser_id`` is then ``cooperative``), or recorded by hand (an
    adviser paid; no run)."""

    payout_id: Id
    adviser_id: Id
    beneficiary_id: Id
    date: date
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    amount: Money
    run_id: Id | None = None
    end_to_end_id: Id | None = None
    bank_reference: str | None = Field(default=None, min_length=1, max_length=1000)
    balance: Balance

    @property
    def by_transfer(self) -> bool:
        """Made by the cooperative's payout run, through a transfer the bank booked."""
        return self.run_id is not None


#: The events that tell one introducer about its own money (one alert each, or a digest line).
AlertPayload = CommissionEvent | DonationCredited | PayoutRecorded
Payload = CommissionEvent | DonationCredited | PayoutRecorded | StatementIssued | Registration | PartyErased

#: The model of each kind read as is (a statement is read apart: the cooperative's is not).
_MODELS: dict[str, type[CommissionEvent | DonationCredited | PayoutRecorded | Registration | PartyErased]] = {
    **dict.fromkeys(COMMISSION_KINDS, CommissionEvent),
    "donation.credited": DonationCredited,
    PAYOUT_KIND: PayoutRecorded,
    "introducer.registered": Introducer,
    "client.registered": ClientRegistered,
    "adviser.registered": AdviserRegistered,
    ERASURE_KIND: PartyErased,
}


def parse_payload(kind: str, data: dict[str, Any]) -> Payload | None:
    """The typed payload of an event the notifier cares about; None for other kinds
    (``fact.voided``, rebates, closes, checkpoints: nobody is alerted by them) and for the
    cooperative's own statement (it reads it on the ledger).
    Raises ``pydantic.ValidationError`` when a relevant event is malformed."""
    if kind == STATEMENT_KIND:
        if data.get("party_kind") == COOPERATIVE:
            return None
        return StatementIssued.model_validate(data)
    model = _MODELS.get(kind)
    return None if model is None else model.model_validate(data)


@dataclass(frozen=True, slots=True, order=True)
class AlertKey:
    """What is sent at most once: one alert (a ledger event id, or a digest id) on one channel."""

    alert_id: str
    channel: Channel

    def __str__(self) -> str:
        return f"{self.alert_id}#{self.channel}"
