"""Introduction commissions (rules R1-R5): the schedule of each introduction, the commission
each invoice carries, what the client's payments make payable, donations to the
cooperative, and their double-entry postings. Pure functions of the facts given."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from ledger.domain.accounts import ACCRUED, ADVISER_CASH, COMMISSION_EXPENSES, PAYABLE, Account, Posting
from ledger.domain.anomalies import Anomaly, fits
from ledger.domain.facts import (
    COOPERATIVE,
    CreditNoteIssued,
    IntroductionRecorded,
    InvoiceIssued,
    PaymentReceived,
    PayoutRecorded,
)
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
    schedule_windows,
    window_for,
)

__all__ = [
    "BalanceLine",
    "CommissionLine",
    "DonationLine",
    "IntroductionLine",
    "balances",
    "commission_line",
    "commission_postings",
    "donations",
    "introduction_line",
    "pair_commission_lines",
    "payout_posting",
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
        if fits(note.net_amount, invoice.currency, note.credit_note_id, anomalies) and fits(
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
        (p for p in payments if fits(p.amount, invoice.currency, p.payment_id, anomalies)),
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


def commission_postings(line: CommissionLine) -> list[Posting]:
    """The accrual (and each credit note's adjustment), the donation, and each payment's
    payable step of one commission line."""
    cur = line.currency
    meta = (
        ("invoice", line.invoice_id),
        ("introduction", line.introduction_id),
        ("rule", line.rule),
        ("rate", str(line.rate)),
        ("window", f"{line.window_start}..{line.window_end}"),
    )
    accrued_to = ACCRUED.of(line.introducer_id)
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
                ((COMMISSION_EXPENSES.of(line.adviser_id), amount), (accrued_to, -amount)),
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
                    ((accrued_to, amount), (ACCRUED.of(COOPERATIVE), -amount)),
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
                ((ACCRUED.of(beneficiary), amount), (PAYABLE.of(beneficiary), -amount)),
                (*meta, ("payment", payment_id)),
            )
        )
    return out


def balances(
    commissions: Iterable[CommissionLine], payouts: Iterable[PayoutRecorded]
) -> tuple[BalanceLine, ...]:
    """One row per (beneficiary, currency): accrued, payable, paid."""
    sums: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
    for line in commissions:
        row = sums[(line.beneficiary_id, line.currency)]
        row[0] += line.amount
        row[1] += line.payable
    for payout in payouts:
        sums[(payout.beneficiary_id, payout.currency)][2] += payout.amount
    return tuple(BalanceLine(b, c, *v) for (b, c), v in sorted(sums.items()))


def donations(commissions: Iterable[CommissionLine]) -> tuple[DonationLine, ...]:
    """One row per (donor, currency): commissions credited to the cooperative."""
    sums: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for line in commissions:
        if line.donor_id is not None:
            sums[(line.donor_id, line.currency)] += line.amount
    return tuple(DonationLine(d, c, v) for (d, c), v in sorted(sums.items()))


def payout_posting(payout: PayoutRecorded) -> Posting:
    """Money the adviser paid the beneficiary: out of the adviser's cash, off what is payable."""
    legs: tuple[tuple[Account, Decimal], ...] = (
        (PAYABLE.of(payout.beneficiary_id), payout.amount),
        (ADVISER_CASH.of(payout.adviser_id), -payout.amount),
    )
    meta = (("adviser", payout.adviser_id), ("beneficiary", payout.beneficiary_id))
    return Posting(payout.date, "payout", payout.payout_id, payout.currency, legs, meta)
