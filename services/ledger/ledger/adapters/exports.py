"""Exports accountants can check with their own tools: beancount books and CSV lines.

(The CloudEvents export is the stored log itself, see the ``export`` command.)
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

from ledger.application.report import commission_row
from ledger.domain.books import Books, Posting
from ledger.domain.money import format_amount

__all__ = ["CSV_COLUMNS", "beancount_text", "commissions_csv"]

CSV_COLUMNS = (
    "invoice_id",
    "invoice_date",
    "introduction_id",
    "introducer_id",
    "adviser_id",
    "client_id",
    "beneficiary_id",
    "donor_id",
    "rule",
    "year",
    "rate",
    "window_start",
    "window_end",
    "invoice_net",
    "credited_net",
    "base",
    "amount",
    "gross",
    "paid",
    "payable",
    "currency",
)
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


def commissions_csv(books: Books, since: date | None = None) -> str:
    """The commission lines as CSV (RFC 4180, header first), for spreadsheets."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for line in books.commissions:
        if since is None or line.invoice_date >= since:
            writer.writerow({k: ("" if v is None else v) for k, v in commission_row(line).items()})
    return out.getvalue()


class _Names:
    """Maps ledger ids to beancount account components, injectively."""

    def __init__(self, ids: Iterable[str]) -> None:
        plain: dict[str, list[str]] = defaultdict(list)
        for ident in sorted(set(ids)):
            plain[_component(ident)].append(ident)
        self._map: dict[str, str] = {}
        for component, idents in plain.items():
            for ident in idents:
                unique = len(idents) == 1 and _SAFE.match(ident) is not None
                digest = hashlib.sha256(ident.encode()).hexdigest()[:8]
                self._map[ident] = component if unique else f"{component}-{digest}"

    def __call__(self, ident: str) -> str:
        return self._map[ident]


def _component(ident: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9-]", "-", ident)
    return cleaned[:1].upper() + cleaned[1:]


def _split(account: str) -> tuple[str, str | None]:
    """'Liabilities:Commissions:Accrued:int-marie' -> ('Liabilities:Commissions:Accrued', 'int-marie')."""
    for prefix in (
        "Expenses:Commissions:",
        "Liabilities:Commissions:Accrued:",
        "Liabilities:Commissions:Payable:",
        "Assets:Cash:",
        "Liabilities:Rebates:Owed:",
        "Assets:Rebates:Receivable:",
    ):
        if account.startswith(prefix) and account != "Assets:Cash:Purchasing":
            return prefix[:-1], account[len(prefix) :]
    return account, None


def beancount_text(books: Books, since: date | None = None, title: str = "Commission ledger") -> str:
    """The books as a beancount file that passes ``bean-check``: accounts opened per
    currency, one transaction per posting group with its metadata, balance assertions at
    each month end, and (with ``since``) balances brought forward on that day."""
    postings = list(books.postings)
    ids = {ident for p in postings for acc, _ in p.legs if (ident := _split(acc)[1]) is not None}
    names = _Names(ids)

    def account(raw: str) -> str:
        base, ident = _split(raw)
        return base if ident is None else f"{base}:{names(ident)}"

    lines = [f'option "title" "{title}"', 'option "operating_currency" "CHF"', ""]
    opened: dict[str, date] = {}
    currencies: dict[str, set[str]] = defaultdict(set)
    for posting in postings:
        for raw, _ in posting.legs:
            acc = account(raw)
            opened[acc] = min(opened.get(acc, posting.date), posting.date)
            currencies[acc].add(posting.currency)
    open_on = {k: (min(v, since - timedelta(days=1)) if since else v) for k, v in opened.items()}
    for acc, day in sorted(open_on.items(), key=lambda kv: (kv[1], kv[0])):
        ident = next((i for i in ids if acc.endswith(":" + names(i))), None)
        lines.append(f"{day.isoformat()} open {acc} {','.join(sorted(currencies[acc]))}")
        if ident is not None:
            lines.append(f'  ledger-id: "{_escape(ident)}"')
    lines.append("")
    balances: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    if since is not None:
        carried = [p for p in postings if p.date < since]
        postings = [p for p in postings if p.date >= since]
        for p in carried:
            for raw, amount in p.legs:
                balances[(account(raw), p.currency)] += amount
        by_currency: dict[str, list[tuple[str, Decimal]]] = defaultdict(list)
        for (acc, currency), amount in sorted(balances.items()):
            if amount:
                by_currency[currency].append((acc, amount))
        for currency, legs in sorted(by_currency.items()):
            lines.append(
                f'{(since - timedelta(days=1)).isoformat()} * "Balances brought forward" "{currency}"'
            )
            lines.extend(f"  {acc}  {format_amount(amount, currency)} {currency}" for acc, amount in legs)
            lines.append("")
    month_end: date | None = None
    for posting in postings:
        boundary = _next_month(posting.date)
        if month_end is not None and boundary != month_end:
            lines.extend(_assertions(month_end, balances))
        month_end = boundary
        lines.extend(_transaction(posting, account))
        for raw, amount in posting.legs:
            balances[(account(raw), posting.currency)] += amount
    if month_end is not None:
        lines.extend(_assertions(month_end, balances))
    return "\n".join(lines) + "\n"


def _next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def _assertions(day: date, balances: dict[tuple[str, str], Decimal]) -> list[str]:
    out = [f"; balances at the end of {(day - timedelta(days=1)).strftime('%Y-%m')}"]
    out.extend(
        f"{day.isoformat()} balance {acc}  {format_amount(amount, currency)} {currency}"
        for (acc, currency), amount in sorted(balances.items())
    )
    out.append("")
    return out


def _transaction(posting: Posting, account: object) -> list[str]:
    meta = dict(posting.meta)
    narration = {
        "commission": "Introduction commission on invoice {invoice} ({rule}, rate {rate})",
        "commission_adjustment": "Commission on invoice {invoice} adjusted by credit note {credit_note}",
        "donation": "Commission on invoice {invoice} credited to the cooperative, donor {donor}",
        "payable": "Commission on invoice {invoice} made payable by payment {payment}",
        "payout": "Payout to {beneficiary}",
        "margin": "Retained margin on purchase {purchase}, owed back to the client",
        "rebate": "Supplier rebate split over purchases {purchases}",
        "pass_through": "Rebates and margins passed through to the client",
    }[posting.kind].format_map(defaultdict(str, meta))
    out = [
        f'{posting.date.isoformat()} * "{_escape(posting.kind)}" "{_escape(narration)}"',
        f'  ref: "{_escape(posting.ref)}"',
    ]
    out.extend(f'  {key}: "{_escape(value)}"' for key, value in posting.meta)
    out.extend(
        f"  {account(raw)}  {format_amount(amount, posting.currency)} {posting.currency}"  # type: ignore[operator]
        for raw, amount in posting.legs
    )
    out.append("")
    return out


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
