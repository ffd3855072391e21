"""The books: every figure the ledger derives from a set of facts.

:func:`build_books` is a pure function of the facts (and an optional as-of day): the
order in which facts arrived never matters, which is what makes a back-dated fact simply
recompute everything it touches (rule R4).
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from ledger.domain.facts import (
    COOPERATIVE,
    CreditNoteIssued,
    EligibilityChanged,
    Fact,
    IntroducerRegistered,
    IntroductionRecorded,
    InvoiceIssued,
    PaymentReceived,
    PayoutRecorded,
    PurchaseRecorded,
    RebatePassedThrough,
    RebateReceived,
    ResaleInvoiced,
)
from ledger.domain.money import fits_currency
from ledger.domain.rules import (
    RECOMMENDED_COURTESY_RATE,
    CharterRule,
    Window,
    charter_rule,
    charter_terms,
    commission_amount,
    is_below_minimum,
    is_eligible,
    payable_amount,
    retained_margin,
    schedule_windows,
    split_rebate,
    window_for,
)

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
    "build_books",
    "commission_line",
    "introduction_line",
    "pair_commission_lines",
]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class IntroductionLine:
    introduction_id: str
    introducer_id: str
    client_id: str
    adviser_id: str
    date: dt.date
    charter_rule: CharterRule
    rule: str
    terms: tuple[tuple[Decimal, int], ...]
    windows: tuple[Window, ...]
    first_invoice_date: dt.date | None
    last_invoice_before: dt.date | None
    below_minimum: bool
    terms_reason: str | None
    recommended_rate: Decimal | None


@dataclass(frozen=True, slots=True)
class CommissionLine:
    invoice_id: str
    introduction_id: str
    introducer_id: str
    adviser_id: str
    client_id: str
    beneficiary_id: str
    rule: str
    year: int
    rate: Decimal
    window_start: dt.date
    window_end: dt.date
    invoice_date: dt.date
    invoice_net: Decimal
    credited_net: Decimal
    base: Decimal
    amount: Decimal
    gross: Decimal
    paid: Decimal
    payable: Decimal
    currency: str
    #: (payment date, payment id, amount made payable by it), in payment order.
    payable_steps: tuple[tuple[dt.date, str, Decimal], ...]
    #: (credit note date, credit note id, change of the commission), in credit-note order;
    #: the commission first accrues on the invoice's own net, each step is a credit note.
    adjustment_steps: tuple[tuple[dt.date, str, Decimal], ...] = ()

    @property
    def original_amount(self) -> Decimal:
        """The commission on the invoice's net before any credit note."""
        return self.amount - sum((delta for _, _, delta in self.adjustment_steps), ZERO)

    @property
    def donor_id(self) -> str | None:
        return self.introducer_id if self.beneficiary_id == COOPERATIVE else None


@dataclass(frozen=True, slots=True)
class BalanceLine:
    beneficiary_id: str
    currency: str
    accrued: Decimal
    payable: Decimal
    paid: Decimal

    @property
    def outstanding(self) -> Decimal:
        return self.payable - self.paid

    @property
    def advance(self) -> Decimal:
        return max(self.paid - self.payable, ZERO)


@dataclass(frozen=True, slots=True)
class DonationLine:
    donor_id: str
    currency: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class MarginLine:
    purchase_id: str
    client_id: str
    supplier_id: str
    currency: str
    cost: Decimal
    resold: Decimal
    margin: Decimal
    date: dt.date


@dataclass(frozen=True, slots=True)
class RebateShareLine:
    rebate_id: str
    purchase_id: str
    client_id: str
    supplier_id: str
    currency: str
    cost: Decimal
    amount: Decimal
    date: dt.date


