"""The derived events' ``data``: the outbound half of the contract.

The pydantic models describe each kind (``schemas/outbound``, the AsyncAPI document); the
``*_payload`` functions build the data from the domain's lines, field by field, so the
wire format changes only here (never because a report's row changed). A test validates
every derived event against its model.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ledger.domain.commissions import CommissionLine
from ledger.domain.facts import (
    AdviserRegistered,
    ClientRegistered,
    FactVoided,
    IntroducerRegistered,
    PayoutRecorded,
)
from ledger.domain.money import format_amount, format_rate

__all__ = [
    "OUTBOUND_MODELS",
    "OutboundEnvelope",
    "balance_payload",
    "cause_payload",
    "commission_payload",
    "contact_payload",
    "donation_payload",
    "introducer_payload",
    "payout_payload",
    "period_closed_payload",
    "rebate_owed_payload",
    "statement_issued_payload",
    "void_payload",
]

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


class VoidCause(_Out):
    """The void that caused the change (rules R8): the event is a correction."""

    kind: Literal["void"]
    void_id: str
    target_type: str
    target_id: str
    reason: str


class ClientRegisteredOut(_Out):
    """A client's contact details, for the notifier's directory (statements)."""

    client_id: str
    display_name: str
    email: str | None
    webhook_url: str | None
    language: Literal["fr", "en"]


class AdviserRegisteredOut(_Out):
    """An adviser's contact details, for the notifier's directory (statements)."""

    adviser_id: str
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
    cause: VoidCause | None = None


class DonationCredited(_Out):
    """A commission credited to the cooperative instead of its introducer (the donor);
    a negative ``amount`` withdraws an earlier credit after an adjustment."""

    cause: VoidCause | None = None

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
    """What the cooperative owes a client back (margins and rebate shares) changed, or (after
    a void) what is still outstanding."""

    client_id: str
    currency: str
    owed: Amount
    delta: Amount
    outstanding: Amount
    cause: VoidCause | None = None


class FactVoidedOut(_Out):
    """A void was recorded (rules R8); ``applied`` once its target is known (a void that
    came first is announced again, applied, when the target arrives)."""

    void_id: str
    target_type: str
    target_id: str
    date: Day
    reason: str
    requested_by: str
    approved_by: str
    applied: bool


class PayoutRecordedOut(_Out):
    """Money paid to a beneficiary was recorded: by a payout run's transfer that the bank
    booked (``run_id``, ``end_to_end_id``, ``bank_reference``), or by hand; with the
    beneficiary's balance after it."""

    payout_id: str
    adviser_id: str
    beneficiary_id: str
    date: Day
    currency: str
    amount: Amount
    run_id: str | None
    end_to_end_id: str | None
    bank_reference: str | None
    balance: Balance


class RebatePassedThrough(_Out):
    """A rebate or margin handed back to a client."""

    pass_through_id: str
    client_id: str
    currency: str
    date: Day
    amount: Amount
    outstanding: Amount


class PeriodTotals(_Out):
    """One currency's closing figures, added over beneficiaries and over clients."""

    currency: str
    beneficiaries_accrued: Amount
    beneficiaries_payable: Amount
    beneficiaries_paid: Amount
    beneficiaries_outstanding: Amount
    clients_owed: Amount
    clients_passed_through: Amount
    clients_outstanding: Amount


class PeriodClosedOut(_Out):
    """A month was closed (rules R9) and its statement frozen: the close, the log position
    of the statement, and its closing totals per currency (``ledger report --period`` or
    ``GET /report/period`` give the whole statement)."""

    period: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")
    date: Day
    closed_by: str
    approved_by: str
    position: int = Field(ge=1)
    rows: int = Field(ge=0)
    totals: list[PeriodTotals]


class StatementIssuedOut(_Out):
    """A party's statement of a closed month (rules R9), to send it: who, which month, the
    signed links to its page and PDF (valid until ``link_expires``), and the party's view
    of the month (each list cut to 200 lines, ``truncated`` says which; the page has all)."""

    party_kind: Literal["introducer", "client", "adviser"]
    party_id: str
    period: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")
    close_position: int = Field(ge=1)
    html_url: str
    pdf_url: str
    link_expires: str
    statement: dict[str, object]


class AuditCheckpoint(_Out):
    """The hash-chain head at a position, published periodically so that a copy lives
    outside the store (`ledger audit verify --against POSITION:HASH`)."""

    position: int = Field(ge=0)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class PartyErasedOut(_Out):
    """A person erased at their request: forget their contact and drop what you hold about
    them (the notifier does); figures and ids stay. Goes out once the ledger has destroyed
    their data key and scrubbed its own streams."""

    party_type: Literal["introducer", "client", "adviser"]
    party_id: str
    position: int = Field(ge=1, description="log position of the erasure")


