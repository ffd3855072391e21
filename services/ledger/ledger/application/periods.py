"""Monthly statements (rules R9): frozen at each close, provisional for the next open month.

A closed month's statement is a pure function of the log up to its close's position, so it
is computed once, stored beside the log (:meth:`FactStore.save_statement`) and read back
as stored: it never changes, however many facts arrive later. ``audit verify`` recomputes
each one from the log and compares the bytes.

The statement document (``shared/spec/contract.md``, ``ledger report --period``) holds the
R9 rows and, for the statements of each party, the month's detail lines: commissions on
invoices dated in the month, payouts, margins, rebate shares and pass-throughs dated in the
month, and the voids learned since the previous close.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from ledger.application.ledger import Ledger
from ledger.application.report import commission_row, disclosure_row, void_row
from ledger.domain.books import MonthBooks, PrefixBooks, build_books, month_books
from ledger.domain.facts import (
    COOPERATIVE,
    Fact,
    FactVoided,
    IntroductionRecorded,
    PaymentReceived,
    PayoutRecorded,
    PeriodClosed,
    PurchaseRecorded,
    RebatePassedThrough,
    RebateReceived,
    ResaleInvoiced,
    VendorCommissionReceived,
)
from ledger.domain.money import format_amount
from ledger.domain.periods import (
    BALANCE_FIGURES,
    REBATE_FIGURES,
    Figures,
    PeriodRow,
    figures_of,
    month_end,
    next_period,
    parse_period,
    previous_period,
    statement_rows,
)

__all__ = [
    "PeriodNotAvailableError",
    "closed_statement",
    "closing_figures",
    "compute_statement",
    "period_statement",
    "period_totals",
    "statement_json",
]

STATEMENT_VERSION = 1


class PeriodNotAvailableError(ValueError):
    """A month whose statement does not exist (neither closed nor the next open one)."""


@dataclass(frozen=True, slots=True)
class CloseAt:
    """A close and where it stands in the log."""

    close: PeriodClosed
    position: int


def _figures(values: tuple[Decimal, ...], names: tuple[str, ...], currency: str) -> dict[str, str]:
    return {name: format_amount(value, currency) for name, value in zip(names, values, strict=True)}


def _row(row: PeriodRow) -> dict[str, Any]:
    kind, party, currency = row.key
    names = BALANCE_FIGURES if kind == "balance" else REBATE_FIGURES
    return {
        ("beneficiary_id" if kind == "balance" else "client_id"): party,
        "currency": currency,
        "opening": _figures(row.opening, names, currency),
        "adjustments": _figures(row.adjustments, names, currency),
        "movements": _figures(row.movements, names, currency),
        "closing": _figures(row.closing, names, currency),
    }


def closing_figures(statement: dict[str, Any]) -> Figures:
    """The ``closing`` figures of a statement document, as numbers (the next close's opening)."""
    out: Figures = {}
    for row in statement["balances"]:
        out[("balance", row["beneficiary_id"], row["currency"])] = tuple(
            Decimal(row["closing"][name]) for name in BALANCE_FIGURES
        )
    for row in statement["rebates"]:
        out[("rebate", row["client_id"], row["currency"])] = tuple(
            Decimal(row["closing"][name]) for name in REBATE_FIGURES
        )
    return out


def _touched(fact: Fact | None, end: MonthBooks) -> dict[str, list[str]]:
    """The introducers, clients and advisers a voided fact concerned (so each is told of the
    void on its statement); nobody when the target is not known."""
    introducers: set[str] = set()
    clients: set[str] = set()
    advisers: set[str] = set()
    purchases = end.purchases
    if isinstance(fact, IntroductionRecorded):
        introducers.add(fact.introducer_id)
        clients.add(fact.client_id)
        advisers.add(fact.adviser_id)
    elif isinstance(fact, PaymentReceived):
        invoice = end.invoices.get(fact.invoice_id)
        if invoice is not None:
            clients.add(invoice.client_id)
            advisers.add(invoice.adviser_id)
        introducers |= end.introducers_of(fact.invoice_id)
    elif isinstance(fact, PayoutRecorded):
        introducers.add(fact.beneficiary_id)
        advisers.add(fact.adviser_id)
    elif isinstance(fact, PurchaseRecorded | RebatePassedThrough):
        clients.add(fact.client_id)
    elif isinstance(fact, ResaleInvoiced):
        clients |= {purchases[fact.purchase_id].client_id} if fact.purchase_id in purchases else set()
    elif isinstance(fact, RebateReceived):
        clients |= {purchases[p].client_id for p in fact.purchase_ids if p in purchases}
    elif isinstance(fact, VendorCommissionReceived):
        clients.add(fact.client_id)
        advisers.add(fact.adviser_id)
    introducers.discard(COOPERATIVE)
    advisers.discard(COOPERATIVE)
    return {"introducers": sorted(introducers), "clients": sorted(clients), "advisers": sorted(advisers)}


def _details(end: MonthBooks, voids: Sequence[FactVoided]) -> dict[str, Any]:
    """The month's lines (``end`` holds those of the month), for each party's statement."""
    return {
        "commissions": [commission_row(c) for c in end.commissions],
        "payouts": [
            {
                "payout_id": p.payout_id,
                "adviser_id": p.adviser_id,
                "beneficiary_id": p.beneficiary_id,
                "date": p.date.isoformat(),
                "currency": p.currency,
                "amount": format_amount(p.amount, p.currency),
                "run_id": p.run_id,
                "end_to_end_id": p.end_to_end_id,
                "bank_reference": p.bank_reference,
            }
            for p in end.payouts
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
                "date": m.date.isoformat(),
            }
            for m in end.margins
        ],
        "rebate_shares": [
            {
                "rebate_id": s.rebate_id,
                "purchase_id": s.purchase_id,
                "client_id": s.client_id,
                "supplier_id": s.supplier_id,
                "currency": s.currency,
                "amount": format_amount(s.amount, s.currency),
                "date": s.date.isoformat(),
            }
            for s in end.rebate_shares
        ],
        "pass_throughs": [
            {
                "pass_through_id": p.pass_through_id,
                "client_id": p.client_id,
                "date": p.date.isoformat(),
                "currency": p.currency,
                "amount": format_amount(p.amount, p.currency),
            }
            for p in end.pass_throughs
        ],
        "disclosures": [disclosure_row(d) for d in end.disclosures],
        "voids": _void_rows(end, voids),
    }


