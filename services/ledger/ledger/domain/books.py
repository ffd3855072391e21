"""The books: every figure the ledger derives from a set of facts.

:func:`build_books` is a pure function of the facts (and an optional as-of day): the
order in which facts arrived never matters, which is what makes a back-dated fact simply
recompute everything it touches (rule R4). The rules themselves are in
:mod:`~ledger.domain.commissions` (R1-R5) and :mod:`~ledger.domain.purchasing` (R6); the
accounts and postings in :mod:`~ledger.domain.accounts`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from ledger.domain.accounts import Posting, trial_balance
from ledger.domain.anomalies import Anomaly
from ledger.domain.commissions import (
    BalanceLine,
    CommissionLine,
    DonationLine,
    IntroductionLine,
    balances,
    commission_postings,
    donations,
    introduction_line,
    pair_commission_lines,
    payout_posting,
)
from ledger.domain.facts import (
    AdviserRegistered,
    BankDetailsChanged,
    ClientRegistered,
    CreditNoteIssued,
    EligibilityChanged,
    Fact,
    IntroducerRegistered,
    IntroductionRecorded,
    InvoiceIssued,
    PartyErased,
    PaymentReceived,
    PayoutRecorded,
    PayoutRunApproved,
    PayoutRunProposed,
    PeriodClosed,
    PurchaseRecorded,
    RebatePassedThrough,
    RebateReceived,
    ResaleInvoiced,
    VendorCommissionReceived,
)
from ledger.domain.purchasing import (
    MarginLine,
    RebateLine,
    RebateShareLine,
    margins,
    rebate_postings,
    rebate_shares,
    rebates,
)
from ledger.domain.voids import VoidLine, apply_voids

__all__ = [
    "Anomaly",
    "BalanceLine",
    "Books",
    "CommissionLine",
    "DonationLine",
    "IntroductionLine",
    "MarginLine",
    "Posting",
    "RebateLine",
    "RebateShareLine",
    "VoidLine",
    "build_books",
]


F = TypeVar("F")


@dataclass(frozen=True, slots=True)
class Books:
    as_of: dt.date | None
    introducers: tuple[IntroducerRegistered, ...]
    introductions: tuple[IntroductionLine, ...]
    commissions: tuple[CommissionLine, ...]
    balances: tuple[BalanceLine, ...]
    donations: tuple[DonationLine, ...]
    margins: tuple[MarginLine, ...]
    rebate_shares: tuple[RebateShareLine, ...]
    rebates: tuple[RebateLine, ...]
    postings: tuple[Posting, ...]
    anomalies: tuple[Anomaly, ...]
    trial_balance: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    #: Every invoice counted (sorted by date and id), and the pass-throughs, for statements.
    invoices: tuple[InvoiceIssued, ...] = ()
    credit_notes: tuple[CreditNoteIssued, ...] = ()
    pass_throughs: tuple[RebatePassedThrough, ...] = ()
    purchases: tuple[PurchaseRecorded, ...] = ()
    payouts: tuple[PayoutRecorded, ...] = ()
    clients: tuple[ClientRegistered, ...] = ()
    advisers: tuple[AdviserRegistered, ...] = ()
    #: Vendor commissions disclosed to clients (never revenue, never a commission base).
    disclosures: tuple[VendorCommissionReceived, ...] = ()
    #: Every void (rules R8), and the facts they took back (counted nowhere).
    voids: tuple[VoidLine, ...] = ()
    voided: tuple[Fact, ...] = ()
    #: Where introducers are paid, and the payout runs (not voided) with their approvals.
    bank_details: tuple[BankDetailsChanged, ...] = ()
    payout_runs: tuple[PayoutRunProposed, ...] = ()
    run_approvals: tuple[PayoutRunApproved, ...] = ()


@dataclass
class _Index:
    """The facts counted, indexed the way the rules read them."""

    introducers: dict[str, IntroducerRegistered] = field(default_factory=dict)
    eligibility: dict[str, list[tuple[dt.date, bool]]] = field(default_factory=lambda: defaultdict(list))
    introductions: list[IntroductionRecorded] = field(default_factory=list)
    invoices: dict[str, InvoiceIssued] = field(default_factory=dict)
    by_pair: dict[tuple[str, str], list[InvoiceIssued]] = field(default_factory=lambda: defaultdict(list))
    credit_notes: dict[str, list[CreditNoteIssued]] = field(default_factory=lambda: defaultdict(list))
    payments: dict[str, list[PaymentReceived]] = field(default_factory=lambda: defaultdict(list))
    payouts: list[PayoutRecorded] = field(default_factory=list)
    purchases: dict[str, PurchaseRecorded] = field(default_factory=dict)
    resales: dict[str, list[ResaleInvoiced]] = field(default_factory=lambda: defaultdict(list))
    rebates: list[RebateReceived] = field(default_factory=list)
    pass_throughs: list[RebatePassedThrough] = field(default_factory=list)
    clients: dict[str, ClientRegistered] = field(default_factory=dict)
    advisers: dict[str, AdviserRegistered] = field(default_factory=dict)
    disclosures: list[VendorCommissionReceived] = field(default_factory=list)
    bank_details: list[BankDetailsChanged] = field(default_factory=list)
    payout_runs: dict[str, PayoutRunProposed] = field(default_factory=dict)
    run_approvals: dict[str, PayoutRunApproved] = field(default_factory=dict)


#: Where each kind of fact goes in the index: adding a fact type is adding its indexer
#: here, next to the rules that read it.
_INDEXERS: dict[type, Callable[[_Index, Any], None]] = {}


def _indexes(kind: type[F]) -> Callable[[Callable[[_Index, F], None]], Callable[[_Index, F], None]]:
    def register(indexer: Callable[[_Index, F], None]) -> Callable[[_Index, F], None]:
        assert kind not in _INDEXERS, kind
        _INDEXERS[kind] = indexer
        return indexer

    return register


@_indexes(PartyErased)
def _erasure(ix: _Index, fact: PartyErased) -> None:
    """Changes no figure: the person's personal fields already read as erased."""


