"""The purchasing centre (rule R6): retained margins on resales, supplier rebates split over
the purchases that earned them, what is owed back to each client and passed through, and
their double-entry postings. Pure functions of the facts given."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from ledger.domain.accounts import (
    PURCHASING_CASH,
    PURCHASING_RESALES,
    REBATES_OWED,
    REBATES_RECEIVABLE,
    Account,
    Posting,
)
from ledger.domain.anomalies import Anomaly, fits
from ledger.domain.facts import PurchaseRecorded, RebatePassedThrough, RebateReceived, ResaleInvoiced
from ledger.domain.rules import retained_margin, split_rebate

__all__ = [
    "MarginLine",
    "RebateLine",
    "RebateShareLine",
    "margins",
    "rebate_postings",
    "rebate_shares",
    "rebates",
]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class MarginLine:
    purchase_id: str
    client_id: str
    supplier_id: str
    currency: str
    cost: Decimal
    resold: Decimal
    margin: Decimal
    date: dt.date


@dataclass(frozen=True, slots=True)
class RebateShareLine:
    rebate_id: str
    purchase_id: str
    client_id: str
    supplier_id: str
    currency: str
    cost: Decimal
    amount: Decimal
    date: dt.date


@dataclass(frozen=True, slots=True)
class RebateLine:
    client_id: str
    currency: str
    margins: Decimal
    rebate_shares: Decimal
    passed_through: Decimal

    @property
    def owed(self) -> Decimal:
        return self.margins + self.rebate_shares

    @property
    def outstanding(self) -> Decimal:
        return self.owed - self.passed_through


def margins(
    purchases: Mapping[str, PurchaseRecorded],
    resales: Mapping[str, Sequence[ResaleInvoiced]],
    anomalies: list[Anomaly],
) -> list[MarginLine]:
    """One line per purchase with counted resales: what was resold above cost is owed back."""
    lines = []
    for purchase_id in sorted(resales):
        purchase = purchases.get(purchase_id)
        if purchase is None:
            continue
        counted = [
            r for r in resales[purchase_id] if fits(r.amount, purchase.currency, r.resale_id, anomalies)
        ]
        if not counted:
            continue
        resold = sum((r.amount for r in counted), ZERO)
        lines.append(
            MarginLine(
                purchase_id,
                purchase.client_id,
                purchase.supplier_id,
                purchase.currency,
                purchase.cost_amount,
                resold,
                retained_margin(purchase.cost_amount, resold),
                max(r.date for r in counted),
            )
        )
    return lines


def rebate_shares(
    rebates_received: Iterable[RebateReceived],
    purchases: Mapping[str, PurchaseRecorded],
    anomalies: list[Anomaly],
    voided: frozenset[str] = frozenset(),
) -> list[RebateShareLine]:
    """Each rebate split over its purchases in proportion to their cost (largest remainders);
    a ``voided`` purchase is left out of the split (rules R8)."""
    lines: list[RebateShareLine] = []
    for rebate in sorted(rebates_received, key=lambda r: r.rebate_id):
        listed = [pid for pid in rebate.purchase_ids if pid not in voided]
        if not listed:
            anomalies.append(
                Anomaly(
                    "all_purchases_voided",
                    rebate.rebate_id,
                    "every purchase the rebate covers was voided; not split",
                )
            )
            continue
        covered = [purchases.get(pid) for pid in listed]
        missing = [pid for pid, p in zip(listed, covered, strict=True) if p is None]
        if missing:
            anomalies.append(
                Anomaly(
                    "unknown_purchase",
                    rebate.rebate_id,
                    f"rebate covers purchases the ledger does not know (yet): "
                    f"{', '.join(missing)}; not split",
                )
            )
            continue
        known = [p for p in covered if p is not None]
        wrong = [p.purchase_id for p in known if p.currency != rebate.currency]
        if wrong:
            anomalies.append(
                Anomaly(
                    "currency_mismatch",
                    rebate.rebate_id,
                    f"rebate in {rebate.currency} covers purchases in another currency: "
                    f"{', '.join(wrong)}; not split",
                )
            )
            continue
        amounts = split_rebate(rebate.amount, [p.cost_amount for p in known], rebate.currency)
        lines.extend(
            RebateShareLine(
                rebate.rebate_id,
                p.purchase_id,
                p.client_id,
                rebate.supplier_id,
                rebate.currency,
                p.cost_amount,
                share,
                rebate.date,
            )
            for p, share in zip(known, amounts, strict=True)
        )
    return lines


def rebates(
    margin_lines: Iterable[MarginLine],
    shares: Iterable[RebateShareLine],
    pass_throughs: Iterable[RebatePassedThrough],
) -> tuple[RebateLine, ...]:
    """One row per (client, currency): owed (margins and rebate shares), passed through."""
    sums: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
    for m in margin_lines:
        sums[(m.client_id, m.currency)][0] += m.margin
    for s in shares:
        sums[(s.client_id, s.currency)][1] += s.amount
    for p in pass_throughs:
        sums[(p.client_id, p.currency)][2] += p.amount
    return tuple(RebateLine(client, cur, *v) for (client, cur), v in sorted(sums.items()))


def rebate_postings(
    margin_lines: Iterable[MarginLine],
    shares: Iterable[RebateShareLine],
    pass_throughs: Iterable[RebatePassedThrough],
) -> list[Posting]:
    """Margins, rebates (one posting per rebate over its shares) and pass-throughs."""
    out = [
        Posting(
            m.date,
            "margin",
            m.purchase_id,
            m.currency,
            ((PURCHASING_RESALES, m.margin), (REBATES_OWED.of(m.client_id), -m.margin)),
            (("purchase", m.purchase_id), ("cost", str(m.cost)), ("resold", str(m.resold))),
        )
        for m in margin_lines
        if m.margin > 0
    ]
    by_rebate: dict[str, list[RebateShareLine]] = defaultdict(list)
    for s in shares:
        by_rebate[s.rebate_id].append(s)
    for rebate_id, group in by_rebate.items():
        first = group[0]
        total = sum((s.amount for s in group), ZERO)
        legs: list[tuple[Account, Decimal]] = [(REBATES_RECEIVABLE.of(first.supplier_id), total)]
        legs.extend((REBATES_OWED.of(s.client_id), -s.amount) for s in group)
        out.append(
            Posting(
                first.date,
                "rebate",
                rebate_id,
                first.currency,
                tuple(legs),
                (("purchases", ",".join(s.purchase_id for s in group)),),
            )
        )
    out.extend(
        Posting(
            p.date,
            "pass_through",
            p.pass_through_id,
            p.currency,
            ((REBATES_OWED.of(p.client_id), p.amount), (PURCHASING_CASH, -p.amount)),
        )
        for p in pass_throughs
    )
    return out
