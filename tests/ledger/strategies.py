"""Hypothesis strategies: small but rich histories of contract facts."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

ADVISERS = ["adv-a", "adv-b"]
CLIENTS = ["cli-1", "cli-2", "cli-3"]
INTRODUCERS = ["int-x", "int-y"]
SUPPLIERS = ["sup-1"]
CURRENCIES = ["CHF", "EUR", "JPY"]
START = date(2022, 1, 1)

days = st.integers(min_value=0, max_value=365 * 5).map(lambda n: START + timedelta(days=n))


def money(currency: str, max_units: int = 500_000) -> st.SearchStrategy[str]:
    digits = 0 if currency == "JPY" else 2
    return st.integers(min_value=0, max_value=max_units).map(
        lambda n: str(Decimal(n).scaleb(-digits)) if digits else str(n)
    )


#: The business id field of each voidable fact type.
VOIDABLE_ID_FIELDS = {
    "introduction.recorded": ("introduction", "introduction_id"),
    "payment.received": ("payment", "payment_id"),
    "payout.recorded": ("payout", "payout_id"),
    "purchase.recorded": ("purchase", "purchase_id"),
    "resale.invoiced": ("resale", "resale_id"),
    "rebate.received": ("rebate", "rebate_id"),
    "rebate.passed_through": ("pass_through", "pass_through_id"),
}


def void_doc(number: int, target_type: str, target_id: str, day: str = "2026-01-15") -> dict[str, Any]:
    """A void (rules R8) of ``target_type`` ``target_id`` by two people."""
    return {
        "specversion": "1.0",
        "id": f"void-ev-{number}",
        "source": "hypothesis",
        "type": "coop.ledger.fact.voided.v1",
        "data": {
            "void_id": f"void-{number}",
            "target_type": target_type,
            "target_id": target_id,
            "date": day,
            "reason": "recorded in error",
            "requested_by": "tre-ana",
            "approved_by": "tre-luc",
        },
    }


def voidable_targets(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(target_type, target_id) of every voidable fact of a history."""
    out = []
    for doc in docs:
        kind = doc["type"].removeprefix("coop.ledger.").removesuffix(".v1")
        if kind in VOIDABLE_ID_FIELDS:
            target_type, field = VOIDABLE_ID_FIELDS[kind]
            out.append((target_type, doc["data"][field]))
    return out


@st.composite
def histories_with_voids(draw: st.DrawFn, max_invoices: int = 12) -> list[dict[str, Any]]:
    """A history plus voids of some of its facts (a target voided twice at times, a void
    of a fact the history does not hold at times)."""
    docs = draw(histories(max_invoices))
    targets = voidable_targets(docs)
    chosen = draw(st.lists(st.sampled_from(targets), max_size=4)) if targets else []
    if draw(st.booleans()):
        chosen.append(draw(st.sampled_from([("payment", "pay-missing"), ("purchase", "pu-missing")])))
    return docs + [void_doc(n, kind, ident) for n, (kind, ident) in enumerate(chosen)]


