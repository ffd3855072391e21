"""Transparency statements: what one client or one introducer can see of the books.

The charter requires the commission to be "à la connaissance du client": the client's
statement lists every invoice, the introduction and introducer behind any commission on it,
the rule, rate, window, amount and beneficiary, and what the cooperative owes it back.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from ledger.application.report import disclosure_row, void_row
from ledger.domain.books import Books, CommissionLine
from ledger.domain.facts import (
    COOPERATIVE,
    IntroductionRecorded,
    PaymentReceived,
    PayoutRecorded,
    PurchaseRecorded,
    RebatePassedThrough,
    RebateReceived,
    ResaleInvoiced,
)
from ledger.domain.money import format_amount, format_rate

__all__ = ["client_statement", "introducer_statement", "void_parties"]


def _commission(c: CommissionLine, names: dict[str, str]) -> dict[str, Any]:
    return {
        "introduction_id": c.introduction_id,
        "introducer_id": c.introducer_id,
        "introducer_name": names.get(c.introducer_id, c.introducer_id),
        "adviser_id": c.adviser_id,
        "client_id": c.client_id,
        "invoice_id": c.invoice_id,
        "invoice_date": c.invoice_date.isoformat(),
        "rule": c.rule,
        "year": c.year,
        "rate": format_rate(c.rate),
        "window_start": c.window_start.isoformat(),
        "window_end": c.window_end.isoformat(),
        "base": format_amount(c.base, c.currency),
        "amount": format_amount(c.amount, c.currency),
        "payable": format_amount(c.payable, c.currency),
        "beneficiary_id": c.beneficiary_id,
        "donated": c.beneficiary_id == COOPERATIVE,
        "currency": c.currency,
    }


def void_parties(books: Books) -> dict[str, dict[str, list[str]]]:
    """For each applied void, the clients, introducers and advisers its target concerned
    (the void appears on their statements)."""
    invoices = {i.invoice_id: i for i in books.invoices}
    voided_purchases = (f for f in books.voided if isinstance(f, PurchaseRecorded))
    purchases = {p.purchase_id: p for p in (*books.purchases, *voided_purchases)}
    line_introducers: dict[str, set[str]] = defaultdict(set)
    for c in books.commissions:
        line_introducers[c.invoice_id].add(c.introducer_id)
    by_target = {v.key: v for v in books.voided}
    out: dict[str, dict[str, list[str]]] = {}
    for void in books.voids:
        fact = by_target.get((void.target_type, void.target_id))
        clients: set[str] = set()
        introducers: set[str] = set()
        advisers: set[str] = set()
        if isinstance(fact, IntroductionRecorded):
            clients.add(fact.client_id)
            introducers.add(fact.introducer_id)
            advisers.add(fact.adviser_id)
        elif isinstance(fact, PaymentReceived) and fact.invoice_id in invoices:
            clients.add(invoices[fact.invoice_id].client_id)
            advisers.add(invoices[fact.invoice_id].adviser_id)
            introducers |= line_introducers.get(fact.invoice_id, set())
        elif isinstance(fact, PayoutRecorded):
            introducers.add(fact.beneficiary_id)
            advisers.add(fact.adviser_id)
        elif isinstance(fact, (PurchaseRecorded, RebatePassedThrough)):
            clients.add(fact.client_id)
        elif isinstance(fact, ResaleInvoiced) and fact.purchase_id in purchases:
            clients.add(purchases[fact.purchase_id].client_id)
        elif isinstance(fact, RebateReceived):
            clients |= {purchases[p].client_id for p in fact.purchase_ids if p in purchases}
        out[void.void_id] = {
            "clients": sorted(clients),
            "introducers": sorted(introducers),
            "advisers": sorted(advisers),
        }
    return out


def _voids(
    books: Books, *, client_id: str | None = None, introducer_id: str | None = None
) -> list[dict[str, Any]]:
    parties = void_parties(books)
    return [
        void_row(v)
        for v in books.voids
        if v.applied
        and (
            (client_id is not None and client_id in parties[v.void_id]["clients"])
            or (introducer_id is not None and introducer_id in parties[v.void_id]["introducers"])
        )
    ]


def _totals(rows: list[tuple[str, Decimal]]) -> list[dict[str, str]]:
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for currency, amount in rows:
        sums[currency] += amount
    return [{"currency": c, "amount": format_amount(v, c)} for c, v in sorted(sums.items())]


def client_statement(books: Books, client_id: str, head: dict[str, Any]) -> dict[str, Any]:
    """Every invoice of the client with the commissions on it, and rebates owed back."""
    names = {i.introducer_id: i.display_name for i in books.introducers}
    by_invoice: dict[str, list[CommissionLine]] = defaultdict(list)
    for c in books.commissions:
        if c.client_id == client_id:
            by_invoice[c.invoice_id].append(c)
    credited: dict[str, Decimal] = defaultdict(Decimal)
    for note in books.credit_notes:
        credited[note.invoice_id] += note.net_amount
    invoices = [
        {
            "invoice_id": inv.invoice_id,
            "adviser_id": inv.adviser_id,
            "issue_date": inv.issue_date.isoformat(),
            "currency": inv.currency,
            "net_amount": format_amount(inv.net_amount, inv.currency),
            "credited_net": format_amount(credited[inv.invoice_id], inv.currency),
            "commissions": [_commission(c, names) for c in by_invoice.get(inv.invoice_id, [])],
        }
        for inv in books.invoices
        if inv.client_id == client_id
    ]
    mine = [c for c in books.commissions if c.client_id == client_id]
    return {
        "statement": "client",
        "client_id": client_id,
        "as_of": None if books.as_of is None else books.as_of.isoformat(),
        "head": head,
        "invoices": invoices,
        "commission_totals": _totals([(c.currency, c.amount) for c in mine]),
        "introductions": [
            {
                "introduction_id": i.introduction_id,
                "introducer_id": i.introducer_id,
                "introducer_name": names.get(i.introducer_id, i.introducer_id),
                "adviser_id": i.adviser_id,
                "date": i.date.isoformat(),
                "rule": i.rule,
                "charter_rule": i.charter_rule.value,
                "below_minimum": i.below_minimum,
                "terms_reason": i.terms_reason,
            }
            for i in books.introductions
            if i.client_id == client_id
        ],
        "margins": [
            {
                "purchase_id": m.purchase_id,
                "supplier_id": m.supplier_id,
                "currency": m.currency,
                "cost": format_amount(m.cost, m.currency),
                "resold": format_amount(m.resold, m.currency),
                "margin": format_amount(m.margin, m.currency),
            }
            for m in books.margins
            if m.client_id == client_id
        ],
        "rebate_shares": [
            {
                "rebate_id": s.rebate_id,
                "purchase_id": s.purchase_id,
                "supplier_id": s.supplier_id,
                "currency": s.currency,
                "cost": format_amount(s.cost, s.currency),
                "amount": format_amount(s.amount, s.currency),
                "date": s.date.isoformat(),
            }
            for s in books.rebate_shares
            if s.client_id == client_id
        ],
        "pass_throughs": [
            {
                "pass_through_id": p.pass_through_id,
                "date": p.date.isoformat(),
                "currency": p.currency,
                "amount": format_amount(p.amount, p.currency),
            }
            for p in books.pass_throughs
            if p.client_id == client_id
        ],
        "disclosures": [disclosure_row(d) for d in books.disclosures if d.client_id == client_id],
        "voids": _voids(books, client_id=client_id),
        "rebates": [
            {
                "currency": r.currency,
                "margins": format_amount(r.margins, r.currency),
                "rebate_shares": format_amount(r.rebate_shares, r.currency),
                "owed": format_amount(r.owed, r.currency),
                "passed_through": format_amount(r.passed_through, r.currency),
                "outstanding": format_amount(r.outstanding, r.currency),
            }
            for r in books.rebates
            if r.client_id == client_id
        ],
    }


def introducer_statement(books: Books, introducer_id: str, head: dict[str, Any]) -> dict[str, Any]:
    """The introducer's introductions, commissions (with beneficiary), balance and donations."""
    names = {i.introducer_id: i.display_name for i in books.introducers}
    mine = [c for c in books.commissions if c.introducer_id == introducer_id]
    return {
        "statement": "introducer",
        "introducer_id": introducer_id,
        "introducer_name": names.get(introducer_id, introducer_id),
        "as_of": None if books.as_of is None else books.as_of.isoformat(),
        "head": head,
        "introductions": [
            {
                "introduction_id": i.introduction_id,
                "client_id": i.client_id,
                "adviser_id": i.adviser_id,
                "date": i.date.isoformat(),
                "rule": i.rule,
                "charter_rule": i.charter_rule.value,
                "first_invoice_date": None
                if i.first_invoice_date is None
                else i.first_invoice_date.isoformat(),
                "schedule": [
                    {"rate": format_rate(w.rate), "start": w.start.isoformat(), "end": w.end.isoformat()}
                    for w in i.windows
                ],
                "below_minimum": i.below_minimum,
                "terms_reason": i.terms_reason,
                "recommended_rate": None if i.recommended_rate is None else format_rate(i.recommended_rate),
            }
            for i in books.introductions
            if i.introducer_id == introducer_id
        ],
        "commissions": [_commission(c, names) for c in mine],
        "commission_totals": _totals([(c.currency, c.amount) for c in mine]),
        "balances": [
            {
                "currency": b.currency,
                "accrued": format_amount(b.accrued, b.currency),
                "payable": format_amount(b.payable, b.currency),
                "paid": format_amount(b.paid, b.currency),
                "outstanding": format_amount(b.outstanding, b.currency),
            }
            for b in books.balances
            if b.beneficiary_id == introducer_id
        ],
        "donations": [
            {"currency": d.currency, "amount": format_amount(d.amount, d.currency)}
            for d in books.donations
            if d.donor_id == introducer_id
        ],
        "voids": _voids(books, introducer_id=introducer_id),
    }
