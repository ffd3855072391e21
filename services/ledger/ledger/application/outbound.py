"""The derived events' ``data`` as pydantic models: the outbound half of the contract.

The deriver builds plain dictionaries; these models describe them (``schemas/outbound``,
the AsyncAPI document) and a test validates every derived event against them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["OUTBOUND_MODELS", "OutboundEnvelope"]

Amount = Annotated[
    str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", description="decimal amount, minor-unit digits")
]
Day = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Balance(_Out):
    """The beneficiary's running balance in the event's currency, after the event."""

    accrued: Amount
    payable: Amount
    paid: Amount
    outstanding: Amount


class IntroducerRegisteredOut(_Out):
    """An introducer's contact details, for the notifier's directory."""

    introducer_id: str
    display_name: str
    email: str | None
    webhook_url: str | None
    language: Literal["fr", "en"]


class CommissionEvent(_Out):
    """A commission line after the change (``commission.accrued``, ``commission.adjusted``,
    ``commission.payable``): ``delta`` is the change of ``amount`` (accrued, adjusted) or
    of ``payable`` (payable)."""

    invoice_id: str
    introduction_id: str
    introducer_id: str
    adviser_id: str
    client_id: str
    beneficiary_id: str
    donor_id: str | None
    rule: str
    year: int
    rate: str
    window_start: Day
    window_end: Day
    invoice_date: Day
    invoice_net: Amount
    credited_net: Amount
    base: Amount
    amount: Amount
    gross: Amount
    paid: Amount
    payable: Amount
    currency: str
    delta: Amount
    previous_amount: Amount | None = None
    previous_beneficiary_id: str | None = None
    previous_payable: Amount | None = None
    balance: Balance


class DonationCredited(_Out):
    """A commission credited to the cooperative instead of its introducer (the donor);
    a negative ``amount`` withdraws an earlier credit after an adjustment."""

    donor_id: str
    beneficiary_id: Literal["cooperative"]
    invoice_id: str
    introduction_id: str
    client_id: str
    adviser_id: str
    rate: str
    currency: str
    amount: Amount


class RebateOwed(_Out):
    """What the cooperative owes a client back (margins and rebate shares) changed."""

    client_id: str
    currency: str
    owed: Amount
    delta: Amount
    outstanding: Amount


class RebatePassedThrough(_Out):
    """A rebate or margin handed back to a client."""

    pass_through_id: str
    client_id: str
    currency: str
    date: Day
    amount: Amount
    outstanding: Amount


class AuditCheckpoint(_Out):
    """The hash-chain head at a position, published periodically so that a copy lives
    outside the store (`ledger audit verify --against POSITION:HASH`)."""

    position: int = Field(ge=0)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")


OUTBOUND_MODELS: dict[str, type[_Out]] = {
    "introducer.registered": IntroducerRegisteredOut,
    "commission.accrued": CommissionEvent,
    "commission.adjusted": CommissionEvent,
    "commission.payable": CommissionEvent,
    "donation.credited": DonationCredited,
    "rebate.owed": RebateOwed,
    "rebate.passed_through": RebatePassedThrough,
    "audit.checkpoint": AuditCheckpoint,
}


class OutboundEnvelope(_Out):
    """The CloudEvents envelope of every derived event on ``ledger.out.<kind>``."""

    specversion: Literal["1.0"]
    id: str = Field(description="<position>:<kind>:<ref>, also the Nats-Msg-Id header")
    source: Literal["coop-ledger"]
    type: str = Field(pattern=r"^coop\.ledger\.out\.[a-z_.]+\.v1$")
    datacontenttype: Literal["application/json"]
    subject: str
    ledgerposition: int = Field(ge=1, description="log position of the fact that caused the event")
    data: dict[str, object]