def _void_rows(end: MonthBooks, voids: Sequence[FactVoided]) -> list[dict[str, Any]]:
    """The voids learned in the month, each with the parties its target concerned."""
    return [{**void_row(v), **_touched(end.voided.get(v.target), end)} for v in voids]


def compute_statement(
    facts: Sequence[Fact],
    period: str,
    *,
    close: CloseAt | None,
    previous: CloseAt | None,
    previous_closing: Figures | None,
    head: dict[str, Any],
    prefix: PrefixBooks | None = None,
) -> dict[str, Any]:
    """Month ``period``'s statement from ``facts`` (the log up to the close's position, or
    to the head for a provisional one), the previous close and its closing figures. With a
    ``prefix`` shared by the statements of successive months (in order), the books are
    brought forward from the previous month's instead of rebuilt (the result is the same)."""
    parse_period(period)
    upto = len(facts)
    before_day, end_day = month_end(previous_period(period)), month_end(period)
    month = parse_period(period)
    if prefix is not None and not prefix.can_reach(facts, before_day):
        prefix = None  # it went past this close (or the log changed under it): from the log
    if prefix is None:
        before = month_books(build_books(facts, as_of=before_day, postings=False), None)
        end = month_books(build_books(facts, as_of=end_day, postings=False), month)
    else:
        before = prefix.month(facts, before_day, None)
        end = prefix.month(facts, end_day, month)
    rows = statement_rows(figures_of(before), figures_of(end), previous_closing)
    since = previous.position if previous is not None else 0
    learned = [f for f in facts[since:upto] if isinstance(f, FactVoided)]
    return {
        "statement_version": STATEMENT_VERSION,
        "period": period,
        "status": "closed" if close is not None else "provisional",
        "close": None
        if close is None
        else {
            "period": close.close.period,
            "date": close.close.date.isoformat(),
            "closed_by": close.close.closed_by,
            "approved_by": close.close.approved_by,
            "position": close.position,
        },
        "head": head,
        "previous_close": None
        if previous is None
        else {"period": previous.close.period, "position": previous.position},
        "balances": [_row(r) for r in rows if r.key[0] == "balance"],
        "rebates": [_row(r) for r in rows if r.key[0] == "rebate"],
        "details": _details(end, learned),
    }