@dataclass(frozen=True, slots=True)
class RebateLine:
    client_id: str
    currency: str
    margins: Decimal
    rebate_shares: Decimal
    passed_through: Decimal

    @property
    def owed(self) -> Decimal:
        return self.margins + self.rebate_shares

    @property
    def outstanding(self) -> Decimal:
        return self.owed - self.passed_through


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A fact the ledger keeps but cannot (yet) count, and why: nothing is dropped
    silently. Most resolve themselves when the missing fact arrives."""

    kind: str
    fact_id: str
    message: str


@dataclass(frozen=True, slots=True)
class Posting:
    """A balanced group of legs (debits positive, credits negative) in one currency."""

    date: dt.date
    kind: str
    ref: str
    currency: str
    legs: tuple[tuple[str, Decimal], ...]
    meta: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        assert sum((amount for _, amount in self.legs), ZERO) == 0, self


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


@dataclass
class _Index:
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


def _index(facts: Iterable[Fact], as_of: dt.date | None) -> _Index:
    ix = _Index()
    for fact in facts:
        day = fact.business_date
        if as_of is not None and day is not None and day > as_of:
            continue
        if isinstance(fact, InvoiceIssued):
            ix.invoices[fact.invoice_id] = fact
            ix.by_pair[(fact.adviser_id, fact.client_id)].append(fact)
        elif isinstance(fact, CreditNoteIssued):
            ix.credit_notes[fact.invoice_id].append(fact)
        elif isinstance(fact, PaymentReceived):
            ix.payments[fact.invoice_id].append(fact)
        elif isinstance(fact, IntroductionRecorded):
            ix.introductions.append(fact)
        elif isinstance(fact, EligibilityChanged):
            ix.eligibility[fact.introducer_id].append((fact.effective_date, fact.can_receive_commission))
        elif isinstance(fact, IntroducerRegistered):
            ix.introducers[fact.introducer_id] = fact
        elif isinstance(fact, PayoutRecorded):
            ix.payouts.append(fact)
        elif isinstance(fact, PurchaseRecorded):
            ix.purchases[fact.purchase_id] = fact
        elif isinstance(fact, ResaleInvoiced):
            ix.resales[fact.purchase_id].append(fact)
        elif isinstance(fact, RebateReceived):
            ix.rebates.append(fact)
        else:
            assert isinstance(fact, RebatePassedThrough), fact
            ix.pass_throughs.append(fact)
    for invoices in ix.by_pair.values():
        invoices.sort(key=lambda inv: (inv.issue_date, inv.invoice_id))
    return ix


def build_books(facts: Iterable[Fact], as_of: dt.date | None = None) -> Books:
    """Every figure of rules R1-R6 for ``facts`` counted up to ``as_of`` (inclusive)."""
    ix = _index(facts, as_of)
    anomalies: list[Anomaly] = []
    postings: list[Posting] = []

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

    for line in commissions:
        postings.extend(_commission_postings(line))

    balances = _balances(commissions, ix.payouts)
    for payout in ix.payouts:
        postings.append(
            Posting(
                payout.date,
                "payout",
                payout.payout_id,
                payout.currency,
                (
                    (f"Liabilities:Commissions:Payable:{payout.beneficiary_id}", payout.amount),
                    (f"Assets:Cash:{payout.adviser_id}", -payout.amount),
                ),
                (("adviser", payout.adviser_id), ("beneficiary", payout.beneficiary_id)),
            )
        )
    donations = _donations(commissions)

    margins = _margins(ix, anomalies)
    shares = _rebate_shares(ix, anomalies)
    rebates = _rebates(margins, shares, ix.pass_throughs)
    postings.extend(_rebate_postings(margins, shares, ix.pass_throughs))

    postings.sort(key=lambda p: (p.date, p.kind, p.ref))
    anomalies = sorted(set(anomalies), key=lambda a: (a.kind, a.fact_id, a.message))
    return Books(
        as_of=as_of,
        introducers=tuple(sorted(ix.introducers.values(), key=lambda i: i.introducer_id)),
        introductions=tuple(introductions),
        commissions=tuple(commissions),
        balances=balances,
        donations=donations,
        margins=tuple(margins),
        rebate_shares=tuple(shares),
        rebates=rebates,
        postings=tuple(postings),
        anomalies=tuple(anomalies),
        trial_balance=_trial_balance(postings),
        invoices=tuple(sorted(ix.invoices.values(), key=lambda i: (i.issue_date, i.invoice_id))),
        credit_notes=tuple(
            sorted(
                (n for ns in ix.credit_notes.values() for n in ns),
                key=lambda n: (n.issue_date, n.credit_note_id),
            )
        ),
        pass_throughs=tuple(sorted(ix.pass_throughs, key=lambda p: (p.date, p.pass_through_id))),
    )


# Introductions and commissions (R1-R5) ----------------------------------------------


def introduction_line(
    intro: IntroductionRecorded, pair_invoices: Sequence[InvoiceIssued]
) -> IntroductionLine:
    """R1-R3 for one introduction, given every invoice of its adviser/client pair sorted by
    (issue date, invoice id): L, the charter rule, the terms, F and the dated windows."""
    split = bisect_left(pair_invoices, intro.date, key=_issue_date)
    last_before = pair_invoices[split - 1].issue_date if split > 0 else None
    if intro.prior_last_invoice_date is not None:
        last_before = max(filter(None, (last_before, intro.prior_last_invoice_date)))
    rule = charter_rule(intro.date, last_before)
    required = charter_terms(rule)
    terms = intro.terms if intro.terms is not None else required
    first = pair_invoices[split].issue_date if split < len(pair_invoices) else None
    windows = schedule_windows(first, terms) if first is not None else ()
    return IntroductionLine(
        introduction_id=intro.introduction_id,
        introducer_id=intro.introducer_id,
        client_id=intro.client_id,
        adviser_id=intro.adviser_id,
        date=intro.date,
        charter_rule=rule,
        rule="custom" if intro.terms is not None else rule.value,
        terms=tuple((t.rate, t.months) for t in terms),
        windows=windows,
        first_invoice_date=first,
        last_invoice_before=last_before,
        below_minimum=intro.terms is not None and is_below_minimum(intro.terms, required),
        terms_reason=intro.terms_reason,
        recommended_rate=RECOMMENDED_COURTESY_RATE if rule is CharterRule.REINTRODUCTION_NONE else None,
    )


def _issue_date(invoice: InvoiceIssued) -> dt.date:
    return invoice.issue_date


def commission_line(
    intro: IntroductionLine,
    invoice: InvoiceIssued,
    credit_notes: Iterable[CreditNoteIssued],
    payments: Iterable[PaymentReceived],
    eligibility: Iterable[tuple[dt.date, bool]],
    *,
    anomalies: list[Anomaly],
) -> CommissionLine | None:
    """R4-R5: the commission ``intro`` carries on ``invoice`` (None when the invoice is
    outside its windows), with its credit notes, payments and the introducer's eligibility."""
    if invoice.issue_date < intro.date:
        return None
    window = window_for(invoice.issue_date, intro.windows)
    if window is None:
        return None
    credited_net = credited_tax = ZERO
    adjustments: list[tuple[dt.date, str, Decimal]] = []
    so_far = commission_amount(invoice.net_amount, window.rate, invoice.currency)
    for note in sorted(credit_notes, key=lambda n: (n.issue_date, n.credit_note_id)):
        if _fits(note.net_amount, invoice.currency, note.credit_note_id, anomalies) and _fits(
            note.tax_amount, invoice.currency, note.credit_note_id, anomalies
        ):
            credited_net += note.net_amount
            credited_tax += note.tax_amount
            after = commission_amount(
                max(invoice.net_amount - credited_net, ZERO), window.rate, invoice.currency
            )
            if after != so_far:
                adjustments.append((note.issue_date, note.credit_note_id, after - so_far))
                so_far = after
    base = invoice.net_amount - credited_net
    gross = base + invoice.tax_amount - credited_tax
    if base < 0:
        anomalies.append(
            Anomaly(
                "over_credited",
                invoice.invoice_id,
                f"credit notes ({credited_net}) exceed the invoice's net amount "
                f"({invoice.net_amount}); base counted as 0",
            )
        )
        base = ZERO
    gross = max(gross, ZERO)
    amount = commission_amount(base, window.rate, invoice.currency)
    counted = sorted(
        (p for p in payments if _fits(p.amount, invoice.currency, p.payment_id, anomalies)),
        key=lambda p: (p.date, p.payment_id),
    )
    steps: list[tuple[dt.date, str, Decimal]] = []
    paid = ZERO
    made_payable = ZERO
    for payment in counted:
        paid += payment.amount
        now_payable = payable_amount(amount, gross, paid, invoice.currency)
        if now_payable != made_payable:
            steps.append((payment.date, payment.payment_id, now_payable - made_payable))
            made_payable = now_payable
    eligible = is_eligible(eligibility, invoice.issue_date)
    return CommissionLine(
        invoice_id=invoice.invoice_id,
        introduction_id=intro.introduction_id,
        introducer_id=intro.introducer_id,
        adviser_id=intro.adviser_id,
        client_id=intro.client_id,
        beneficiary_id=intro.introducer_id if eligible else COOPERATIVE,
        rule=intro.rule,
        year=window.year,
        rate=window.rate,
        window_start=window.start,
        window_end=window.end,
        invoice_date=invoice.issue_date,
        invoice_net=invoice.net_amount,
        credited_net=credited_net,
        base=base,
        amount=amount,
        gross=gross,
        paid=paid,
        payable=made_payable,
        currency=invoice.currency,
        payable_steps=tuple(steps),
        adjustment_steps=tuple(adjustments),
    )


