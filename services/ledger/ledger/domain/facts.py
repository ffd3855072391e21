"""The facts other systems report to the ledger, as plain immutable data.

Each fact has a business ``key`` (its kind and business id: the same key twice with the
same data is a duplicate, with different data a conflict) and a ``business_date`` (what
``--as-of`` filters on; ``None`` for facts without a date, which always count).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol, TypeAlias

__all__ = [
    "COOPERATIVE",
    "VOIDABLE_TYPES",
    "AdviserRegistered",
    "BankDetailsChanged",
    "ClientRegistered",
    "CreditNoteIssued",
    "EligibilityChanged",
    "Fact",
    "FactKey",
    "FactVoided",
    "IntroducerRegistered",
    "IntroductionRecorded",
    "InvoiceIssued",
    "PartyErased",
    "PaymentReceived",
    "PayoutLine",
    "PayoutRecorded",
    "PayoutRunApproved",
    "PayoutRunProposed",
    "PeriodClosed",
    "PurchaseRecorded",
    "RebatePassedThrough",
    "RebateReceived",
    "ResaleInvoiced",
    "Term",
    "VendorCommissionReceived",
]

#: The fixed account that receives donated commissions (rule R5).
COOPERATIVE = "cooperative"

FactKey: TypeAlias = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Term:
    """One period of a commission schedule: ``rate`` for ``months`` months."""

    rate: Decimal
    months: int


@dataclass(frozen=True, slots=True)
class IntroducerRegistered:
    introducer_id: str
    display_name: str
    email: str | None = None
    webhook_url: str | None = None
    language: Literal["fr", "en"] = "fr"
    #: Where the introducer is paid (personal data): an IBAN (electronic form), optional.
    iban: str | None = None
    bic: str | None = None
    account_holder: str | None = None

    @property
    def key(self) -> FactKey:
        return ("introducer", self.introducer_id)

    @property
    def business_date(self) -> dt.date | None:
        return None


@dataclass(frozen=True, slots=True)
class ClientRegistered:
    """A client's contact, so that it is told its statements (first registration stands)."""

    client_id: str
    display_name: str
    email: str | None = None
    webhook_url: str | None = None
    language: Literal["fr", "en"] = "fr"

    @property
    def key(self) -> FactKey:
        return ("client", self.client_id)

    @property
    def business_date(self) -> dt.date | None:
        return None


@dataclass(frozen=True, slots=True)
class AdviserRegistered:
    """An adviser's contact, so that it is told its statements (first registration stands)."""

    adviser_id: str
    display_name: str
    email: str | None = None
    webhook_url: str | None = None
    language: Literal["fr", "en"] = "fr"

    @property
    def key(self) -> FactKey:
        return ("adviser", self.adviser_id)

    @property
    def business_date(self) -> dt.date | None:
        return None


@dataclass(frozen=True, slots=True)
class BankDetailsChanged:
    """An introducer's bank account from ``effective_date`` on (personal data): the latest
    effective on a payout run's date is the one paid."""

    introducer_id: str
    iban: str
    effective_date: dt.date
    bic: str | None = None
    account_holder: str | None = None

    @property
    def key(self) -> FactKey:
        return ("bank_details", f"{self.introducer_id}@{self.effective_date.isoformat()}")

    @property
    def business_date(self) -> dt.date | None:
        return self.effective_date


@dataclass(frozen=True, slots=True)
class PayoutLine:
    beneficiary_id: str
    currency: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class PayoutRunProposed:
    """A payout run proposed from a closed month: what to pay each beneficiary."""

    run_id: str
    period: str
    date: dt.date
    proposed_by: str
    lines: tuple[PayoutLine, ...]

    @property
    def key(self) -> FactKey:
        return ("payout_run", self.run_id)

    @property
    def business_date(self) -> dt.date | None:
        return None


@dataclass(frozen=True, slots=True)
class PayoutRunApproved:
    """A second person approves a payout run: its payment file can be made."""

    run_id: str
    date: dt.date
    approved_by: str

    @property
    def key(self) -> FactKey:
        return ("payout_run_approval", self.run_id)

    @property
    def business_date(self) -> dt.date | None:
        return None


@dataclass(frozen=True, slots=True)
class EligibilityChanged:
    introducer_id: str
    can_receive_commission: bool
    effective_date: dt.date

    @property
    def key(self) -> FactKey:
        # No business id in the contract: one change per introducer and day.
        return ("eligibility", f"{self.introducer_id}@{self.effective_date.isoformat()}")

    @property
    def business_date(self) -> dt.date | None:
        return self.effective_date


@dataclass(frozen=True, slots=True)
class IntroductionRecorded:
    introduction_id: str
    introducer_id: str
    client_id: str
    adviser_id: str
    date: dt.date
    terms: tuple[Term, ...] | None = None
    terms_reason: str | None = None
    prior_last_invoice_date: dt.date | None = None

    @property
    def key(self) -> FactKey:
        return ("introduction", self.introduction_id)

    @property
    def business_date(self) -> dt.date | None:
        return self.date


@dataclass(frozen=True, slots=True)
class InvoiceIssued:
    invoice_id: str
    adviser_id: str
    client_id: str
    issue_date: dt.date
    currency: str
    net_amount: Decimal
    tax_amount: Decimal = Decimal(0)

    @property
    def key(self) -> FactKey:
        return ("invoice", self.invoice_id)

    @property
    def business_date(self) -> dt.date | None:
        return self.issue_date