@_indexes(IntroducerRegistered)
def _introducer(ix: _Index, fact: IntroducerRegistered) -> None:
    ix.introducers[fact.introducer_id] = fact


@_indexes(EligibilityChanged)
def _eligibility(ix: _Index, fact: EligibilityChanged) -> None:
    ix.eligibility[fact.introducer_id].append((fact.effective_date, fact.can_receive_commission))


@_indexes(IntroductionRecorded)
def _introduction(ix: _Index, fact: IntroductionRecorded) -> None:
    ix.introductions.append(fact)


@_indexes(InvoiceIssued)
def _invoice(ix: _Index, fact: InvoiceIssued) -> None:
    ix.invoices[fact.invoice_id] = fact
    ix.by_pair[(fact.adviser_id, fact.client_id)].append(fact)


@_indexes(CreditNoteIssued)
def _credit_note(ix: _Index, fact: CreditNoteIssued) -> None:
    ix.credit_notes[fact.invoice_id].append(fact)


@_indexes(PaymentReceived)
def _payment(ix: _Index, fact: PaymentReceived) -> None:
    ix.payments[fact.invoice_id].append(fact)


@_indexes(PayoutRecorded)
def _payout(ix: _Index, fact: PayoutRecorded) -> None:
    ix.payouts.append(fact)


@_indexes(PurchaseRecorded)
def _purchase(ix: _Index, fact: PurchaseRecorded) -> None:
    ix.purchases[fact.purchase_id] = fact


@_indexes(ResaleInvoiced)
def _resale(ix: _Index, fact: ResaleInvoiced) -> None:
    ix.resales[fact.purchase_id].append(fact)


@_indexes(RebateReceived)
def _rebate(ix: _Index, fact: RebateReceived) -> None:
    ix.rebates.append(fact)


@_indexes(ClientRegistered)
def _client(ix: _Index, fact: ClientRegistered) -> None:
    ix.clients[fact.client_id] = fact


@_indexes(AdviserRegistered)
def _adviser(ix: _Index, fact: AdviserRegistered) -> None:
    ix.advisers[fact.adviser_id] = fact


@_indexes(VendorCommissionReceived)
def _vendor_commission(ix: _Index, fact: VendorCommissionReceived) -> None:
    """Disclosed only: an adviser's kickback is never revenue nor a commission base (R1)."""
    ix.disclosures.append(fact)


@_indexes(PeriodClosed)
def _close(ix: _Index, fact: PeriodClosed) -> None:
    """A close changes no figure (its statement is computed from the others, rules R9)."""


@_indexes(BankDetailsChanged)
def _bank_details(ix: _Index, fact: BankDetailsChanged) -> None:
    """Bank details change no figure: payout runs read them."""
    ix.bank_details.append(fact)


@_indexes(PayoutRunProposed)
def _payout_run(ix: _Index, fact: PayoutRunProposed) -> None:
    """A proposed run changes no figure: the payouts the bank books do."""
    ix.payout_runs[fact.run_id] = fact


@_indexes(PayoutRunApproved)
def _payout_run_approval(ix: _Index, fact: PayoutRunApproved) -> None:
    """An approval changes no figure."""
    ix.run_approvals[fact.run_id] = fact


@_indexes(RebatePassedThrough)
def _pass_through(ix: _Index, fact: RebatePassedThrough) -> None:
    ix.pass_throughs.append(fact)


def _index(facts: Iterable[Fact], as_of: dt.date | None) -> _Index:
    ix = _Index()
    for fact in facts:
        day = fact.business_date
        if as_of is not None and day is not None and day > as_of:
            continue
        _INDEXERS[type(fact)](ix, fact)
    for invoices in ix.by_pair.values():
        invoices.sort(key=lambda inv: (inv.issue_date, inv.invoice_id))
    return ix


