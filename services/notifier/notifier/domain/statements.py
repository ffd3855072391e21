"""``statement.issued``: a party's statement of a closed month (rules R9), as the ledger
publishes it when the month is closed, one event per party with any figure.

The models are strict on what the notifier relies on (who, which month, the figures and
lines it words, the links) and tolerant of anything else: unknown fields, here and inside
each line, are ignored, so the ledger may add to its view without breaking the notifier.
Lists the ledger may not send yet (``disclosures``, the kind-specific lists) default to empty.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from notifier.domain.values import Id, InModel, Money, PartyKind

__all__ = [
    "FIGURES",
    "STATEMENT_KIND",
    "Amount",
    "ClosedBy",
    "Disclosure",
    "Margin",
    "PassThrough",
    "Payout",
    "RebateShare",
    "StatementCommission",
    "StatementIssued",
    "StatementRow",
    "StatementView",
    "StatementVoid",
    "has_figures",
    "statement_filename",
]

STATEMENT_KIND = "statement.issued"
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Period = Annotated[str, Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
Url = Annotated[
    str, Field(min_length=8, max_length=4096, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f-\x9f]+$")
]

#: The figures of a row, by the kind of statement (rules R9): an introducer's balance, a
#: client's rebates (margins and rebate shares owed, passed through). An adviser's view has
#: no rows today; if it gets some, they are one of these two sets.
FIGURES: dict[str, tuple[str, ...]] = {
    "balance": ("accrued", "payable", "paid", "outstanding"),
    "rebate": ("owed", "passed_through", "outstanding"),
}
_FIGURES_OF: dict[PartyKind, tuple[str, ...]] = {
    "introducer": ("balance",),
    "client": ("rebate",),
    "adviser": ("balance", "rebate"),
}
SETS = ("opening", "adjustments", "movements", "closing")


class Amount(InModel):
    """A total in one currency."""

    currency: Currency
    amount: Money


class ClosedBy(InModel):
    """The close (rules R9): the month, the day, the two people, its log position."""

    period: Period
    date: date
    closed_by: Id
    approved_by: Id
    position: int = Field(ge=0)


class StatementRow(InModel):
    """One row of figures (per party and currency): opening + adjustments + movements =
    closing, figure by figure, each a decimal string in the currency."""

    beneficiary_id: Id | None = None
    client_id: Id | None = None
    currency: Currency
    opening: dict[str, Money]
    adjustments: dict[str, Money]
    movements: dict[str, Money]
    closing: dict[str, Money]

    def figure_names(self) -> tuple[str, ...]:
        """The figures of this row, in their order (balance or rebate)."""
        names = tuple(self.opening)
        for known in FIGURES.values():
            if set(names) == set(known):
                return known
        return names

    def value(self, which: str, figure: str) -> Money:
        values: dict[str, Money] = getattr(self, which)
        return values[figure]


class StatementCommission(InModel):
    """A commission line of the month (on an invoice dated in it)."""

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
    currency: Currency

    @property
    def donated(self) -> bool:
        """Credited to the cooperative (its introducer cannot take money, rules R5)."""
        return self.donor_id is not None


class StatementVoid(InModel):
    """A fact recorded in error and taken back (rules R8), learned since the last close."""

    void_id: Id
    target_type: str = Field(min_length=1, max_length=64)
    target_id: Id
    date: date
    reason: str = Field(min_length=1, max_length=1000)
    requested_by: Id
    approved_by: Id


class Payout(InModel):
    """Money an adviser paid to an introducer (or to the cooperative)."""

    payout_id: Id
    adviser_id: Id
    beneficiary_id: Id
    date: date
    currency: Currency
    amount: Money


class Margin(InModel):
    """The cooperative's margin on a resale to the client, owed back to the client."""

    purchase_id: Id
    supplier_id: Id
    date: date
    currency: Currency
    cost: Money
    resold: Money
    margin: Money


class RebateShare(InModel):
    """The client's share of a supplier's rebate."""

    rebate_id: Id
    purchase_id: Id
    supplier_id: Id
    date: date
    currency: Currency
    amount: Money


class PassThrough(InModel):
    """Money passed back to the client."""

    pass_through_id: Id
    date: date
    currency: Currency
    amount: Money


class Disclosure(InModel):
    """A commission an adviser received from a vendor on the client's purchase: disclosed
    to the client, never revenue nor a commission base."""

    vendor_commission_id: Id
    adviser_id: Id
    supplier_id: Id
    date: date
    currency: Currency
    amount: Money
    description: str = Field(max_length=2000)


class StatementView(InModel):
    """The party's view of the month's statement (``party_statement`` on the ledger side)."""

    statement: PartyKind
    party_id: Id
    party_name: str = Field(min_length=1, max_length=256)
    period: Period
    status: Literal["closed"]
    close: ClosedBy
    rows: list[StatementRow]
    commissions: list[StatementCommission]
    commission_totals: list[Amount]
    voids: list[StatementVoid]
    names: dict[str, str] = Field(default_factory=dict)
    # introducers
    donations: list[Amount] = Field(default_factory=list)
    # introducers and advisers
    payouts: list[Payout] = Field(default_factory=list)
    payout_totals: list[Amount] = Field(default_factory=list)
    # clients
    margins: list[Margin] = Field(default_factory=list)
    rebate_shares: list[RebateShare] = Field(default_factory=list)
    pass_throughs: list[PassThrough] = Field(default_factory=list)
    disclosures: list[Disclosure] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rows_hold_the_figures_of_the_kind(self) -> StatementView:
        allowed = [FIGURES[name] for name in _FIGURES_OF[self.statement]]
        for row in self.rows:
            for which in SETS:
                names = set(getattr(row, which))
                if not any(names == set(figures) for figures in allowed):
                    raise ValueError(
                        f"a {self.statement} row's {which} holds {sorted(names)}, expected one of {allowed}"
                    )
        return self

    def name(self, ident: str) -> str:
        """The display name the ledger gave for ``ident``, or the id itself."""
        return self.names.get(ident, ident)


class StatementIssued(InModel):
    """``statement.issued``: the event (who, which month, the links) and the party's view."""

    party_kind: PartyKind
    party_id: Id
    period: Period
    close_position: int = Field(ge=0)
    html_url: Url
    pdf_url: Url
    link_expires: AwareDatetime
    statement: StatementView

    @model_validator(mode="after")
    def _view_is_the_partys(self) -> StatementIssued:
        view = self.statement
        if (view.statement, view.party_id, view.period) != (self.party_kind, self.party_id, self.period):
            raise ValueError(
                f"the statement is {view.statement} {view.party_id} {view.period}, "
                f"the event says {self.party_kind} {self.party_id} {self.period}"
            )
        if view.close.period != self.period:
            raise ValueError(f"the close is of {view.close.period}, the statement of {self.period}")
        return self

    @property
    def attachment_name(self) -> str:
        return statement_filename(self.party_kind, self.party_id, self.period)


def statement_filename(kind: PartyKind, party_id: str, period: str) -> str:
    """``statement-client-cli-dupont-2025-03.pdf`` (ids hold only ``[A-Za-z0-9_.:-]``;
    anything else is replaced, so the name is safe in a MIME header and on any disk)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "_" for c in party_id)
    return f"statement-{kind}-{safe}-{period}.pdf"


def has_figures(view: StatementView) -> bool:
    """Whether the month shows anything for the party (a party with nothing is told nothing)."""
    return bool(
        view.rows
        or view.commissions
        or view.voids
        or view.payouts
        or view.margins
        or view.rebate_shares
        or view.pass_throughs
        or view.disclosures
    )
