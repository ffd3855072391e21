"""Derived events: their deltas add up to the report's figures, and their ids are stable."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from hypothesis import given, settings

from ledger.application.derive import DerivedEvent, Deriver
from ledger.application.outbound import OUTBOUND_MODELS
from ledger.application.report import render_report
from ledger.bootstrap import build_ephemeral_ledger
from tests.conftest import EXAMPLE_NAMES, EXAMPLES
from tests.ledger.strategies import histories, lines


def derive_all(raw_lines: list[str]) -> tuple[list[DerivedEvent], dict[str, Any]]:
    ledger = build_ephemeral_ledger()
    ledger.submit(raw_lines)
    deriver = Deriver()
    events: list[DerivedEvent] = []
    for position, fact in enumerate(ledger.index.by_position, start=1):
        events.extend(deriver.advance(position, fact))
    report = render_report(ledger.books(), head_position=ledger.head_position, head_hash=ledger.head_hash)
    return events, report


def assert_deltas_match_report(events: list[DerivedEvent], report: dict[str, Any]) -> None:
    amounts: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    payable: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    donations: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    owed: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for e in events:
        d = e.data
        if e.kind in {"commission.accrued", "commission.adjusted"}:
            amounts[(d["invoice_id"], d["introduction_id"])] += Decimal(d["delta"])
        elif e.kind == "commission.payable":
            payable[(d["invoice_id"], d["introduction_id"])] += Decimal(d["delta"])
        elif e.kind == "donation.credited":
            donations[(d["donor_id"], d["currency"])] += Decimal(d["amount"])
        elif e.kind == "rebate.owed":
            owed[(d["client_id"], d["currency"])] += Decimal(d["delta"])
    rows = {(c["invoice_id"], c["introduction_id"]): c for c in report["commissions"]}
    for key in amounts.keys() | rows.keys():
        assert amounts.get(key, Decimal(0)) == Decimal(rows[key]["amount"] if key in rows else 0), key
        assert payable.get(key, Decimal(0)) == Decimal(rows[key]["payable"] if key in rows else 0), key
    expected_donations = {(d["donor_id"], d["currency"]): Decimal(d["amount"]) for d in report["donations"]}
    assert {k: v for k, v in donations.items() if v} == {k: v for k, v in expected_donations.items() if v}
    expected_owed = {(r["client_id"], r["currency"]): Decimal(r["owed"]) for r in report["rebates"]}
    assert {k: v for k, v in owed.items() if v} == {k: v for k, v in expected_owed.items() if v}


def test_examples_derive_events_that_sum_to_the_report() -> None:
    """On the worked examples, derived deltas sum to each commission, payable, donation, rebate."""
    raw = [line for n in EXAMPLE_NAMES for line in (EXAMPLES / f"{n}.jsonl").read_text().splitlines()]
    events, report = derive_all(raw)
    assert_deltas_match_report(events, report)
    kinds = {e.kind for e in events}
    assert {
        "introducer.registered",
        "commission.accrued",
        "commission.adjusted",
        "commission.payable",
        "donation.credited",
        "rebate.owed",
        "rebate.passed_through",
    } <= kinds
    assert len({e.id for e in events}) == len(events)


def test_back_dated_credit_note_publishes_an_adjustment_with_the_delta() -> None:
    """A credit note arriving after its invoice adjusts the commission by the difference."""
    raw = (EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines()
    events, _ = derive_all(raw)
    adjusted = [e for e in events if e.kind == "commission.adjusted" and e.data["invoice_id"] == "2025-0920"]
    assert [(e.data["previous_amount"], e.data["amount"], e.data["delta"]) for e in adjusted] == [
        ("180.00", "150.00", "-30.00")
    ]


@settings(max_examples=150, deadline=None)
@given(history=histories())
def test_derived_deltas_sum_to_the_report_on_any_history(history: list[dict[str, Any]]) -> None:
    """Whatever the order and content, derived deltas add up to the report's figures."""
    events, report = derive_all(lines(history))
    assert_deltas_match_report(events, report)
    assert len({e.id for e in events}) == len(events)


def test_derivation_is_deterministic() -> None:
    """Deriving the same log twice gives the same events with the same ids."""
    raw = [line for n in EXAMPLE_NAMES for line in (EXAMPLES / f"{n}.jsonl").read_text().splitlines()]
    first, _ = derive_all(raw)
    second, _ = derive_all(raw)
    assert first == second


@settings(max_examples=100, deadline=None)
@given(history=histories())
def test_every_derived_event_matches_its_outbound_model(history: list[dict[str, Any]]) -> None:
    """Derived events' data validate strictly against the published outbound models."""
    events, _ = derive_all(lines(history))
    for event in events:
        OUTBOUND_MODELS[event.kind].model_validate(event.data)
