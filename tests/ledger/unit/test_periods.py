"""Period closes (rules R9): the formulas row by row, frozen statements that never change,
prior-period adjustments, and the refusals."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.application.contract import Rejection, parse_envelope
from ledger.application.periods import (
    PeriodNotAvailableError,
    closed_statement,
    period_statement,
    statement_json,
)
from ledger.bootstrap import build_ephemeral_ledger
from tests.conftest import envelope
from tests.ledger.strategies import histories_with_voids, lines

PARTS = ("opening", "adjustments", "movements", "closing")


def close(period: str, day: str, **over: str) -> str:
    data = {"period": period, "date": day, "closed_by": "tre-ana", "approved_by": "tre-luc", **over}
    return envelope("period.closed", data, id=f"close-{period}-{day}")


def introduction(intro: str = "intro-1", introducer: str = "int-bob", client: str = "cli-a") -> str:
    data = {
        "introduction_id": intro,
        "introducer_id": introducer,
        "client_id": client,
        "adviser_id": "adv-a",
        "date": "2025-01-01",
    }
    return envelope("introduction.recorded", data)


def invoice(number: str, day: str, net: str, currency: str = "CHF", client: str = "cli-a") -> str:
    data = {
        "invoice_id": number,
        "adviser_id": "adv-a",
        "client_id": client,
        "issue_date": day,
        "currency": currency,
        "net_amount": net,
    }
    return envelope("invoice.issued", data)


def payment(number: str, invoice_id: str, day: str, amount: str) -> str:
    return envelope(
        "payment.received", {"payment_id": number, "invoice_id": invoice_id, "date": day, "amount": amount}
    )


def payout(number: str, day: str, amount: str, currency: str = "CHF") -> str:
    data = {
        "payout_id": number,
        "adviser_id": "adv-a",
        "beneficiary_id": "int-bob",
        "date": day,
        "currency": currency,
        "amount": amount,
    }
    return envelope("payout.recorded", data)


def credit_note(number: str, invoice_id: str, day: str, net: str) -> str:
    data = {"credit_note_id": number, "invoice_id": invoice_id, "issue_date": day, "net_amount": net}
    return envelope("credit_note.issued", data)


def void(target_type: str, target_id: str) -> str:
    data = {
        "void_id": f"v-{target_id}",
        "target_type": target_type,
        "target_id": target_id,
        "date": "2025-05-20",
        "reason": "recorded in error",
        "requested_by": "tre-ana",
        "approved_by": "tre-luc",
    }
    return envelope("fact.voided", data)


def ledger_of(raw: list[str]) -> Any:
    ledger = build_ephemeral_ledger()
    outcomes = ledger.ingest(raw)
    assert all(o.status != "rejected" for o in outcomes), [o for o in outcomes if o.status == "rejected"]
    return ledger


def row(statement: dict[str, Any], who: str, currency: str = "CHF") -> dict[str, dict[str, str]]:
    rows = statement["balances"] + statement["rebates"]
    return next(
        r for r in rows if who in (r.get("beneficiary_id"), r.get("client_id")) and r["currency"] == currency
    )


def figures(r: dict[str, dict[str, str]], name: str) -> tuple[str, str, str, str]:
    return tuple(r[part][name] for part in PARTS)  # type: ignore[return-value]


def assert_adds_up(statement: dict[str, Any]) -> None:
    for r in statement["balances"] + statement["rebates"]:
        for name in r["closing"]:
            o, a, m, c = (Decimal(x) for x in figures(r, name))
            assert o + a + m == c, (r, name)


BASE = [
    introduction(),
    invoice("INV-1", "2025-01-10", "1000.00"),
    payment("PAY-1", "INV-1", "2025-01-20", "1000.00"),
]


@pytest.mark.parametrize(
    ("history", "period", "who", "name", "expected"),
    [
        # first close: the opening is what stood before the month, no adjustment
        (
            [*BASE, invoice("INV-2", "2025-02-05", "500.00"), close("2025-02", "2025-03-01")],
            "2025-02",
            "int-bob",
            "accrued",
            ("100.00", "0.00", "50.00", "150.00"),
        ),
        # payout in the open month: a movement of paid, outstanding down
        (
            [*BASE, close("2025-01", "2025-02-01"), payout("PO-1", "2025-02-10", "60.00")],
            "2025-02",
            "int-bob",
            "paid",
            ("0.00", "0.00", "60.00", "60.00"),
        ),
        (
            [*BASE, close("2025-01", "2025-02-01"), payout("PO-1", "2025-02-10", "60.00")],
            "2025-02",
            "int-bob",
            "outstanding",
            ("100.00", "0.00", "-60.00", "40.00"),
        ),
        # a late credit note dated in the closed month: a prior-period adjustment next month
        (
            [*BASE, close("2025-01", "2025-02-01"), credit_note("CN-1", "INV-1", "2025-01-25", "300.00")],
            "2025-02",
            "int-bob",
            "accrued",
            ("100.00", "-30.00", "0.00", "70.00"),
        ),
        # a void after the close: the payment never happened, payable adjusted back
        (
            [*BASE, close("2025-01", "2025-02-01"), void("payment", "PAY-1")],
            "2025-02",
            "int-bob",
            "payable",
            ("100.00", "-100.00", "0.00", "0.00"),
        ),
        # the closed month itself is frozen: none of the later facts show
        (
            [*BASE, close("2025-01", "2025-02-01"), credit_note("CN-1", "INV-1", "2025-01-25", "300.00")],
            "2025-01",
            "int-bob",
            "accrued",
            ("0.00", "0.00", "100.00", "100.00"),
        ),
    ],
)
def test_r9_formulas(history: list[str], period: str, who: str, name: str, expected: tuple[str, ...]) -> None:
    """opening, adjustments, movements, closing of one figure, for each R9 case."""
    statement = period_statement(ledger_of(history), period)
    assert figures(row(statement, who), name) == expected
    assert_adds_up(statement)


def test_several_currencies_have_their_own_rows() -> None:
    """A beneficiary earning in CHF and EUR has one row per currency, never added together."""
    history = [*BASE, invoice("INV-E", "2025-01-12", "200.00", "EUR"), close("2025-01", "2025-02-02")]
    statement = period_statement(ledger_of(history), "2025-01")
    assert figures(row(statement, "int-bob", "CHF"), "accrued")[-1] == "100.00"
    assert figures(row(statement, "int-bob", "EUR"), "accrued")[-1] == "20.00"


def test_a_closed_statement_is_frozen_byte_for_byte() -> None:
    """The statement saved at the close is the one read back after late facts, voids and
    another close: the same bytes."""
    ledger = ledger_of([*BASE, close("2025-01", "2025-02-01")])
    frozen = statement_json(closed_statement(ledger, "2025-01", save=True))
    ledger.ingest(
        [
            credit_note("CN-1", "INV-1", "2025-01-25", "300.00"),
            void("payment", "PAY-1"),
            close("2025-02", "2025-03-01"),
        ]
    )
    assert statement_json(period_statement(ledger, "2025-01")) == frozen
    assert statement_json(closed_statement(ledger, "2025-01", save=False)) == frozen


def test_the_next_open_month_is_provisional_and_other_months_are_not_available() -> None:
    """After closing January: February is provisional (no close), March is not available."""
    ledger = ledger_of([*BASE, close("2025-01", "2025-02-01")])
    february = period_statement(ledger, "2025-02")
    assert february["status"] == "provisional" and february["close"] is None
    assert period_statement(ledger, "2025-01")["status"] == "closed"
    with pytest.raises(PeriodNotAvailableError, match="2025-02"):
        period_statement(ledger, "2025-03")
    with pytest.raises(PeriodNotAvailableError):
        period_statement(ledger, "2024-12")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (close("2025-01", "2025-02-01", approved_by="tre-ana"), "approval_required"),
        (close("2025-01", "2025-01-31"), "period_not_ended"),
        (close("2025-01", "2025-01-15"), "period_not_ended"),
        (close("2025-13", "2026-02-01"), "invalid_value"),
    ],
)
def test_close_refusals_of_the_contract(raw: str, reason: str) -> None:
    """One person alone, a month not ended, a month that does not exist: rejected."""
    with pytest.raises(Rejection) as caught:
        parse_envelope(raw)
    assert caught.value.reason == reason and caught.value.message


def test_closes_must_follow_each_other_and_a_month_closes_once() -> None:
    """The first close may be any month, each later one the next month (period_out_of_order);
    the same month again with the same data is a duplicate, with other data a conflict."""
    ledger = build_ephemeral_ledger()
    outcomes = ledger.ingest(
        [
            close("2025-01", "2025-02-01"),
            close("2025-03", "2025-04-01"),
            close("2025-02", "2025-03-01"),
            close("2025-02", "2025-03-01"),
            envelope(
                "period.closed",
                {"period": "2025-02", "date": "2025-03-05", "closed_by": "tre-ana", "approved_by": "tre-luc"},
            ),
            close("2024-12", "2025-01-05"),
        ]
    )
    assert [(o.status, o.reason) for o in outcomes] == [
        ("accepted", None),
        ("rejected", "period_out_of_order"),
        ("accepted", None),
        ("duplicate", None),
        ("rejected", "conflict"),
        ("rejected", "period_out_of_order"),
    ]
    assert "2025-03" in (outcomes[1].message or "")


@st.composite
def histories_with_closes(draw: st.DrawFn) -> list[str]:
    """A history with voids and, inserted at random places, closes of consecutive months."""
    raw = lines(draw(histories_with_voids()))
    first = draw(st.sampled_from(["2022-06", "2023-01", "2024-03"]))
    year, month = map(int, first.split("-"))
    for _ in range(draw(st.integers(1, 4))):
        period = f"{year:04d}-{month:02d}"
        after = f"{year + (month == 12):04d}-{month % 12 + 1:02d}-02"
        where = draw(st.integers(0, len(raw)))
        earlier = [line for line in raw[:where] if '"period.closed' in line]
        where = max(where, max((raw.index(line) + 1 for line in earlier), default=0))
        raw.insert(where, close(period, after))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return raw


@settings(max_examples=60, deadline=None)
@given(raw=histories_with_closes(), more=histories_with_voids())
def test_closed_statements_never_change_and_add_up(raw: list[str], more: list[dict[str, Any]]) -> None:
    """For any history and closes, each closed statement (taken right after its close) is
    byte-identical once everything else has arrived, and closing = opening + adjustments +
    movements in every row."""
    ledger = build_ephemeral_ledger()
    frozen: dict[str, bytes] = {}
    for line in raw:
        [outcome] = ledger.ingest([line])
        if '"coop.ledger.period.closed.v1"' in line and outcome.status == "accepted":
            period = json.loads(line)["data"]["period"]
            frozen[period] = statement_json(closed_statement(ledger, period, save=True))
    later = [json.dumps({**doc, "id": f"more-{doc['id']}"}) for doc in more]
    ledger.ingest(later)
    replayed = build_ephemeral_ledger()  # nothing stored: every statement recomputed from the log
    replayed.ingest([*raw, *later])
    for period, body in frozen.items():
        statement = period_statement(ledger, period)
        assert statement_json(statement) == body
        assert statement_json(period_statement(replayed, period)) == body
        assert_adds_up(statement)
    if ledger.index.last_closed is not None:
        assert_adds_up(period_statement(ledger, _next(ledger.index.last_closed)))


def _next(period: str) -> str:
    year, month = map(int, period.split("-"))
    return f"{year + (month == 12):04d}-{month % 12 + 1:02d}"
