"""Exports: the CloudEvents history round-trips, the beancount books check and balance."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from beancount import loader
from beancount.core import realization
from hypothesis import given, settings

from ledger.adapters.exports import CSV_COLUMNS, JOURNAL_COLUMNS, beancount_text, commissions_csv, journal_csv
from ledger.application.ledger import Ledger
from ledger.application.report import render_report
from ledger.bootstrap import build_ephemeral_ledger
from tests.conftest import EXAMPLE_NAMES, EXAMPLES
from tests.ledger.strategies import histories, lines


def replay(raw: list[str] | list[bytes]) -> Ledger:
    ledger = build_ephemeral_ledger()
    for start in range(0, len(raw), 1000):
        ledger.ingest(raw[start : start + 1000])
    return ledger


def report(ledger: Ledger) -> dict[str, Any]:
    return render_report(ledger.books(), head_position=ledger.head_position, head_hash=ledger.head_hash)


def example_lines() -> list[str]:
    return [line for n in EXAMPLE_NAMES for line in (EXAMPLES / f"{n}.jsonl").read_text().splitlines()]


def check_beancount(text: str) -> dict[str, Decimal]:
    """Load with beancount (what bean-check does); no errors allowed; final balances by account."""
    entries, errors, _ = loader.load_string(text)
    assert not errors, [str(e.message) for e in errors[:5]]
    real = realization.realize(entries)
    balances: dict[str, Decimal] = {}
    for account in realization.iter_children(real):
        for position in account.balance:
            balances[f"{account.account} {position.units.currency}"] = position.units.number
    return balances


@settings(max_examples=60, deadline=None)
@given(history=histories())
def test_cloudevents_export_round_trips(history: list[dict[str, Any]]) -> None:
    """Exporting the accepted history and replaying it gives exactly the same report."""
    live = replay(lines(history))
    exported = list(live.history())
    assert report(replay(exported)) == report(live)


def test_cloudevents_export_filters_by_business_date() -> None:
    """--as-of and --since keep facts by their business date; registrations always stay."""
    live = replay(example_lines())
    early = [line.decode() for line in live.history(as_of=__import__("datetime").date(2025, 3, 31))]
    assert any('"invoice_id":"2025-0311"' in line for line in early)
    assert not any('"invoice_id":"2025-0920"' in line for line in early)
    later = [line.decode() for line in live.history(since=__import__("datetime").date(2026, 1, 1))]
    assert any("introducer.registered" in line for line in later)
    assert not any('"invoice_id":"2025-0311"' in line for line in later)


def test_beancount_export_of_the_examples_checks_and_matches_the_report() -> None:
    """The examples' books pass beancount's checks (balance assertions included) and their
    account balances equal the report's balances and rebates."""
    live = replay(example_lines())
    rep = report(live)
    balances = check_beancount(beancount_text(live.books()))
    for row in rep["balances"]:
        name = row["beneficiary_id"][:1].upper() + row["beneficiary_id"][1:]
        payable = balances.get(f"Liabilities:Commissions:Payable:{name} {row['currency']}", Decimal(0))
        accrued = balances.get(f"Liabilities:Commissions:Accrued:{name} {row['currency']}", Decimal(0))
        assert -payable == Decimal(row["outstanding"]), row
        assert -accrued == Decimal(row["accrued"]) - Decimal(row["payable"]), row
    for row in rep["rebates"]:
        name = row["client_id"][:1].upper() + row["client_id"][1:]
        assert -balances[f"Liabilities:Rebates:Owed:{name} {row['currency']}"] == Decimal(row["outstanding"])


@settings(max_examples=40, deadline=None)
@given(history=histories())
def test_beancount_export_checks_on_generated_histories(history: list[dict[str, Any]]) -> None:
    """Any generated history exports to books that beancount accepts, also from a --since day,
    and total commission expense equals the report's accrued commissions."""
    live = replay(lines(history))
    books = live.books()
    balances = check_beancount(beancount_text(books))
    for currency in {c.currency for c in books.commissions}:
        expense = sum(
            (
                v
                for k, v in balances.items()
                if k.startswith("Expenses:Commissions:") and k.endswith(currency)
            ),
            Decimal(0),
        )
        assert expense == sum((c.amount for c in books.commissions if c.currency == currency), Decimal(0))
    if books.postings:
        middle = books.postings[len(books.postings) // 2].date
        assert check_beancount(beancount_text(books, since=middle)) == balances


def test_csv_export_lists_the_commission_lines() -> None:
    """The CSV has a header and one row per commission line, with the report's figures."""
    live = replay(example_lines())
    rows = list(csv.DictReader(io.StringIO(commissions_csv(live.books()))))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert [(r["invoice_id"], r["amount"]) for r in rows] == [
        (c["invoice_id"], c["amount"]) for c in report(live)["commissions"]
    ]


@settings(max_examples=40, deadline=None)
@given(history=histories())
def test_journal_csv_has_every_leg_and_each_posting_balances(history: list[dict[str, Any]]) -> None:
    """The journal CSV has one row per posting leg, every posting's debits equal its
    credits, and per account the debits minus credits equal the beancount balances."""
    books = replay(lines(history)).books()
    rows = list(csv.DictReader(io.StringIO(journal_csv(books))))
    assert len(rows) == sum(len(p.legs) for p in books.postings)
    if rows:
        assert tuple(rows[0].keys()) == JOURNAL_COLUMNS
    per_posting: dict[tuple[str, str, str], Decimal] = {}
    per_account: dict[str, Decimal] = {}
    for row in rows:
        amount = Decimal(row["debit"] or "0") - Decimal(row["credit"] or "0")
        assert (row["debit"] == "") != (row["credit"] == "")
        key = (row["date"], row["kind"], row["ref"])
        per_posting[key] = per_posting.get(key, Decimal(0)) + amount
        account = f"{row['account']} {row['currency']}"
        per_account[account] = per_account.get(account, Decimal(0)) + amount
    assert all(total == 0 for total in per_posting.values())
    for currency, (debits, credits) in books.trial_balance.items():
        assert sum(Decimal(r["debit"] or "0") for r in rows if r["currency"] == currency) == debits
        assert sum(Decimal(r["credit"] or "0") for r in rows if r["currency"] == currency) == credits
    assert {k: v for k, v in per_account.items() if v} == {
        f"{account} {currency}": amount for (account, currency), amount in _leg_sums(books).items() if amount
    }


def _leg_sums(books: Any) -> dict[tuple[str, str], Decimal]:
    sums: dict[tuple[str, str], Decimal] = {}
    for posting in books.postings:
        for account, amount in posting.legs:
            key = (str(account), posting.currency)
            sums[key] = sums.get(key, Decimal(0)) + amount
    return sums
