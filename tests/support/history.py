"""A deterministic, seeded generator of valid mixed histories (every fact type)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import date, timedelta

START = date(2023, 1, 1)
CURRENCY_DIGITS = {"CHF": 2, "EUR": 2, "JPY": 0}


def _money(rng: random.Random, currency: str, low: int, high: int) -> str:
    digits = CURRENCY_DIGITS[currency]
    units = rng.randint(low, high) * (10**digits) + (rng.randint(0, 10**digits - 1) if digits else 0)
    return f"{units / 10**digits:.{digits}f}" if digits else str(units)


def generate(n_facts: int, seed: int = 0) -> Iterator[str]:
    """``n_facts`` CloudEvents lines: introducers, introductions, invoices (most), credit notes,
    payments, payouts, purchases, resales, rebates and pass-throughs, all valid."""
    rng = random.Random(seed)
    emitted = 0
    clients = max(4, n_facts // 40)
    introducers = max(2, n_facts // 400)
    invoices: list[tuple[str, str, str, int]] = []  # id, currency, net, minor net
    purchases: dict[str, list[tuple[str, str]]] = {"CHF": [], "EUR": [], "JPY": []}

    def line(kind: str, data: dict[str, object]) -> str:
        nonlocal emitted
        emitted += 1
        return json.dumps(
            {
                "specversion": "1.0",
                "id": f"gen-{seed}-{emitted}",
                "source": "generator",
                "type": f"coop.ledger.{kind}.v1",
                "time": "2025-01-01T00:00:00Z",
                "datacontenttype": "application/json",
                "data": data,
            },
            separators=(",", ":"),
        )

    def day(spread: int = 3 * 365) -> str:
        return (START + timedelta(days=rng.randint(0, spread))).isoformat()

    for i in range(introducers):
        if emitted >= n_facts:
            return
        yield line(
            "introducer.registered",
            {
                "introducer_id": f"int-{i}",
                "display_name": f"Introducer {i}",
                "email": f"int-{i}@example.org",
                "language": rng.choice(["fr", "en"]),
            },
        )
    while emitted < n_facts:
        roll = rng.random()
        client = f"cli-{rng.randrange(clients)}"
        adviser = f"adv-{rng.randrange(5)}"
        currency = rng.choice(["CHF", "CHF", "EUR", "JPY"])
        if roll < 0.08:
            data: dict[str, object] = {
                "introduction_id": f"intro-{emitted}",
                "introducer_id": f"int-{rng.randrange(introducers)}",
                "client_id": client,
                "adviser_id": adviser,
                "date": day(),
            }
            if rng.random() < 0.1:
                data["terms"] = [{"rate": "0.08", "months": 24}]
                data["terms_reason"] = "subcontracting"
            yield line("introduction.recorded", data)
        elif roll < 0.10:
            yield line(
                "introducer.eligibility_changed",
                {
                    "introducer_id": f"int-{rng.randrange(introducers)}",
                    "can_receive_commission": rng.random() < 0.5,
                    "effective_date": day(),
                },
            )
        elif roll < 0.70:
            net = _money(rng, currency, 50, 5000)
            invoice_id = f"inv-{emitted}"
            invoices.append((invoice_id, currency, net, 0))
            yield line(
                "invoice.issued",
                {
                    "invoice_id": invoice_id,
                    "adviser_id": adviser,
                    "client_id": client,
                    "issue_date": day(),
                    "currency": currency,
                    "net_amount": net,
                    "tax_amount": _money(rng, currency, 0, 300),
                },
            )
        elif roll < 0.75 and invoices:
            invoice_id, currency, net, _ = rng.choice(invoices)
            part = net if rng.random() < 0.3 else _money(rng, currency, 0, 40)
            yield line(
                "credit_note.issued",
                {
                    "credit_note_id": f"cn-{emitted}",
                    "invoice_id": invoice_id,
                    "issue_date": day(),
                    "net_amount": part,
                },
            )
        elif roll < 0.88 and invoices:
            invoice_id, currency, net, _ = rng.choice(invoices)
            yield line(
                "payment.received",
                {
                    "payment_id": f"pay-{emitted}",
                    "invoice_id": invoice_id,
                    "date": day(),
                    "amount": _money(rng, currency, 10, 6000),
                },
            )
        elif roll < 0.91:
            yield line(
                "payout.recorded",
                {
                    "payout_id": f"po-{emitted}",
                    "adviser_id": adviser,
                    "beneficiary_id": rng.choice([f"int-{rng.randrange(introducers)}", "cooperative"]),
                    "date": day(),
                    "currency": currency,
                    "amount": _money(rng, currency, 1, 200),
                },
            )
        elif roll < 0.95:
            purchase_id = f"pu-{emitted}"
            purchases[currency].append((purchase_id, client))
            yield line(
                "purchase.recorded",
                {
                    "purchase_id": purchase_id,
                    "client_id": client,
                    "supplier_id": "sup-1",
                    "date": day(),
                    "currency": currency,
                    "cost_amount": _money(rng, currency, 100, 9000),
                },
            )
        elif roll < 0.97 and purchases[currency]:
            purchase_id, _ = rng.choice(purchases[currency])
            yield line(
                "resale.invoiced",
                {
                    "resale_id": f"rs-{emitted}",
                    "purchase_id": purchase_id,
                    "date": day(),
                    "amount": _money(rng, currency, 100, 9500),
                },
            )
        elif roll < 0.99 and purchases[currency]:
            chosen = rng.sample(purchases[currency], min(len(purchases[currency]), rng.randint(1, 4)))
            yield line(
                "rebate.received",
                {
                    "rebate_id": f"rb-{emitted}",
                    "supplier_id": "sup-1",
                    "date": day(),
                    "currency": currency,
                    "amount": _money(rng, currency, 1, 500),
                    "purchase_ids": [p for p, _ in chosen],
                },
            )
        else:
            yield line(
                "rebate.passed_through",
                {
                    "pass_through_id": f"pt-{emitted}",
                    "client_id": client,
                    "date": day(),
                    "currency": currency,
                    "amount": _money(rng, currency, 1, 100),
                },
            )
