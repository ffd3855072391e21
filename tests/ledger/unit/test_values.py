"""Shared immutable values: facts read from JSON hold one object per distinct amount, day and
party, equal to what they would hold unshared; personal values and a fact's own id are never
kept in a table, and the tables stop growing at their bound."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from bench.history import generate
from hypothesis import given
from hypothesis import strategies as st

from ledger.adapters.memory_store import MemoryFactStore
from ledger.application import values
from ledger.application.contract import fact_of_accepted, parse_envelope
from ledger.application.ledger import Ledger
from ledger.domain.facts import ClientRegistered, InvoiceIssued
from ledger.domain.personal import PERSONAL_FIELDS
from tests.conftest import envelope


@pytest.fixture(autouse=True)
def _empty_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from empty tables (earlier tests in the process may have filled them)."""
    for table in ("_decimals", "_dates", "_texts"):
        monkeypatch.setattr(values, table, {})


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_a_shared_amount_is_the_same_number_with_the_same_exponent(number: Decimal) -> None:
    """shared_decimal(text) equals Decimal(text) digit for digit (1.0 and 1.00 stay apart)."""
    text = str(number)
    shared = values.shared_decimal(text)
    assert shared.as_tuple() == Decimal(text).as_tuple()
    assert values.shared_decimal(text) is shared


def test_amounts_that_differ_only_in_exponent_are_not_merged() -> None:
    """1.0 and 1.00 are equal numbers but print differently: two shared objects."""
    assert str(values.shared_decimal("1.0")) == "1.0"
    assert str(values.shared_decimal("1.00")) == "1.00"


def test_days_and_texts_are_shared() -> None:
    """The same day or party text gives the same object."""
    assert values.shared_date("2024-02-29") is values.shared_date("2024-02-29") == date(2024, 2, 29)
    first = "".join(["cli-", "000042"])
    second = "".join(["cli-", "000042"])
    assert first is not second
    assert values.shared_text(first) is values.shared_text(second)


def test_the_tables_stop_growing_at_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_SHARED_VALUES, new values are returned correct but not kept."""
    monkeypatch.setattr(values, "MAX_SHARED_VALUES", 3)
    got = [values.shared_decimal(f"{n}.00") for n in range(10)]
    assert got == [Decimal(f"{n}.00") for n in range(10)]
    assert len(values._decimals) == 3
    for n in range(10):
        values.shared_text(f"adv-{n}")
    assert len(values._texts) == 3


def _invoice(invoice_id: str, client: str) -> str:
    data = {
        "invoice_id": invoice_id,
        "adviser_id": "adv-7",
        "client_id": client,
        "issue_date": "2025-03-14",
        "currency": "CHF",
        "net_amount": "1430.00",
        "tax_amount": "110.11",
    }
    return envelope("invoice.issued", data, id=f"evt-{invoice_id}")


def test_facts_read_from_json_share_their_repeated_values() -> None:
    """Two invoices of one client, taken in by a ledger and read back by another, hold the
    same client, currency, day and amount objects, and are equal to their unshared form."""
    store = MemoryFactStore()
    ledger = Ledger(store, lambda: datetime(2026, 1, 1, tzinfo=UTC))
    outcomes = ledger.ingest([_invoice("inv-1", "cli-9"), _invoice("inv-2", "cli-9")])
    assert [o.status for o in outcomes] == ["accepted", "accepted"]
    for index in (ledger.index, _read_back(store).index):
        one, two = index.by_position
        assert isinstance(one, InvoiceIssued) and isinstance(two, InvoiceIssued)
        for name in ("client_id", "adviser_id", "currency", "issue_date", "net_amount", "tax_amount"):
            assert getattr(one, name) is getattr(two, name), name
        assert one == dataclasses.replace(two, invoice_id="inv-1")


def _read_back(store: MemoryFactStore) -> Ledger:
    again = Ledger(store, lambda: datetime(2026, 1, 1, tzinfo=UTC))
    again.catch_up()
    return again


def test_personal_values_and_own_ids_never_enter_a_table() -> None:
    """A registration's name and e-mail are not kept in the tables (they would keep an erased
    person's data in memory), nor is the own id of a fact that no other fact names as a
    party (an invoice's); a party's id is."""
    data = {
        "client_id": "cli-unique-77",
        "display_name": "Zoé Unique-Name",
        "email": "zoe.unique@example.org",
        "language": "fr",
    }
    parsed = parse_envelope(envelope("client.registered", data, id="evt-reg-77"))
    assert isinstance(parsed.fact, ClientRegistered)
    stored = fact_of_accepted(parsed.document, None)
    assert stored.key == parsed.fact.key
    assert data["display_name"] not in values._texts and data["email"] not in values._texts
    assert values._texts["cli-unique-77"] is stored.key[1]  # a party id: shared with its invoices
    for name in PERSONAL_FIELDS[ClientRegistered]:
        assert name not in values.SHARED_TEXT_FIELDS
    parse_envelope(_invoice("inv-own-id-1234", "cli-1"))
    assert "inv-own-id-1234" not in values._texts


def test_every_generated_history_reads_back_equal() -> None:
    """A realistic history (all types) reads back through the shared values to facts equal
    to the ones taken in, position by position."""
    store = MemoryFactStore()
    ledger = Ledger(store, lambda: datetime(2026, 1, 1, tzinfo=UTC))
    lines = [line.encode() for line in generate(3_000, seed=11)]
    assert all(o.status == "accepted" for o in ledger.ingest(lines))
    again = _read_back(store)
    assert again.index.by_position == ledger.index.by_position
    assert again.index.keys == ledger.index.keys