def pair_commission_lines(
    intro: IntroductionLine,
    pair_invoices: Sequence[InvoiceIssued],
    credit_notes: Mapping[str, Sequence[CreditNoteIssued]],
    payments: Mapping[str, Sequence[PaymentReceived]],
    eligibility: Sequence[tuple[dt.date, bool]],
    *,
    anomalies: list[Anomaly],
) -> list[CommissionLine]:
    """Every commission line of one introduction over its pair's sorted invoices."""
    if not intro.windows:
        return []
    last_end = intro.windows[-1].end
    lines: list[CommissionLine] = []
    for invoice in pair_invoices[bisect_left(pair_invoices, intro.windows[0].start, key=_issue_date) :]:
        if invoice.issue_date >= last_end:
            break
        line = commission_line(
            intro,
            invoice,
            credit_notes.get(invoice.invoice_id, ()),
            payments.get(invoice.invoice_id, ()),
            eligibility,
            anomalies=anomalies,
        )
        if line is not None:
            lines.append(line)
    return lines


def _fits(amount: Decimal, currency: str, fact_id: str, anomalies: list[Anomaly]) -> bool:
    if fits_currency(amount, currency):
        return True
    anomalies.append(
        Anomaly(
            "too_many_decimals",
            fact_id,
            f"amount {amount} has more decimals than {currency} allows; not counted",
        )
    )
    return False


