"""A deterministic, seeded generator of valid ledger histories (CloudEvents 1.0 JSON Lines).

    .venv/bin/python bench/history.py N [--seed S] [--out FILE]

writes N lines (to FILE, or standard output), one CloudEvents envelope a line, with the
fields of the contract's examples (``specversion``, ``id``, ``source``, ``type``, ``time``,
``datacontenttype``, ``data``). From Python::

    from bench.history import generate

    for line in generate(100_000, seed=1):  # str, one JSON object, no newline
        ...

The same (N, seed) always gives the same bytes. Every line is accepted by the ledger, and
the history has no anomalies: credit notes never exceed their invoice's net amount,
payments, credit notes and resales come after the invoice or purchase they refer to, a
rebate only covers purchases already in the history and in its own currency, amounts have
exactly the currency's minor-unit digits (CHF, EUR: 2; JPY: 0), ids match
``^[A-Za-z0-9_.:-]{1,128}$``.

How it is built: the history is a sequence of *client stories*. A story is one client of
one adviser over up to three years: maybe an introduction (a fresh or a known introducer,
sometimes with custom terms and a reason, sometimes with earlier invoices or a
``prior_last_invoice_date``, rarely a second introduction later on), invoices (the bulk,
about 60% of all facts), a few credit notes, payments (full, in instalments, partial or
none), the adviser's payouts of the commissions to the introducer (or to the cooperative
while the introducer cannot receive them), and for some clients purchases through the
purchasing centre with their resales and the hand-back of retained margins. Suppliers'
year-end rebates cover a few recent purchases of one currency each; parts of them are
passed through to the clients. About 64 stories are open at a time and their facts are
interleaved (each story in date order; the whole history roughly so), and clients start
one after the other over five years, so the number of clients, introducers, advisers and
suppliers grows with N while the facts per client stay bounded. The history always opens
with one complete story that has every one of the 12 inbound types (fewer than 70 lines),
so any N >= 200 contains all of them. About 0.6 % of payments, payouts, pass-throughs and resales
are typed twice by mistake and the copy voided by two people a few days later (rules R8).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

__all__ = ["FACT_TYPES", "generate", "main"]

PREFIX = "coop.ledger."
FACT_TYPES: dict[str, str] = {
    kind: f"{PREFIX}{kind}.v1"
    for kind in (
        "introducer.registered",
        "introducer.eligibility_changed",
        "introduction.recorded",
        "invoice.issued",
        "credit_note.issued",
        "payment.received",
        "payout.recorded",
        "purchase.recorded",
        "resale.invoiced",
        "rebate.received",
        "rebate.passed_through",
        "fact.voided",
    )
}
SOURCES: dict[str, str] = {
    "introducer.registered": "crm/introducers",
    "introducer.eligibility_changed": "crm/introducers",
    "introduction.recorded": "crm/introductions",
    "invoice.issued": "erp/invoicing",
    "credit_note.issued": "erp/invoicing",
    "payment.received": "erp/bank",
    "payout.recorded": "back-office/payouts",
    "purchase.recorded": "purchasing-centre",
    "resale.invoiced": "purchasing-centre",
    "rebate.received": "purchasing-centre",
    "rebate.passed_through": "purchasing-centre",
    "fact.voided": "back-office/corrections",
}
#: Facts typed twice by mistake and then voided (rules R8): how often, and which kinds
#: (kind -> (business id field, void target type)).
MISTAKE_RATE = 0.006
MISTAKES = {
    "payment.received": ("payment_id", "payment"),
    "payout.recorded": ("payout_id", "payout"),
    "rebate.passed_through": ("pass_through_id", "pass_through"),
    "resale.invoiced": ("resale_id", "resale"),
}
REVIEWERS = ("tre-ana", "tre-luc", "tre-mei", "tre-ola")

#: Day 0 of the generator's calendar; every date is an offset from it.
EPOCH = date(2018, 1, 1)
#: Clients start between these offsets (2019-01-01 .. about 2023-12-31); stories last up
#: to three and a half years.
FIRST_START = (date(2019, 1, 1) - EPOCH).days
START_SPAN = 5 * 365
DAYS: list[str] = [(EPOCH + timedelta(days=d)).isoformat() for d in range(12 * 366)]
#: Envelope times: the business day, in office hours.
CLOCK: list[str] = [f"T{h:02d}:{m:02d}:00Z" for h in range(8, 18) for m in range(60)]

CURRENCIES = ("CHF", "EUR", "JPY")
CURRENCY_WEIGHTS = (60, 30, 10)
DIGITS = {"CHF": 2, "EUR": 2, "JPY": 0}
#: Tax in basis points (Swiss VAT 8.1%, a 20% EU VAT, Japanese consumption tax 10%).
TAX_BP = {"CHF": 810, "EUR": 2000, "JPY": 1000}
#: Hourly rates in minor units.
HOURLY = {
    "CHF": (9_000, 11_000, 12_000, 13_500, 15_000),
    "EUR": (8_000, 9_500, 11_000, 12_500),
    "JPY": (9_000, 12_000, 15_000, 18_000),
}
#: Custom terms (R2): ((rate in permille, months), ...), reason.
Terms = tuple[tuple[tuple[int, int], ...], str]
CUSTOM_TERMS: tuple[Terms, ...] = (
    (((80, 24),), "subcontracting"),
    (((150, 12), (50, 12)), "strategic partnership"),
    (((100, 6),), "short engagement"),
    (((120, 12), (60, 12), (30, 12)), "framework agreement"),
)
#: What an adviser records on accepting the 5% recommended for `reintroduction-none` (R3).
COURTESY: Terms = (((50, 12),), "courtesy")

#: Open stories at a time.
POOL = 64
#: Facts per client story on average (measured), to spread client starts over START_SPAN.
FACTS_PER_CLIENT = 19
CLIENTS_PER_ADVISER = 40
CLIENTS_PER_SUPPLIER = 150
RECENT_INTRODUCERS = 50


def _money(units: int, currency: str) -> str:
    digits = DIGITS[currency]
    if digits == 0:
        return str(units)
    whole, cents = divmod(units, 100)
    return f"{whole}.{cents:02d}"


def _encoder() -> Callable[[dict[str, Any]], str]:
    try:
        import orjson
    except ImportError:  # the project depends on orjson; plain json gives the same bytes
        import json

        return lambda obj: json.dumps(obj, separators=(",", ":"))
    return lambda obj: orjson.dumps(obj).decode()


@dataclass(slots=True)
class _Introducer:
    introducer_id: str
    #: (effective day, can_receive_commission), in date order.
    changes: list[tuple[int, bool]] = field(default_factory=list)

    def eligible(self, day: int) -> bool:
        can = True
        for effective, value in self.changes:
            if effective <= day:
                can = value
        return can


@dataclass(slots=True)
class _Purchase:
    purchase_id: str
    client_id: str
    supplier_id: str
    currency: str
    day: int
    cost: int
    flush: bool = False


#: One fact of a story: (day, order within the story, kind, data, purchase or None).
Event = tuple[int, int, str, dict[str, Any], _Purchase | None]


@dataclass(slots=True)
class _Invoice:
    day: int
    adviser_id: str
    net: int
    tax: int
    credited_net: int = 0
    #: Day the invoice was fully paid, or None.
    settled: int | None = None


@dataclass
class _Generator:
    n_facts: int
    seed: int
    rng: random.Random = field(init=False)
    expected_clients: int = field(init=False)
    advisers: int = field(init=False)
    suppliers: int = field(init=False)
    serial: dict[str, int] = field(default_factory=dict)
    introducers: list[_Introducer] = field(default_factory=list)
    #: Facts to emit before the next story fact: (day, kind, data).
    pending: deque[tuple[int, str, dict[str, Any]]] = field(default_factory=deque)
    #: Purchases waiting for their supplier's rebate: (supplier, currency) -> (target, purchases).
    rebate_pools: dict[tuple[str, str], tuple[int, list[_Purchase]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.expected_clients = max(1, self.n_facts // FACTS_PER_CLIENT)
        self.advisers = max(3, self.expected_clients // CLIENTS_PER_ADVISER)
        self.suppliers = max(2, self.expected_clients // CLIENTS_PER_SUPPLIER)

    # Ids ---------------------------------------------------------------------------------

    def _next(self, kind: str) -> int:
        value = self.serial.get(kind, 0) + 1
        self.serial[kind] = value
        return value

    def _adviser(self) -> str:
        return f"adv-{self.rng.randrange(self.advisers):04d}"

    # Introducers -------------------------------------------------------------------------

    def _introducer(self, day: int, *, fresh: bool = False, ineligible: bool = False) -> _Introducer:
        """A known introducer (most of the time) or a newly registered one."""
        rng = self.rng
        if not fresh and self.introducers and rng.random() < 0.7:
            return rng.choice(self.introducers)
        number = self._next("introducer")
        introducer = _Introducer(f"int-{number:06d}")
        data: dict[str, Any] = {
            "introducer_id": introducer.introducer_id,
            "display_name": f"Introducer {number}",
        }
        if rng.random() < 0.9:
            data["email"] = f"int-{number}@example.org"
        if rng.random() < 0.2:
            data["webhook_url"] = f"https://hooks.example.org/ledger/int-{number}"
        data["language"] = "en" if rng.random() < 0.3 else "fr"
        registered = max(0, day - rng.randint(0, 60))
        self.pending.append((registered, "introducer.registered", data))
        if ineligible or rng.random() < 0.12:
            # Becomes unable to receive commissions (a new employer's rules), sometimes able again.
            stop = max(0, day + (150 if ineligible else rng.randint(-60, 400)))
            introducer.changes.append((stop, False))
            again = stop + rng.randint(180, 720) if not ineligible and rng.random() < 0.3 else None
            if again is not None:
                introducer.changes.append((again, True))
            for effective, can in introducer.changes:
                self.pending.append(
                    (
                        effective,
                        "introducer.eligibility_changed",
                        {
                            "introducer_id": introducer.introducer_id,
                            "can_receive_commission": can,
                            "effective_date": DAYS[effective],
                        },
                    )
                )
        if len(self.introducers) < RECENT_INTRODUCERS:
            self.introducers.append(introducer)
        else:
            self.introducers[rng.randrange(RECENT_INTRODUCERS)] = introducer
        return introducer

    # Client stories ----------------------------------------------------------------------

    def story(self, *, showcase: bool = False) -> list[Event]:
        """One client's facts in date order (reversed, to be popped from the end)."""
        rng = self.rng
        k = self._next("client")
        client = f"cli-{k:07d}"
        start = (
            FIRST_START + min(START_SPAN, (k - 1) * START_SPAN // self.expected_clients) + rng.randrange(60)
        )
        adviser = self._adviser()
        currency = "CHF" if showcase else rng.choices(CURRENCIES, CURRENCY_WEIGHTS)[0]
        exempt = not showcase and rng.random() < 0.1  # an association: no VAT
        hourly = rng.choice(HOURLY[currency])
        events: list[Event] = []

        def add(day: int, kind: str, data: dict[str, Any], purchase: _Purchase | None = None) -> None:
            events.append((day, len(events), kind, data, purchase))

        # Invoice dates.
        regular = showcase or rng.random() < 0.5
        count = 8 if showcase else rng.randint(6, 30) if regular else rng.randint(1, 5)
        day = start + rng.randint(3, 30)
        dates = []
        for _ in range(count):
            dates.append(day)
            day += rng.randint(25, 40) if regular else rng.randint(20, 200)

        # Introduction (R1-R3), with the schedule as (rate in permille, days) for payouts.
        introducer: _Introducer | None = None
        schedule: list[tuple[int, int]] = []
        history: list[int] = []
        if showcase or rng.random() < 0.45:
            introducer = self._introducer(start, fresh=showcase, ineligible=showcase)
            data: dict[str, Any] = {
                "introduction_id": f"intro-{self._next('introduction'):07d}",
                "introducer_id": introducer.introducer_id,
                "client_id": client,
                "adviser_id": adviser,
                "date": DAYS[start],
            }
            roll = 1.0 if showcase else rng.random()
            last_before: int | None = None
            if roll < 0.08:  # the adviser invoiced this client before (in the ledger)
                history = sorted(
                    {start - rng.randint(30, min(1000, start)) for _ in range(rng.randint(1, 3))}
                )
                last_before = history[-1]
            elif roll < 0.16:  # ... or before the ledger existed
                last_before = start - rng.randint(30, min(1500, start))
                data["prior_last_invoice_date"] = DAYS[last_before]
            gap = None if last_before is None else start - last_before
            terms = None
            if gap is not None and gap <= 365:  # reintroduction-none: 5% recommended
                schedule = []
                if rng.random() < 0.5:
                    terms = COURTESY
            elif gap is not None and gap <= 730:
                schedule = [(50, 365)]
            else:
                schedule = [(100, 365), (50, 365)]
            if terms is None and not showcase and rng.random() < 0.06:
                terms = rng.choice(CUSTOM_TERMS)
            if terms is not None:
                data["terms"] = [{"rate": f"0.{r // 10:02d}", "months": m} for r, m in terms[0]]
                data["terms_reason"] = terms[1]
                schedule = [(rate, months * 365 // 12) for rate, months in terms[0]]
            add(start, "introduction.recorded", data)
            if not showcase and count >= 6 and rng.random() < 0.04:
                # Introduced again later by someone else (each introduction its own agreement).
                again = dates[count // 2] - rng.randint(1, 20)
                other = self._introducer(again)
                add(
                    again,
                    "introduction.recorded",
                    {
                        "introduction_id": f"intro-{self._next('introduction'):07d}",
                        "introducer_id": other.introducer_id,
                        "client_id": client,
                        "adviser_id": adviser,
                        "date": DAYS[again],
                    },
                )

        # Invoices, credit notes, payments.
        invoices: list[_Invoice] = []
        for i, day in enumerate(history + dates):
            hours = rng.randint(2, 60) if regular else rng.randint(4, 120)
            net = hours * hourly + (rng.randrange(10_000) if DIGITS[currency] and rng.random() < 0.25 else 0)
            tax = 0 if exempt else (net * TAX_BP[currency] + 5_000) // 10_000
            by = adviser if rng.random() < 0.97 else self._adviser()
            invoice = _Invoice(day, by, net, tax)
            invoices.append(invoice)
            year = DAYS[day][:4]
            invoice_id = f"INV-{year}-{self._next('invoice'):08d}"
            data = {
                "invoice_id": invoice_id,
                "adviser_id": by,
                "client_id": client,
                "issue_date": DAYS[day],
                "currency": currency,
                "net_amount": _money(net, currency),
            }
            if not exempt or rng.random() < 0.5:
                data["tax_amount"] = _money(tax, currency)
            add(day, "invoice.issued", data)
            credited_gross = 0
            last = day
            if (showcase and i == 1) or rng.random() < 0.05:
                for _ in range(2 if rng.random() < 0.15 else 1):
                    left = net - invoice.credited_net
                    if left <= 0:
                        break
                    part = left if rng.random() < 0.3 else rng.randint(1, max(1, left // 2))
                    part_tax = tax * part // net
                    invoice.credited_net += part
                    credited_gross += part + part_tax
                    last += rng.randint(2, 45)
                    data = {
                        "credit_note_id": f"CN-{DAYS[last][:4]}-{self._next('credit_note'):07d}",
                        "invoice_id": invoice_id,
                        "issue_date": DAYS[last],
                        "net_amount": _money(part, currency),
                    }
                    if part_tax or rng.random() < 0.5:
                        data["tax_amount"] = _money(part_tax, currency)
                    add(last, "credit_note.issued", data)
            due = net + tax - credited_gross
            if due <= 0:
                continue
            roll = rng.random()
            full = 0.36 if introducer is not None else 0.22
            if showcase:
                amounts = [due // 3, due - due // 3] if i == 0 else [due]
            elif roll < full:
                amounts = [due + (rng.randint(1, 500) if rng.random() < 0.005 else 0)]  # rare overpayment
            elif roll < full + 0.05 and due >= 3:
                cuts = sorted(rng.sample(range(1, due), rng.randint(1, 2)))
                amounts = [b - a for a, b in zip([0, *cuts], [*cuts, due], strict=True)]
            elif roll < full + 0.08 and due >= 2:
                amounts = [rng.randint(1, due - 1)]
            else:
                amounts = []
            paid = 0
            for amount in amounts:
                last += rng.randint(10, 45)
                paid += amount
                add(
                    last,
                    "payment.received",
                    {
                        "payment_id": f"PAY-{self._next('payment'):08d}",
                        "invoice_id": invoice_id,
                        "date": DAYS[last],
                        "amount": _money(amount, currency),
                    },
                )
            if paid >= due:
                invoice.settled = last

        if introducer is not None and schedule:
            self._payouts(
                add,
                introducer,
                adviser=adviser,
                currency=currency,
                start=start,
                invoices=invoices,
                schedule=schedule,
                showcase=showcase,
            )
        if showcase or rng.random() < 0.2:
            self._purchases(add, client, currency, dates, showcase=showcase)

        events.sort()
        events.reverse()
        return events

    def _payouts(
        self,
        add: Callable[..., None],
        introducer: _Introducer,
        *,
        adviser: str,
        currency: str,
        start: int,
        invoices: list[_Invoice],
        schedule: list[tuple[int, int]],
        showcase: bool,
    ) -> None:
        """The adviser pays out (about) the commissions of settled invoices every few of them,
        to the introducer, or to the cooperative while the introducer cannot receive them."""
        rng = self.rng
        first = next((inv.day for inv in invoices if inv.adviser_id == adviser and inv.day >= start), None)
        if first is None:
            return
        owed: dict[str, int] = {}
        every = 2 if showcase else rng.randint(2, 6)
        settled, last_paid = 0, start

        def pay_out() -> None:
            for beneficiary, amount in owed.items():
                if amount > 0:
                    day = last_paid + rng.randint(5, 30)
                    add(
                        day,
                        "payout.recorded",
                        {
                            "payout_id": f"PO-{self._next('payout'):07d}",
                            "adviser_id": adviser,
                            "beneficiary_id": beneficiary,
                            "date": DAYS[day],
                            "currency": currency,
                            "amount": _money(amount, currency),
                        },
                    )
            owed.clear()

        for invoice in invoices:
            if invoice.settled is None or invoice.adviser_id != adviser or invoice.day < first:
                continue
            offset, rate = invoice.day - first, 0
            for permille, days in schedule:
                if offset < days:
                    rate = permille
                    break
                offset -= days
            if not rate:
                continue
            beneficiary = introducer.introducer_id if introducer.eligible(invoice.day) else "cooperative"
            owed[beneficiary] = owed.get(beneficiary, 0) + (invoice.net - invoice.credited_net) * rate // 1000
            last_paid = max(last_paid, invoice.settled)
            settled += 1
            if settled % every == 0:
                pay_out()
        pay_out()

    def _purchases(
        self, add: Callable[..., None], client: str, currency: str, dates: list[int], *, showcase: bool
    ) -> None:
        """Purchases through the purchasing centre, resold at cost (sometimes with a margin,
        handed back later)."""
        rng = self.rng
        supplier = 0 if showcase else rng.randrange(self.suppliers)
        count = 2 if showcase else rng.randint(1, 3)
        for i in range(count):
            if not showcase and rng.random() < 0.3:
                supplier = rng.randrange(self.suppliers)
            day = rng.randint(dates[0], dates[-1] + 30)
            cost = (
                rng.randint(300, 20_000) * 100 + rng.randrange(100)
                if DIGITS[currency]
                else (rng.randint(30_000, 2_000_000))
            )
            purchase = _Purchase(
                f"PU-{self._next('purchase'):07d}",
                client,
                f"sup-{supplier:04d}",
                currency,
                day,
                cost,
                flush=showcase and i == count - 1,
            )
            add(
                day,
                "purchase.recorded",
                {
                    "purchase_id": purchase.purchase_id,
                    "client_id": client,
                    "supplier_id": purchase.supplier_id,
                    "date": DAYS[day],
                    "currency": currency,
                    "cost_amount": _money(cost, currency),
                },
                purchase,
            )
            if not showcase and rng.random() < 0.1:
                continue  # not resold yet
            resold = cost
            if (showcase and i == 0) or rng.random() < 0.15:
                resold += max(1, cost * rng.randint(1, 5) // 100)  # a retained margin (R6)
            day += rng.randint(1, 20)
            add(
                day,
                "resale.invoiced",
                {
                    "resale_id": f"RS-{self._next('resale'):07d}",
                    "purchase_id": purchase.purchase_id,
                    "date": DAYS[day],
                    "amount": _money(resold, currency),
                },
            )
            if resold > cost and (showcase or rng.random() < 0.7):
                day += rng.randint(15, 90)
                self._pass_through(add, client, currency, day, resold - cost)

    def _pass_through(
        self, add: Callable[..., None], client: str, currency: str, day: int, amount: int
    ) -> None:
        add(
            day,
            "rebate.passed_through",
            {
                "pass_through_id": f"PT-{self._next('pass_through'):07d}",
                "client_id": client,
                "date": DAYS[day],
                "currency": currency,
                "amount": _money(amount, currency),
            },
        )

    def purchased(self, purchase: _Purchase) -> None:
        """A purchase went out: once its supplier has a few in that currency, a rebate on them
        follows, and parts of it are passed through to the clients."""
        rng = self.rng
        key = (purchase.supplier_id, purchase.currency)
        target, waiting = self.rebate_pools.get(key, (rng.randint(2, 6), []))
        waiting.append(purchase)
        if len(waiting) < target and not purchase.flush:
            self.rebate_pools[key] = (target, waiting)
            return
        self.rebate_pools.pop(key, None)
        total = sum(p.cost for p in waiting)
        amount = max(1, total * rng.randint(5, 40) // 1000)
        day = max(p.day for p in waiting) + rng.randint(20, 120)
        currency = purchase.currency
        self.pending.append(
            (
                day,
                "rebate.received",
                {
                    "rebate_id": f"RB-{DAYS[day][:4]}-{self._next('rebate'):06d}",
                    "supplier_id": purchase.supplier_id,
                    "date": DAYS[day],
                    "currency": currency,
                    "amount": _money(amount, currency),
                    "purchase_ids": [p.purchase_id for p in waiting],
                },
            )
        )
        for i, p in enumerate(waiting):
            share = amount * p.cost // total  # the rounded-down share: never more than owed
            if share and ((purchase.flush and i == 0) or rng.random() < 0.6):
                handed = share if rng.random() < 0.7 else max(1, share // 2)
                handed_day = day + rng.randint(10, 60)
                self.pending.append(
                    (
                        handed_day,
                        "rebate.passed_through",
                        {
                            "pass_through_id": f"PT-{self._next('pass_through'):07d}",
                            "client_id": p.client_id,
                            "date": DAYS[handed_day],
                            "currency": currency,
                            "amount": _money(handed, currency),
                        },
                    )
                )

    def _typed_twice(self, day: int, kind: str, data: dict[str, Any]) -> None:
        """The fact is typed a second time by mistake (under another business id), and two
        people void the copy a few days later (rules R8); now and then the void is
        processed before the copy arrives."""
        rng = self.rng
        field_name, target_type = MISTAKES[kind]
        number = self._next("void")
        copy = {**data, field_name: f"{data[field_name]}-X{number}"}
        requested, approved = rng.sample(REVIEWERS, 2)
        later = min(day + rng.randint(1, 20), len(DAYS) - 1)
        void = {
            "void_id": f"VOID-{number:06d}",
            "target_type": target_type,
            "target_id": copy[field_name],
            "date": DAYS[later],
            "reason": f"{target_type.replace('_', ' ')} typed twice",
            "requested_by": requested,
            "approved_by": approved,
        }
        pair = [(day, kind, copy), (later, "fact.voided", void)]
        if rng.random() < 0.1:
            pair.reverse()
        self.pending.extendleft(reversed(pair))

    # The stream --------------------------------------------------------------------------

    def lines(self) -> Iterator[str]:
        dumps = _encoder()
        rng = self.rng
        prefix = f"hist-{self.seed}-"
        pending = self.pending
        pool: list[list[Event]] = [self.story(showcase=True)]
        opened = False  # the showcase story runs alone, so every type shows up early
        for number in range(1, self.n_facts + 1):
            while not pending and (not pool or (opened and len(pool) < POOL)):
                pool.append(self.story())
            from_story = not pending
            if pending:
                day, kind, data = pending.popleft()
            else:
                i = rng.randrange(len(pool))
                story = pool[i]
                day, _, kind, data, purchase = story.pop()
                if not story:
                    pool[i] = pool[-1]
                    pool.pop()
                    opened = True
                if purchase is not None:
                    self.purchased(purchase)
            showcase = not opened and kind == "payout.recorded" and not self.serial.get("void")
            if from_story and kind in MISTAKES and (showcase or rng.random() < MISTAKE_RATE):
                self._typed_twice(day, kind, data)
            yield dumps(
                {
                    "specversion": "1.0",
                    "id": f"{prefix}{number:09d}",
                    "source": SOURCES[kind],
                    "type": FACT_TYPES[kind],
                    "time": DAYS[day] + CLOCK[number % len(CLOCK)],
                    "datacontenttype": "application/json",
                    "data": data,
                }
            )


def generate(n_facts: int, seed: int = 0) -> Iterator[str]:
    """``n_facts`` CloudEvents JSON lines (without newline) of a valid history, the same for
    the same ``seed``."""
    if n_facts < 0:
        raise ValueError("n_facts must be >= 0")
    return _Generator(n_facts, seed).lines()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("n_facts", type=int, metavar="N", help="number of lines to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, help="output file (default: standard output)")
    args = parser.parse_args(argv)
    if args.n_facts < 0:
        parser.error("N must be >= 0")
    out = args.out.open("w", encoding="ascii") if args.out else sys.stdout
    try:
        buffer: list[str] = []
        for line in generate(args.n_facts, args.seed):
            buffer.append(line)
            if len(buffer) >= 10_000:
                out.write("\n".join(buffer) + "\n")
                buffer.clear()
        if buffer:
            out.write("\n".join(buffer) + "\n")
        out.flush()
    except BrokenPipeError:  # e.g. `... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as the Python docs advise
    finally:
        if args.out:
            out.close()


if __name__ == "__main__":
    main()