@st.composite
def histories(draw: st.DrawFn, max_invoices: int = 12) -> list[dict[str, Any]]:
    """A history as a list of CloudEvents documents with unique envelope and business ids."""
    docs: list[dict[str, Any]] = []

    def add(kind: str, data: dict[str, Any]) -> None:
        docs.append(
            {
                "specversion": "1.0",
                "id": f"ev-{len(docs)}",
                "source": "hypothesis",
                "type": f"coop.ledger.{kind}.v1",
                "data": data,
            }
        )

    for introducer in INTRODUCERS:
        add("introducer.registered", {"introducer_id": introducer, "display_name": introducer.upper()})
    for n in range(draw(st.integers(0, 2))):
        add(
            "introducer.eligibility_changed",
            {
                "introducer_id": draw(st.sampled_from(INTRODUCERS)),
                "can_receive_commission": draw(st.booleans()),
                "effective_date": (START + timedelta(days=400 * n + draw(st.integers(0, 399)))).isoformat(),
            },
        )
    for n in range(draw(st.integers(1, 3))):
        data: dict[str, Any] = {
            "introduction_id": f"intro-{n}",
            "introducer_id": draw(st.sampled_from(INTRODUCERS)),
            "client_id": draw(st.sampled_from(CLIENTS)),
            "adviser_id": draw(st.sampled_from(ADVISERS)),
            "date": draw(days).isoformat(),
        }
        if draw(st.booleans()):
            data["terms"] = [
                {
                    "rate": draw(st.sampled_from(["0.10", "0.05", "0.075", "0.15"])),
                    "months": draw(st.integers(1, 18)),
                }
                for _ in range(draw(st.integers(1, 3)))
            ]
            data["terms_reason"] = "subcontracting"
        add("introduction.recorded", data)
    invoices: list[tuple[str, str, str]] = []
    for n in range(draw(st.integers(1, max_invoices))):
        currency = draw(st.sampled_from(CURRENCIES))
        net = draw(money(currency))
        invoice_id = f"inv-{n}"
        add(
            "invoice.issued",
            {
                "invoice_id": invoice_id,
                "adviser_id": draw(st.sampled_from(ADVISERS)),
                "client_id": draw(st.sampled_from(CLIENTS)),
                "issue_date": draw(days).isoformat(),
                "currency": currency,
                "net_amount": net,
                "tax_amount": draw(money(currency, 50_000)),
            },
        )
        invoices.append((invoice_id, currency, net))
    for n in range(draw(st.integers(0, 4))):
        invoice_id, currency, net = draw(st.sampled_from(invoices))
        full = draw(st.booleans())
        add(
            "credit_note.issued",
            {
                "credit_note_id": f"cn-{n}",
                "invoice_id": invoice_id,
                "issue_date": draw(days).isoformat(),
                "net_amount": net if full else draw(money(currency, 1000)),
                "tax_amount": "0",
            },
        )
    for n in range(draw(st.integers(0, 6))):
        invoice_id, currency, _ = draw(st.sampled_from(invoices))
        add(
            "payment.received",
            {
                "payment_id": f"pay-{n}",
                "invoice_id": invoice_id,
                "date": draw(days).isoformat(),
                "amount": draw(money(currency)),
            },
        )
    for n in range(draw(st.integers(0, 2))):
        currency = draw(st.sampled_from(CURRENCIES))
        add(
            "payout.recorded",
            {
                "payout_id": f"po-{n}",
                "adviser_id": draw(st.sampled_from(ADVISERS)),
                "beneficiary_id": draw(st.sampled_from([*INTRODUCERS, "cooperative"])),
                "date": draw(days).isoformat(),
                "currency": currency,
                "amount": draw(money(currency, 10_000)),
            },
        )
    purchases: list[tuple[str, str]] = []
    for n in range(draw(st.integers(0, 4))):
        currency = draw(st.sampled_from(["CHF", "JPY"]))
        purchase_id = f"pu-{n}"
        add(
            "purchase.recorded",
            {
                "purchase_id": purchase_id,
                "client_id": draw(st.sampled_from(CLIENTS)),
                "supplier_id": SUPPLIERS[0],
                "date": draw(days).isoformat(),
                "currency": currency,
                "cost_amount": draw(money(currency)),
            },
        )
        purchases.append((purchase_id, currency))
        if draw(st.booleans()):
            add(
                "resale.invoiced",
                {
                    "resale_id": f"rs-{n}",
                    "purchase_id": purchase_id,
                    "date": draw(days).isoformat(),
                    "amount": draw(money(currency)),
                },
            )
    for n in range(draw(st.integers(0, 2))):
        if not purchases:
            break
        currency = draw(st.sampled_from(["CHF", "JPY"]))
        same = [p for p, c in purchases if c == currency]
        if not same:
            continue
        chosen = draw(st.lists(st.sampled_from(same), min_size=1, max_size=len(same), unique=True))
        add(
            "rebate.received",
            {
                "rebate_id": f"rb-{n}",
                "supplier_id": SUPPLIERS[0],
                "date": draw(days).isoformat(),
                "currency": currency,
                "amount": draw(money(currency, 100_000)),
                "purchase_ids": chosen,
            },
        )
        if draw(st.booleans()):
            add(
                "rebate.passed_through",
                {
                    "pass_through_id": f"pt-{n}",
                    "client_id": draw(st.sampled_from(CLIENTS)),
                    "date": draw(days).isoformat(),
                    "currency": currency,
                    "amount": draw(money(currency, 1000)),
                },
            )
    return docs


def lines(docs: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(doc) for doc in docs]