def _check_orphans(ix: _Index, anomalies: list[Anomaly]) -> None:
    for invoice_id, notes in ix.credit_notes.items():
        if invoice_id not in ix.invoices:
            anomalies.extend(
                Anomaly(
                    "unknown_invoice",
                    n.credit_note_id,
                    f"credit note for invoice {invoice_id!r}, which the ledger does not know (yet)",
                )
                for n in notes
            )
    for invoice_id, payments in ix.payments.items():
        if invoice_id not in ix.invoices:
            anomalies.extend(
                Anomaly(
                    "unknown_invoice",
                    p.payment_id,
                    f"payment for invoice {invoice_id!r}, which the ledger does not know (yet)",
                )
                for p in payments
            )
    for purchase_id, resales in ix.resales.items():
        if purchase_id not in ix.purchases:
            anomalies.extend(
                Anomaly(
                    "unknown_purchase",
                    r.resale_id,
                    f"resale of purchase {purchase_id!r}, which the ledger does not know (yet)",
                )
                for r in resales
            )


def _commission_postings(line: CommissionLine) -> list[Posting]:
    cur = line.currency
    meta = (
        ("invoice", line.invoice_id),
        ("introduction", line.introduction_id),
        ("rule", line.rule),
        ("rate", str(line.rate)),
        ("window", f"{line.window_start}..{line.window_end}"),
    )
    accrued_to = f"Liabilities:Commissions:Accrued:{line.introducer_id}"
    ref = f"{line.invoice_id}/{line.introduction_id}"
    # the commission accrues on the invoice's net, then each credit note adjusts it (R4)
    changes: list[tuple[dt.date, str, str, Decimal, tuple[tuple[str, str], ...]]] = [
        (line.invoice_date, "commission", ref, line.original_amount, meta)
    ]
    changes.extend(
        (day, "commission_adjustment", f"{ref}/{note_id}", delta, (*meta, ("credit_note", note_id)))
        for day, note_id, delta in line.adjustment_steps
    )
    out: list[Posting] = []
    for day, kind, change_ref, amount, change_meta in changes:
        if amount == 0:
            continue
        out.append(
            Posting(
                day,
                kind,
                change_ref,
                cur,
                ((f"Expenses:Commissions:{line.adviser_id}", amount), (accrued_to, -amount)),
                change_meta,
            )
        )
        if line.beneficiary_id == COOPERATIVE:
            out.append(
                Posting(
                    day,
                    "donation",
                    change_ref,
                    cur,
                    ((accrued_to, amount), (f"Liabilities:Commissions:Accrued:{COOPERATIVE}", -amount)),
                    (*change_meta, ("donor", line.introducer_id)),
                )
            )
    beneficiary = line.beneficiary_id
    for day, payment_id, amount in line.payable_steps:
        out.append(
            Posting(
                day,
                "payable",
                f"{line.invoice_id}/{line.introduction_id}/{payment_id}",
                cur,
                (
                    (f"Liabilities:Commissions:Accrued:{beneficiary}", amount),
                    (f"Liabilities:Commissions:Payable:{beneficiary}", -amount),
                ),
                (*meta, ("payment", payment_id)),
            )
        )
    return out


