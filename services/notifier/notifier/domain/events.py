"""The ledger's outbound events as the notifier reads them (pydantic models).

Only the fields the notifier uses are declared; unknown fields are ignored so that the
ledger may add fields without breaking the notifier (its own models forbid them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

__all__ = [
    "ALERT_KINDS",
    "COOPERATIVE",
    "KIND_PREFIX",
    "KNOWN_KINDS",
    "MAX_EVENT_BYTES",
    "AlertKey",
    "Balance",
    "Channel",
    "CommissionEvent",
    "DonationCredited",
    "Introducer",
    "Language",
    "LedgerEnvelope",
    "OtherCause",
    "Payload",
    "VoidCause",
    "parse_payload",
]

Language = Literal["fr", "en"]
Channel = Literal["email", "webhook"]
COOPERATIVE = "cooperative"
KIND_PREFIX = "coop.ledger.out."
MAX_EVENT_BYTES = 64 * 1024
COMMISSION_KINDS = frozenset({"commission.accrued", "commission.adjusted", "commission.payable"})
ALERT_KINDS = COMMISSION_KINDS | {"donation.credited"}
#: Kinds the ledger publishes (a bounded set, used as a metric label; others count as "other").
KNOWN_KINDS = ALERT_KINDS | {
    "introducer.registered",
    "rebate.owed",
    "rebate.passed_through",
    "fact.voided",
    "audit.checkpoint",
}

Money = Annotated[Decimal, Field(allow_inf_nan=False, max_digits=24)]
Id = Annotated[str, Field(min_length=1, max_length=256)]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


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


class Introducer(_In):
    """A directory entry, from ``introducer.registered``."""

    introducer_id: Id
    display_name: str = Field(min_length=1, max_length=256)
    email: str | None = Field(default=None, max_length=320)
    webhook_url: str | None = Field(default=None, max_length=2048)
    language: Language = "fr"


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


Payload = CommissionEvent | DonationCredited | Introducer


def parse_payload(kind: str, data: dict[str, Any]) -> Payload | None:
    """The typed payload of an event the notifier cares about; None for other kinds
    (``fact.voided``, rebates, checkpoints: nobody is alerted by them).
    Raises ``pydantic.ValidationError`` when a relevant event is malformed."""
    if kind in COMMISSION_KINDS:
        return CommissionEvent.model_validate(data)
    if kind == "donation.credited":
        return DonationCredited.model_validate(data)
    if kind == "introducer.registered":
        return Introducer.model_validate(data)
    return None


@dataclass(frozen=True, slots=True, order=True)
class AlertKey:
    """What is sent at most once: one alert (a ledger event id, or a digest id) on one channel."""

    alert_id: str
    channel: Channel

    def __str__(self) -> str:
        return f"{self.alert_id}#{self.channel}"
