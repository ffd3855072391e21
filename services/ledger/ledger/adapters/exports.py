"""Exports accountants can check with their own tools: beancount books and CSV lines.

(The CloudEvents export is the stored log itself, see the ``export`` command.)
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from decimal import Decimal

from ledger.application.report import commission_row
from ledger.domain.accounts import Account, Posting
from ledger.domain.books import Books
from ledger.domain.money import format_amount

__all__ = ["CSV_COLUMNS", "JOURNAL_COLUMNS", "beancount_text", "commissions_csv", "journal_csv"]

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
JOURNAL_COLUMNS = (
    "date",
    "kind",
    "ref",
    "leg",
    "account",
    "account_family",
    "party",
    "currency",
    "debit",
    "credit",
    "meta",
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


def journal_csv(books: Books, since: date | None = None) -> str:
    """Every posting of the books, one row per leg (debit or credit), in journal order: what
    an auditor sums per account and per currency (debits equal credits in each posting)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(JOURNAL_COLUMNS)
    for posting in books.postings:
        if since is not None and posting.date < since:
            continue
        meta = "; ".join(f"{key}={value}" for key, value in posting.meta)
        for number, (account, amount) in enumerate(posting.legs, start=1):
            shown = format_amount(abs(amount), posting.currency)
            writer.writerow(
                (
                    posting.date.isoformat(),
                    posting.kind,
                    posting.ref,
                    number,
                    str(account),
                    account.family,
                    account.party or "",
                    posting.currency,
                    shown if amount >= 0 else "",
                    shown if amount < 0 else "",
                    meta,
                )
            )
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


def beancount_text(books: Books, since: date | None = None, title: str = "Commission ledger") -> str:
    """The books as a beancount file that passes ``bean-check``: accounts opened per
    currency, one transaction per posting group with its metadata, balance assertions at
    each month end, and (with ``since``) balances brought forward on that day."""
    postings = list(books.postings)
    names = _Names({acc.party for p in postings for acc, _ in p.legs if acc.party is not None})

    def account(raw: Account) -> str:
        return raw.family if raw.party is None else f"{raw.family}:{names(raw.party)}"

    lines = [f'option "title" "{title}"', 'option "operating_currency" "CHF"', ""]
    lines += _open_accounts(postings, account, since)
    balances: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    if since is not None:
        lines += _brought_forward([p for p in postings if p.date < since], account, balances, since)
        postings = [p for p in postings if p.date >= since]
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


def _open_accounts(
    postings: list[Posting], account: Callable[[Account], str], since: date | None
) -> list[str]:
    """One ``open`` per account, on its first posting's day (or the day before ``since``),
    with the ledger id of its party as metadata."""
    opened: dict[str, date] = {}
    currencies: dict[str, set[str]] = defaultdict(set)
    parties: dict[str, str] = {}
    for posting in postings:
        for raw, _ in posting.legs:
            acc = account(raw)
            opened[acc] = min(opened.get(acc, posting.date), posting.date)
            currencies[acc].add(posting.currency)
            if raw.party is not None:
                parties[acc] = raw.party
    open_on = {k: (min(v, since - timedelta(days=1)) if since else v) for k, v in opened.items()}
    lines = []
    for acc, day in sorted(open_on.items(), key=lambda kv: (kv[1], kv[0])):
        lines.append(f"{day.isoformat()} open {acc} {','.join(sorted(currencies[acc]))}")
        if acc in parties:
            lines.append(f'  ledger-id: "{_escape(parties[acc])}"')
    lines.append("")
    return lines


def _brought_forward(
    carried: list[Posting],
    account: Callable[[Account], str],
    balances: dict[tuple[str, str], Decimal],
    since: date,
) -> list[str]:
    """One opening transaction per currency with every balance before ``since``."""
    for p in carried:
        for raw, amount in p.legs:
            balances[(account(raw), p.currency)] += amount
    by_currency: dict[str, list[tuple[str, Decimal]]] = defaultdict(list)
    for (acc, currency), amount in sorted(balances.items()):
        if amount:
            by_currency[currency].append((acc, amount))
    lines = []
    for currency, legs in sorted(by_currency.items()):
        lines.append(f'{(since - timedelta(days=1)).isoformat()} * "Balances brought forward" "{currency}"')
        lines.extend(f"  {acc}  {format_amount(amount, currency)} {currency}" for acc, amount in legs)
        lines.append("")
    return lines


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


def _transaction(posting: Posting, account: Callable[[Account], str]) -> list[str]:
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
        f"  {account(raw)}  {format_amount(amount, posting.currency)} {posting.currency}"
        for raw, amount in posting.legs
    )
    out.append("")
    return out


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