def build_books(facts: Iterable[Fact], as_of: dt.date | None = None, *, postings: bool = True) -> Books:
    """Every figure of rules R1-R6 for ``facts`` counted up to ``as_of`` (inclusive), the
    voided facts left out at every as-of date (R8). Without ``postings`` the double-entry
    postings (and the trial balance) are left empty: what the figures alone need."""
    voiding = apply_voids(facts)
    ix = _index(voiding.counted, as_of)
    anomalies: list[Anomaly] = list(voiding.anomalies)
    journal: list[Posting] = []

    introductions = [
        introduction_line(intro, ix.by_pair.get((intro.adviser_id, intro.client_id), []))
        for intro in ix.introductions
    ]
    introductions.sort(key=lambda line: line.introduction_id)

    commissions: list[CommissionLine] = []
    for intro in introductions:
        commissions.extend(
            pair_commission_lines(
                intro,
                ix.by_pair.get((intro.adviser_id, intro.client_id), []),
                ix.credit_notes,
                ix.payments,
                ix.eligibility.get(intro.introducer_id, []),
                anomalies=anomalies,
            )
        )
    commissions.sort(key=lambda c: (c.invoice_id, c.introduction_id))
    _check_orphans(ix, anomalies)
    if postings:
        for line in commissions:
            journal.extend(commission_postings(line))
        journal.extend(payout_posting(payout) for payout in ix.payouts)

    margin_lines = margins(ix.purchases, ix.resales, anomalies)
    voided_purchases = frozenset(target_id for kind, target_id in voiding.targets if kind == "purchase")
    shares = rebate_shares(ix.rebates, ix.purchases, anomalies, voided_purchases)
    if postings:
        journal.extend(rebate_postings(margin_lines, shares, ix.pass_throughs))
    journal.sort(key=lambda p: (p.date, p.kind, p.ref))
    return Books(
        as_of=as_of,
        introducers=tuple(sorted(ix.introducers.values(), key=lambda i: i.introducer_id)),
        introductions=tuple(introductions),
        commissions=tuple(commissions),
        balances=balances(commissions, ix.payouts),
        donations=donations(commissions),
        margins=tuple(margin_lines),
        rebate_shares=tuple(shares),
        rebates=rebates(margin_lines, shares, ix.pass_throughs),
        postings=tuple(journal),
        anomalies=tuple(sorted(set(anomalies), key=lambda a: (a.kind, a.fact_id, a.message))),
        trial_balance=trial_balance(journal),
        invoices=tuple(sorted(ix.invoices.values(), key=lambda i: (i.issue_date, i.invoice_id))),
        credit_notes=tuple(
            sorted(
                (n for ns in ix.credit_notes.values() for n in ns),
                key=lambda n: (n.issue_date, n.credit_note_id),
            )
        ),
        pass_throughs=tuple(sorted(ix.pass_throughs, key=lambda p: (p.date, p.pass_through_id))),
        purchases=tuple(sorted(ix.purchases.values(), key=lambda p: p.purchase_id)),
        payouts=tuple(sorted(ix.payouts, key=lambda p: (p.date, p.payout_id))),
        clients=tuple(sorted(ix.clients.values(), key=lambda c: c.client_id)),
        advisers=tuple(sorted(ix.advisers.values(), key=lambda a: a.adviser_id)),
        disclosures=tuple(sorted(ix.disclosures, key=lambda d: (d.date, d.vendor_commission_id))),
        voids=voiding.voids,
        voided=tuple(voiding.voided[key] for key in sorted(voiding.voided)),
        bank_details=tuple(sorted(ix.bank_details, key=lambda b: (b.introducer_id, b.effective_date))),
        payout_runs=tuple(ix.payout_runs[r] for r in sorted(ix.payout_runs)),
        run_approvals=tuple(ix.run_approvals[r] for r in sorted(ix.run_approvals)),
    )


def _orphans(
    kind: str,
    children: Mapping[str, Sequence[CreditNoteIssued | PaymentReceived | ResaleInvoiced]],
    parents: Mapping[str, object],
    what: str,
) -> list[Anomaly]:
    return [
        Anomaly(kind, child.key[1], f"{what} {parent_id!r}, which the ledger does not know (yet)")
        for parent_id, group in children.items()
        if parent_id not in parents
        for child in group
    ]


def _check_orphans(ix: _Index, anomalies: list[Anomaly]) -> None:
    """Credit notes, payments and resales whose parent is not (yet) known."""
    anomalies.extend(_orphans("unknown_invoice", ix.credit_notes, ix.invoices, "credit note for invoice"))
    anomalies.extend(_orphans("unknown_invoice", ix.payments, ix.invoices, "payment for invoice"))
    anomalies.extend(_orphans("unknown_purchase", ix.resales, ix.purchases, "resale of purchase"))
