"""Derived events: their deltas add up to the report's figures, and their ids are stable."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from random import Random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.application.derive import DerivedEvent, Deriver
from ledger.application.outbound import OUTBOUND_MODELS
from ledger.application.report import render_report
from ledger.bootstrap import build_ephemeral_ledger
from tests.conftest import EXAMPLE_NAMES, EXAMPLES
from tests.ledger.strategies import histories, histories_with_voids, lines


def derive_all(raw_lines: list[str]) -> tuple[list[DerivedEvent], dict[str, Any]]:
    ledger = build_ephemeral_ledger()
    ledger.ingest(raw_lines)
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


def test_an_invoice_dated_on_the_first_invoice_date_touches_only_itself() -> None:
    """An invoice dated exactly F costs one accrual and no adjustment of the pair's other
    lines; one dated a day earlier moves F and re-windows them; deltas sum to the report."""

    def envelope(n: int, kind: str, data: dict[str, Any]) -> str:
        return json.dumps(
            {
                "specversion": "1.0",
                "id": f"f-{n}",
                "source": "t",
                "type": f"coop.ledger.{kind}.v1",
                "data": data,
            }
        )

    def invoice(n: int, day: str) -> str:
        data = {"invoice_id": f"inv-{n}", "adviser_id": "adv", "client_id": "cli", "issue_date": day,
                "currency": "CHF", "net_amount": "1000.00", "tax_amount": "0.00"}  # fmt: skip
        return envelope(n, "invoice.issued", data)

    head = [
        envelope(1, "introducer.registered", {"introducer_id": "int", "display_name": "I"}),
        envelope(
            2,
            "introduction.recorded",
            {
                "introduction_id": "intro",
                "introducer_id": "int",
                "client_id": "cli",
                "adviser_id": "adv",
                "date": "2025-01-01",
            },
        ),
        invoice(3, "2025-03-10"),
        invoice(4, "2026-03-09"),  # last day of year 1 from F = 2025-03-10; year 2 from F = 2025-03-09
    ]
    same_day, _ = derive_all([*head, invoice(5, "2025-03-10")])
    base, _ = derive_all(head)
    extra = same_day[len(base) :]
    assert [(e.kind, e.data["invoice_id"]) for e in extra] == [("commission.accrued", "inv-5")]
    earlier, report = derive_all([*head, invoice(5, "2025-03-09")])
    moved = earlier[len(base) :]
    assert ("commission.adjusted", "inv-4") in {(e.kind, e.data["invoice_id"]) for e in moved}
    assert_deltas_match_report(earlier, report)


def _state(deriver: Deriver) -> dict[str, Any]:
    """The deriver's recomputed state (empty entries of its default dicts left out)."""
    return {
        "lines": {k: v for k, v in deriver._lines.items() if v},
        "intro_lines": {k: v for k, v in deriver._intro_lines.items() if v},
        "rebates": {k: v for k, v in deriver._rebates.items() if v},
        "balances": {k: v for k, v in deriver._balances.items() if any(v)},
        "voided": deriver._voided,
        "position": deriver.position,
    }


@settings(max_examples=150, deadline=None)
@given(history=histories_with_voids(), cut=st.floats(0, 1), order=st.randoms(use_true_random=False))
def test_fast_forward_reaches_the_state_advance_reaches(
    history: list[dict[str, Any]], cut: float, order: Random
) -> None:
    """A restart's fast-forward over the published positions leaves the deriver exactly where
    advancing fact by fact does: same state, and the same events derived from there on (in
    any arrival order: voids before their targets, payments before their invoices)."""
    if order.random() < 0.5:
        order.shuffle(history)
    ledger = build_ephemeral_ledger()
    ledger.ingest(lines(history))
    facts = ledger.index.by_position
    split = round(cut * len(facts))
    stepped, jumped = Deriver(), Deriver()
    for position, fact in enumerate(facts[:split], start=1):
        stepped.advance(position, fact)
    jumped.fast_forward(facts[:split])
    assert _state(jumped) == _state(stepped)
    for position, fact in enumerate(facts[split:], start=split + 1):
        assert jumped.advance(position, fact) == stepped.advance(position, fact), position
    assert _state(jumped) == _state(stepped)


def test_fast_forward_over_the_examples_then_advance_derives_the_same_events() -> None:
    """On every worked example cut at every position, fast-forward then advance derives
    what advancing throughout derives."""
    for name in EXAMPLE_NAMES:
        ledger = build_ephemeral_ledger()
        ledger.ingest((EXAMPLES / f"{name}.jsonl").read_text().splitlines())
        facts = ledger.index.by_position
        for split in range(len(facts) + 1):
            stepped, jumped = Deriver(), Deriver()
            expected = [e for p, f in enumerate(facts, start=1) for e in stepped.advance(p, f)]
            jumped.fast_forward(facts[:split])
            got = [e for p, f in enumerate(facts[split:], start=split + 1) for e in jumped.advance(p, f)]
            assert got == [e for e in expected if e.position > split], (name, split)


def test_the_deriver_keeps_lines_with_shared_amounts(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a generated history, the commission lines the deriver keeps (live and fast-forwarded)
    hold one object per distinct amount, and the same lines as a deriver without sharing."""
    from bench.history import generate

    from ledger.application import derive, values

    for table in ("_decimals", "_dates", "_texts"):  # empty tables: earlier tests may have filled them
        monkeypatch.setattr(values, table, {})

    ledger = build_ephemeral_ledger()
    ledger.ingest(list(generate(4_000, seed=5)))
    live, quick = Deriver(), Deriver()
    for position, fact in enumerate(ledger.index.by_position, start=1):
        live.advance(position, fact)
    quick.fast_forward(ledger.index.by_position)
    for deriver in (live, quick):
        kept = [line for lines in deriver._lines.values() for line in lines.values()]
        assert len(kept) > 100
        amounts = [line.amount for line in kept]
        distinct_values = {(str(a), a) for a in amounts}
        distinct_objects = {id(a) for a in amounts}
        assert len(distinct_objects) == len(distinct_values) < len(amounts)
    plain = Deriver()
    monkeypatch.setattr(derive, "_compact", lambda line: line)
    plain.fast_forward(ledger.index.by_position)
    assert plain._lines == quick._lines