@dataclass(frozen=True, slots=True)
class CreditNoteIssued:
    credit_note_id: str
    invoice_id: str
    issue_date: dt.date
    net_amount: Decimal
    tax_amount: Decimal = Decimal(0)

    @property
    def key(self) -> FactKey:
        return ("credit_note", self.credit_note_id)

    @property
    def business_date(self) -> dt.date | None:
        return self.issue_date


@dataclass(frozen=True, slots=True)
class PaymentReceived:
    payment_id: str
    invoice_id: str
    date: dt.date
    amount: Decimal

    @property
    def key(self) -> FactKey:
        return ("payment", self.payment_id)

    @property
    def business_date(self) -> dt.date | None:
        return self.date


@dataclass(frozen=True, slots=True)
class PayoutRecorded:
    payout_id: str
    adviser_id: str
    beneficiary_id: str
    date: dt.date
    currency: str
    amount: Decimal
    #: A payout made by a payout run and booked by the bank: the run, the transfer's
    #: end-to-end id and the bank's reference (all optional).
    run_id: str | None = None
    end_to_end_id: str | None = None
    bank_reference: str | None = None

    @property
    def key(self) -> FactKey:
        return ("payout", self.payout_id)

    @property
    def business_date(self) -> dt.date | None:
        return self.date


@dataclass(frozen=True, slots=True)
class PurchaseRecorded:
    purchase_id: str
    client_id: str
    supplier_id: str
    date: dt.date
    currency: str
    cost_amount: Decimal

    @property
    def key(self) -> FactKey:
        return ("purchase", self.purchase_id)

    @property
    def business_date(self) -> dt.date | None:
        return self.date


@dataclass(frozen=True, slots=True)
class ResaleInvoiced:
    resale_id: str
    purchase_id: str
    date: dt.date
    amount: Decimal

    @property
    def key(self) -> FactKey:
        return ("resale", self.resale_id)

    @property
    def business_date(self) -> dt.date | None:
        return self.date


@dataclass(frozen=True, slots=True)
class RebateReceived:
    rebate_id: str
    supplier_id: str
    date: dt.date
    currency: str
    amount: Decimal
    purchase_ids: tuple[str, ...]

    @property
    def key(self) -> FactKey:
        return ("rebate", self.rebate_id)

    @property
    def business_date(self) -> dt.date | None:
        return self.date


@dataclass(frozen=True, slots=True)
class RebatePassedThrough:
    pass_through_id: str
    client_id: str
    date: dt.date
    currency: str
    amount: Decimal

    @property
    def key(self) -> FactKey:
        return ("pass_through", self.pass_through_id)

    @property
    def business_date(self) -> dt.date | None:
        return self.date


@dataclass(frozen=True, slots=True)
class VendorCommissionReceived:
    """A commission or kickback an adviser received from a vendor on a client's purchase:
    disclosed to the client, never the adviser's revenue nor a commission base."""

    vendor_commission_id: str
    adviser_id: str
    client_id: str
    supplier_id: str
    date: dt.date
    currency: str
    amount: Decimal
    description: str

    @property
    def key(self) -> FactKey:
        return ("vendor_commission", self.vendor_commission_id)

    @property
    def business_date(self) -> dt.date | None:
        return self.date


#: The kinds of fact a void may take back (rules R8); their business keys are
#: ``(kind, id)``. Invoices and credit notes are corrected by credit notes, registrations and
#: eligibility changes are not errors of amounts, and a void cannot itself be voided.
VOIDABLE_TYPES = frozenset(
    {
        "introduction",
        "payment",
        "payout",
        "purchase",
        "resale",
        "rebate",
        "pass_through",
        "vendor_commission",
        "payout_run",
    }
)


@dataclass(frozen=True, slots=True)
class FactVoided:
    """A fact recorded in error, taken back by two people (rules R8)."""

    void_id: str
    target_type: str
    target_id: str
    date: dt.date
    reason: str
    requested_by: str
    approved_by: str

    @property
    def key(self) -> FactKey:
        return ("void", self.void_id)

    @property
    def target(self) -> FactKey:
        return (self.target_type, self.target_id)

    @property
    def business_date(self) -> dt.date | None:
        # a voided fact counts nowhere at every as-of date: the void is never filtered out
        return None


@dataclass(frozen=True, slots=True)
class PeriodClosed:
    """The treasurer closes a month (rules R9): its statement is frozen from then on.
    ``period`` is ``YYYY-MM`` (the business id); ``date`` is the day it was closed."""

    period: str
    date: dt.date
    closed_by: str
    approved_by: str

    @property
    def key(self) -> FactKey:
        return ("period", self.period)

    @property
    def business_date(self) -> dt.date | None:
        # a close changes no figure: it is never filtered out by --as-of
        return None


@dataclass(frozen=True, slots=True)
class PartyErased:
    """A person's personal data erased at their request (right to erasure), by two people:
    their data key is destroyed, every figure stays. Its key is the party itself, so a
    second erasure of the same person is a duplicate (nothing more to do)."""

    party_type: Literal["introducer", "client", "adviser"]
    party_id: str
    requested_by: str
    approved_by: str

    @property
    def key(self) -> FactKey:
        return ("party_erasure", f"{self.party_type}/{self.party_id}")

    @property
    def business_date(self) -> dt.date | None:
        # changes no figure: never filtered out by --as-of
        return None


class Fact(Protocol):
    """What every fact has: its business key and the date ``--as-of`` filters on. The fact
    types are the frozen dataclasses of this module; the contract maps each to its wire
    model (``application/contract.py``) and the books to its rule (``domain/books.py``)."""

    @property
    def key(self) -> FactKey: ...

    @property
    def business_date(self) -> dt.date | None: ...