def statement_json(statement: dict[str, Any]) -> bytes:
    """The stored bytes of a statement (the same document always gives the same bytes)."""
    encoded: bytes = orjson.dumps(statement)
    return encoded


def available_months(closed: Sequence[str]) -> str:
    """The months with a statement, in words (for errors)."""
    if not closed:
        return "no month is closed yet: any month has a provisional statement"
    first, last = closed[0], closed[-1]
    span = first if first == last else f"{first} to {last}"
    return f"closed: {span}; provisional: {next_period(last)}"


def _close_at(ledger: Ledger, period: str) -> CloseAt | None:
    found = ledger.index.closes.get(period)
    return None if found is None else CloseAt(found[1], found[0])


def closed_statement(
    ledger: Ledger, period: str, *, save: bool, prefix: PrefixBooks | None = None
) -> dict[str, Any]:
    """The frozen statement of a closed month: as stored, or computed from the log up to
    its close (and stored, with ``save``: the store thread does it once per close), with
    the books brought forward by ``prefix`` when given (see :func:`compute_statement`)."""
    at = _close_at(ledger, period)
    assert at is not None, period
    stored = ledger.store.load_statement(period)
    if stored is not None:
        document: dict[str, Any] = orjson.loads(stored)
        return document
    previous = _close_at(ledger, previous_period(period))
    previous_closing = (
        None
        if previous is None
        else closing_figures(closed_statement(ledger, previous.close.period, save=save, prefix=prefix))
    )
    document = compute_statement(
        ledger.index.by_position[: at.position],
        period,
        close=at,
        previous=previous,
        previous_closing=previous_closing,
        head={"position": at.position, "hash": ledger.hash_at(at.position)},
        prefix=prefix,
    )
    if save:
        ledger.store.save_statement(period, at.position, statement_json(document))
    return document


def period_statement(ledger: Ledger, period: str) -> dict[str, Any]:
    """Month ``period``'s statement: frozen when closed, provisional (at the current
    position) for the next open month; :class:`PeriodNotAvailableError` otherwise."""
    try:
        parse_period(period)
    except ValueError as exc:
        raise PeriodNotAvailableError(str(exc)) from None
    if period in ledger.index.closes:
        return closed_statement(ledger, period, save=False)
    last = ledger.index.last_closed
    if last is not None and period != next_period(last):
        closed = sorted(ledger.index.closes)
        raise PeriodNotAvailableError(f"no statement for {period}: {available_months(closed)}")
    previous = None if last is None else _close_at(ledger, last)
    previous_closing = None if last is None else closing_figures(closed_statement(ledger, last, save=False))
    head = ledger.index.head
    return compute_statement(
        ledger.index.by_position[: head.position],
        period,
        close=None,
        previous=previous,
        previous_closing=previous_closing,
        head={"position": head.position, "hash": head.hash},
    )


def period_totals(statement: dict[str, Any]) -> list[dict[str, Any]]:
    """Per currency: the closing figures added over beneficiaries and over clients."""
    sums: dict[str, dict[str, Decimal]] = {}
    for row in statement["balances"]:
        into = sums.setdefault(row["currency"], {})
        for name in BALANCE_FIGURES:
            into[f"beneficiaries_{name}"] = into.get(f"beneficiaries_{name}", Decimal(0)) + Decimal(
                row["closing"][name]
            )
    for row in statement["rebates"]:
        into = sums.setdefault(row["currency"], {})
        for name in REBATE_FIGURES:
            into[f"clients_{name}"] = into.get(f"clients_{name}", Decimal(0)) + Decimal(row["closing"][name])
    out = []
    for currency, values in sorted(sums.items()):
        entry: dict[str, Any] = {"currency": currency}
        for name in BALANCE_FIGURES:
            entry[f"beneficiaries_{name}"] = format_amount(
                values.get(f"beneficiaries_{name}", Decimal(0)), currency
            )
        for name in REBATE_FIGURES:
            entry[f"clients_{name}"] = format_amount(values.get(f"clients_{name}", Decimal(0)), currency)
        out.append(entry)
    return out