def _balances(commissions: list[CommissionLine], payouts: list[PayoutRecorded]) -> tuple[BalanceLine, ...]:
    sums: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
    for line in commissions:
        row = sums[(line.beneficiary_id, line.currency)]
        row[0] += line.amount
        row[1] += line.payable
    for payout in payouts:
        sums[(payout.beneficiary_id, payout.currency)][2] += payout.amount
    return tuple(BalanceLine(b, c, *v) for (b, c), v in sorted(sums.items()))


def _donations(commissions: list[CommissionLine]) -> tuple[DonationLine, ...]:
    sums: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for line in commissions:
        if line.donor_id is not None:
            sums[(line.donor_id, line.currency)] += line.amount
    return tuple(DonationLine(d, c, v) for (d, c), v in sorted(sums.items()))


# Purchasing centre (R6) -------------------------------------------------------------


def _margins(ix: _Index, anomalies: list[Anomaly]) -> list[MarginLine]:
    lines = []
    for purchase_id in sorted(ix.resales):
        purchase = ix.purchases.get(purchase_id)
        if purchase is None:
            continue
        resales = [
            r for r in ix.resales[purchase_id] if _fits(r.amount, purchase.currency, r.resale_id, anomalies)
        ]
        if not resales:
            continue
        resold = sum((r.amount for r in resales), ZERO)
        lines.append(
            MarginLine(
                purchase_id,
                purchase.client_id,
                purchase.supplier_id,
                purchase.currency,
                purchase.cost_amount,
                resold,
                retained_margin(purchase.cost_amount, resold),
                max(r.date for r in resales),
            )
        )
    return lines