OUTBOUND_MODELS: dict[str, type[_Out]] = {
    "introducer.registered": IntroducerRegisteredOut,
    "client.registered": ClientRegisteredOut,
    "adviser.registered": AdviserRegisteredOut,
    "commission.accrued": CommissionEvent,
    "commission.adjusted": CommissionEvent,
    "commission.payable": CommissionEvent,
    "donation.credited": DonationCredited,
    "rebate.owed": RebateOwed,
    "rebate.passed_through": RebatePassedThrough,
    "payout.recorded": PayoutRecordedOut,
    "fact.voided": FactVoidedOut,
    "period.closed": PeriodClosedOut,
    "statement.issued": StatementIssuedOut,
    "party.erased": PartyErasedOut,
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


# payloads ------------------------------------------------------------------------------


def balance_payload(accrued: Decimal, payable: Decimal, paid: Decimal, currency: str) -> dict[str, str]:
    """:class:`Balance`: a beneficiary's running balance in one currency."""
    return {
        "accrued": format_amount(accrued, currency),
        "payable": format_amount(payable, currency),
        "paid": format_amount(paid, currency),
        "outstanding": format_amount(payable - paid, currency),
    }


def commission_payload(
    line: CommissionLine,
    *,
    delta: Decimal,
    previous: CommissionLine | None,
    balance: dict[str, str],
) -> dict[str, Any]:
    """:class:`CommissionEvent`: the line after the change, the change, the line before."""
    m = line.currency
    data: dict[str, Any] = {
        "invoice_id": line.invoice_id,
        "introduction_id": line.introduction_id,
        "introducer_id": line.introducer_id,
        "adviser_id": line.adviser_id,
        "client_id": line.client_id,
        "beneficiary_id": line.beneficiary_id,
        "donor_id": line.donor_id,
        "rule": line.rule,
        "year": line.year,
        "rate": format_rate(line.rate),
        "window_start": line.window_start.isoformat(),
        "window_end": line.window_end.isoformat(),
        "invoice_date": line.invoice_date.isoformat(),
        "invoice_net": format_amount(line.invoice_net, m),
        "credited_net": format_amount(line.credited_net, m),
        "base": format_amount(line.base, m),
        "amount": format_amount(line.amount, m),
        "gross": format_amount(line.gross, m),
        "paid": format_amount(line.paid, m),
        "payable": format_amount(line.payable, m),
        "currency": m,
        "delta": format_amount(delta, m),
    }
    if previous is not None:
        data["previous_amount"] = format_amount(previous.amount, m)
        data["previous_beneficiary_id"] = previous.beneficiary_id
        data["previous_payable"] = format_amount(previous.payable, m)
    data["balance"] = balance
    return data


def donation_payload(line: CommissionLine, amount: Decimal) -> dict[str, Any]:
    """:class:`DonationCredited`: a commission credited to (or withdrawn from) the cooperative."""
    assert line.donor_id is not None
    return {
        "donor_id": line.donor_id,
        "beneficiary_id": line.beneficiary_id,
        "invoice_id": line.invoice_id,
        "introduction_id": line.introduction_id,
        "client_id": line.client_id,
        "adviser_id": line.adviser_id,
        "rate": format_rate(line.rate),
        "currency": line.currency,
        "amount": format_amount(amount, line.currency),
    }


def introducer_payload(fact: IntroducerRegistered) -> dict[str, Any]:
    """:class:`IntroducerRegisteredOut`: the contact details the notifier needs."""
    return {
        "introducer_id": fact.introducer_id,
        "display_name": fact.display_name,
        "email": fact.email,
        "webhook_url": fact.webhook_url,
        "language": fact.language,
    }


def contact_payload(fact: ClientRegistered | AdviserRegistered, id_field: str) -> dict[str, Any]:
    """:class:`ClientRegisteredOut` / :class:`AdviserRegisteredOut`."""
    return {
        id_field: getattr(fact, id_field),
        "display_name": fact.display_name,
        "email": fact.email,
        "webhook_url": fact.webhook_url,
        "language": fact.language,
    }


def payout_payload(fact: PayoutRecorded, balance: dict[str, str]) -> dict[str, Any]:
    return {
        "payout_id": fact.payout_id,
        "adviser_id": fact.adviser_id,
        "beneficiary_id": fact.beneficiary_id,
        "date": fact.date.isoformat(),
        "currency": fact.currency,
        "amount": format_amount(fact.amount, fact.currency),
        "run_id": fact.run_id,
        "end_to_end_id": fact.end_to_end_id,
        "bank_reference": fact.bank_reference,
        "balance": balance,
    }


def rebate_owed_payload(
    client_id: str, currency: str, owed: Decimal, delta: Decimal, outstanding: Decimal
) -> dict[str, str]:
    """:class:`RebateOwed`: what the cooperative owes a client back, after a change."""
    return {
        "client_id": client_id,
        "currency": currency,
        "owed": format_amount(owed, currency),
        "delta": format_amount(delta, currency),
        "outstanding": format_amount(outstanding, currency),
    }


def void_payload(void: FactVoided, *, applied: bool) -> dict[str, Any]:
    """:class:`FactVoidedOut`."""
    return {
        "void_id": void.void_id,
        "target_type": void.target_type,
        "target_id": void.target_id,
        "date": void.date.isoformat(),
        "reason": void.reason,
        "requested_by": void.requested_by,
        "approved_by": void.approved_by,
        "applied": applied,
    }


def cause_payload(void: FactVoided) -> dict[str, str]:
    """:class:`VoidCause`."""
    return {
        "kind": "void",
        "void_id": void.void_id,
        "target_type": void.target_type,
        "target_id": void.target_id,
        "reason": void.reason,
    }


def period_closed_payload(statement: dict[str, Any], totals: list[dict[str, Any]]) -> dict[str, Any]:
    """:class:`PeriodClosedOut` from a closed month's statement document."""
    close = statement["close"]
    return {
        "period": close["period"],
        "date": close["date"],
        "closed_by": close["closed_by"],
        "approved_by": close["approved_by"],
        "position": close["position"],
        "rows": len(statement["balances"]) + len(statement["rebates"]),
        "totals": totals,
    }


def statement_issued_payload(
    kind: str,
    party_id: str,
    *,
    period: str,
    position: int,
    links: dict[str, str],
    view: dict[str, Any],
) -> dict[str, Any]:
    """:class:`StatementIssuedOut`."""
    return {
        "party_kind": kind,
        "party_id": party_id,
        "period": period,
        "close_position": position,
        **links,
        "statement": view,
    }
