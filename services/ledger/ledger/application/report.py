"""The report of ``contract.md``: the books rendered as plain JSON-ready data.

Lists are sorted by their ids and keys come in a fixed order, so the same history always
gives byte-identical JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from ledger.domain.books import Books, CommissionLine, VoidLine
from ledger.domain.facts import FactVoided, VendorCommissionReceived
from ledger.domain.money import format_amount, format_rate

__all__ = ["RejectedLine", "commission_row", "disclosure_row", "render_report", "void_row"]

REPORT_VERSION = 1


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """A rejected line of an ``--events`` file."""

    line: int
    envelope_id: str | None
    reason: str
    message: str


def _day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def commission_row(c: CommissionLine) -> dict[str, Any]:
    """One commission line as the report shows it (also the payload of derived events)."""
    m = c.currency
    return {
        "invoice_id": c.invoice_id,
        "introduction_id": c.introduction_id,
        "introducer_id": c.introducer_id,
        "adviser_id": c.adviser_id,
        "client_id": c.client_id,
        "beneficiary_id": c.beneficiary_id,
        "donor_id": c.donor_id,
        "rule": c.rule,
        "year": c.year,
        "rate": format_rate(c.rate),
        "window_start": c.window_start.isoformat(),
        "window_end": c.window_end.isoformat(),
        "invoice_date": c.invoice_date.isoformat(),
        "invoice_net": format_amount(c.invoice_net, m),
        "credited_net": format_amount(c.credited_net, m),
        "base": format_amount(c.base, m),
        "amount": format_amount(c.amount, m),
        "gross": format_amount(c.gross, m),
        "paid": format_amount(c.paid, m),
        "payable": format_amount(c.payable, m),
        "currency": m,
    }


def disclosure_row(d: VendorCommissionReceived) -> dict[str, Any]:
    """A vendor commission disclosed to its client (report ``disclosures``, statements)."""
    return {
        "vendor_commission_id": d.vendor_commission_id,
        "adviser_id": d.adviser_id,
        "client_id": d.client_id,
        "supplier_id": d.supplier_id,
        "date": d.date.isoformat(),
        "currency": d.currency,
        "amount": format_amount(d.amount, d.currency),
        "description": d.description,
    }


def void_row(v: VoidLine | FactVoided) -> dict[str, Any]:
    """A void as every document shows it (report ``voids``, statements)."""
    return {
        "void_id": v.void_id,
        "target_type": v.target_type,
        "target_id": v.target_id,
        "date": v.date.isoformat(),
        "reason": v.reason,
        "requested_by": v.requested_by,
        "approved_by": v.approved_by,
    }


def render_report(
    books: Books,
    *,
    head_position: int,
    head_hash: str,
    rejected: Sequence[RejectedLine] = (),
    summary: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The full report document."""
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "as_of": _day(books.as_of),
        "head": {"position": head_position, "hash": head_hash},
        "introductions": [
            {
                "introduction_id": i.introduction_id,
                "introducer_id": i.introducer_id,
                "client_id": i.client_id,
                "adviser_id": i.adviser_id,
                "date": i.date.isoformat(),
                "charter_rule": i.charter_rule.value,
                "rule": i.rule,
                "schedule": [
                    {"rate": format_rate(rate), "months": months, "start": None, "end": None}
                    for rate, months in i.terms
                ]
                if not i.windows
                else [
                    {
                        "rate": format_rate(w.rate),
                        "months": w.months,
                        "start": w.start.isoformat(),
                        "end": w.end.isoformat(),
                    }
                    for w in i.windows
                ],
                "first_invoice_date": _day(i.first_invoice_date),
                "last_invoice_before": _day(i.last_invoice_before),
                "below_minimum": i.below_minimum,
                "terms_reason": i.terms_reason,
                "recommended_rate": None if i.recommended_rate is None else format_rate(i.recommended_rate),
            }
            for i in books.introductions
        ],
        "commissions": [commission_row(c) for c in books.commissions],
        "balances": [
            {
                "beneficiary_id": b.beneficiary_id,
                "currency": b.currency,
                "accrued": format_amount(b.accrued, b.currency),
                "payable": format_amount(b.payable, b.currency),
                "paid": format_amount(b.paid, b.currency),
                "outstanding": format_amount(b.outstanding, b.currency),
                "advance": format_amount(b.advance, b.currency),
            }
            for b in books.balances
        ],
        "donations": [
            {"donor_id": d.donor_id, "currency": d.currency, "amount": format_amount(d.amount, d.currency)}
            for d in books.donations
        ],
        "rebates": [
            {
                "client_id": r.client_id,
                "currency": r.currency,
                "owed": format_amount(r.owed, r.currency),
                "passed_through": format_amount(r.passed_through, r.currency),
                "outstanding": format_amount(r.outstanding, r.currency),
                "margins": format_amount(r.margins, r.currency),
                "rebate_shares": format_amount(r.rebate_shares, r.currency),
            }
            for r in books.rebates
        ],
        "margins": [
            {
                "purchase_id": m.purchase_id,
                "client_id": m.client_id,
                "supplier_id": m.supplier_id,
                "currency": m.currency,
                "cost": format_amount(m.cost, m.currency),
                "resold": format_amount(m.resold, m.currency),
                "margin": format_amount(m.margin, m.currency),
            }
            for m in books.margins
        ],
        "rebate_shares": [
            {
                "rebate_id": s.rebate_id,
                "purchase_id": s.purchase_id,
                "client_id": s.client_id,
                "supplier_id": s.supplier_id,
                "currency": s.currency,
                "cost": format_amount(s.cost, s.currency),
                "amount": format_amount(s.amount, s.currency),
            }
            for s in books.rebate_shares
        ],
        "trial_balance": {
            currency: {"debits": format_amount(debits, currency), "credits": format_amount(credits, currency)}
            for currency, (debits, credits) in books.trial_balance.items()
        },
        "disclosures": [disclosure_row(d) for d in books.disclosures],
        "voids": [{**void_row(v), "applied": v.applied} for v in books.voids],
        "anomalies": [{"kind": a.kind, "fact_id": a.fact_id, "message": a.message} for a in books.anomalies],
        "rejected": [
            {"line": r.line, "id": r.envelope_id, "reason": r.reason, "message": r.message} for r in rejected
        ],
    }
    if summary is not None:
        report["summary"] = summary
    return report