def _rebate_shares(ix: _Index, anomalies: list[Anomaly]) -> list[RebateShareLine]:
    lines: list[RebateShareLine] = []
    for rebate in sorted(ix.rebates, key=lambda r: r.rebate_id):
        purchases = [ix.purchases.get(pid) for pid in rebate.purchase_ids]
        missing = [pid for pid, p in zip(rebate.purchase_ids, purchases, strict=True) if p is None]
        if missing:
            anomalies.append(
                Anomaly(
                    "unknown_purchase",
                    rebate.rebate_id,
                    f"rebate covers purchases the ledger does not know (yet): "
                    f"{', '.join(missing)}; not split",
                )
            )
            continue
        known = [p for p in purchases if p is not None]
        wrong = [p.purchase_id for p in known if p.currency != rebate.currency]
        if wrong:
            anomalies.append(
                Anomaly(
                    "currency_mismatch",
                    rebate.rebate_id,
                    f"rebate in {rebate.currency} covers purchases in another currency: "
                    f"{', '.join(wrong)}; not split",
                )
            )
            continue
        amounts = split_rebate(rebate.amount, [p.cost_amount for p in known], rebate.currency)
        lines.extend(
            RebateShareLine(
                rebate.rebate_id,
                p.purchase_id,
                p.client_id,
                rebate.supplier_id,
                rebate.currency,
                p.cost_amount,
                share,
                rebate.date,
            )
            for p, share in zip(known, amounts, strict=True)
        )
    return lines


def _rebates(
    margins: list[MarginLine], shares: list[RebateShareLine], pass_throughs: list[RebatePassedThrough]
) -> tuple[RebateLine, ...]:
    sums: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
    for m in margins:
        sums[(m.client_id, m.currency)][0] += m.margin
    for s in shares:
        sums[(s.client_id, s.currency)][1] += s.amount
    for p in pass_throughs:
        sums[(p.client_id, p.currency)][2] += p.amount
    return tuple(RebateLine(client, cur, *v) for (client, cur), v in sorted(sums.items()))


def _rebate_postings(
    margins: list[MarginLine], shares: list[RebateShareLine], pass_throughs: list[RebatePassedThrough]
) -> list[Posting]:
    out = [
        Posting(
            m.date,
            "margin",
            m.purchase_id,
            m.currency,
            (("Income:Purchasing:Resales", m.margin), (f"Liabilities:Rebates:Owed:{m.client_id}", -m.margin)),
            (("purchase", m.purchase_id), ("cost", str(m.cost)), ("resold", str(m.resold))),
        )
        for m in margins
        if m.margin > 0
    ]
    by_rebate: dict[str, list[RebateShareLine]] = defaultdict(list)
    for s in shares:
        by_rebate[s.rebate_id].append(s)
    for rebate_id, group in by_rebate.items():
        first = group[0]
        total = sum((s.amount for s in group), ZERO)
        legs = [(f"Assets:Rebates:Receivable:{first.supplier_id}", total)]
        legs.extend((f"Liabilities:Rebates:Owed:{s.client_id}", -s.amount) for s in group)
        out.append(
            Posting(
                first.date,
                "rebate",
                rebate_id,
                first.currency,
                tuple(legs),
                (("purchases", ",".join(s.purchase_id for s in group)),),
            )
        )
    out.extend(
        Posting(
            p.date,
            "pass_through",
            p.pass_through_id,
            p.currency,
            ((f"Liabilities:Rebates:Owed:{p.client_id}", p.amount), ("Assets:Cash:Purchasing", -p.amount)),
        )
        for p in pass_throughs
    )
    return out


def _trial_balance(postings: Iterable[Posting]) -> dict[str, tuple[Decimal, Decimal]]:
    sums: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    for posting in postings:
        for _, amount in posting.legs:
            if amount > 0:
                sums[posting.currency][0] += amount
            else:
                sums[posting.currency][1] -= amount
    return {cur: (v[0], v[1]) for cur, v in sorted(sums.items())}
