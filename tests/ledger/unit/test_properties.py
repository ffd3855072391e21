"""Property-based checks of the books on generated histories."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.application.report import render_report
from ledger.bootstrap import build_ephemeral_ledger
from tests.ledger.strategies import histories, lines

ORDER_FREE_KEYS = (
    "introductions",
    "commissions",
    "balances",
    "donations",
    "rebates",
    "margins",
    "rebate_shares",
    "trial_balance",
    "anomalies",
)


def replay(raw_lines: list[str]) -> dict[str, Any]:
    ledger = build_ephemeral_ledger()
    outcomes = ledger.ingest(raw_lines)
    assert all(o.status != "rejected" for o in outcomes), [o for o in outcomes if o.status == "rejected"]
    report = render_report(ledger.books(), head_position=ledger.head_position, head_hash=ledger.head_hash)
    return {key: report[key] for key in ORDER_FREE_KEYS}


@settings(max_examples=150, deadline=None)
@given(history=histories(), data=st.data())
def test_any_permutation_gives_the_same_report(history: list[dict[str, Any]], data: st.DataObject) -> None:
    """The figures are a function of the facts, not of their arrival order."""
    shuffled = data.draw(st.permutations(history))
    assert replay(lines(shuffled)) == replay(lines(history))


@settings(max_examples=100, deadline=None)
@given(history=histories(), data=st.data())
def test_duplicated_envelopes_change_nothing(history: list[dict[str, Any]], data: st.DataObject) -> None:
    """Re-sent envelopes (same id) and re-sent facts (new id, same data) change nothing."""
    extra = data.draw(st.lists(st.sampled_from(history), min_size=1, max_size=5))
    resent = [
        {**doc, "id": f"again-{i}"}
        for i, doc in enumerate(data.draw(st.lists(st.sampled_from(history), max_size=3)))
    ]
    assert replay(lines(history + extra + resent)) == replay(lines(history))


@settings(max_examples=150, deadline=None)
@given(history=histories())
def test_books_balance_and_rebates_split_exactly(history: list[dict[str, Any]]) -> None:
    """Debits equal credits per currency; every rebate's shares add up to the rebate."""
    report = replay(lines(history))
    for currency, sums in report["trial_balance"].items():
        assert sums["debits"] == sums["credits"], currency
    rebates = {
        d["data"]["rebate_id"]: Decimal(d["data"]["amount"])
        for d in history
        if d["type"] == "coop.ledger.rebate.received.v1"
    }
    split: dict[str, Decimal] = {}
    for share in report["rebate_shares"]:
        split[share["rebate_id"]] = split.get(share["rebate_id"], Decimal(0)) + Decimal(share["amount"])
    for rebate_id, total in split.items():
        assert total == rebates[rebate_id], rebate_id
    for row in report["balances"]:
        assert Decimal(row["outstanding"]) == Decimal(row["payable"]) - Decimal(row["paid"])
        assert Decimal(row["payable"]) <= Decimal(row["accrued"])


@settings(max_examples=100, deadline=None)
@given(history=histories())
def test_fully_credited_invoice_carries_zero(history: list[dict[str, Any]]) -> None:
    """An invoice whose credit notes cover its whole net carries a zero commission."""
    net = {
        d["data"]["invoice_id"]: Decimal(d["data"]["net_amount"])
        for d in history
        if d["type"] == "coop.ledger.invoice.issued.v1"
    }
    credited: dict[str, Decimal] = {}
    for d in history:
        if d["type"] == "coop.ledger.credit_note.issued.v1":
            credited[d["data"]["invoice_id"]] = credited.get(d["data"]["invoice_id"], Decimal(0)) + Decimal(
                d["data"]["net_amount"]
            )
    report = replay(lines(history))
    for row in report["commissions"]:
        if credited.get(row["invoice_id"], Decimal(0)) >= net[row["invoice_id"]]:
            assert Decimal(row["amount"]) == 0 and Decimal(row["base"]) == 0, row
            assert Decimal(row["payable"]) == 0


def test_report_is_json_serialisable_with_stable_keys() -> None:
    """The report's top-level keys are the contract's, in a fixed order."""
    ledger = build_ephemeral_ledger()
    report = render_report(ledger.books(), head_position=0, head_hash="0" * 64)
    assert list(report)[:3] == ["report_version", "as_of", "head"]
    for key in (
        "introductions",
        "commissions",
        "balances",
        "donations",
        "rebates",
        "trial_balance",
        "rejected",
    ):
        assert key in report
    json.dumps(report)
