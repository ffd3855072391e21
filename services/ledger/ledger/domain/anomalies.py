"""Anomalies: facts the ledger keeps but cannot (yet) count, and why. Nothing is dropped
silently; most resolve themselves when the missing fact arrives."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ledger.domain.money import fits_currency

__all__ = ["Anomaly", "fits"]


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str
    fact_id: str
    message: str


def fits(amount: Decimal, currency: str, fact_id: str, anomalies: list[Anomaly]) -> bool:
    """True when ``amount`` fits ``currency``'s minor unit; otherwise an anomaly is noted
    (the amount of a child fact is checked against its parent's currency, known only later)."""
    if fits_currency(amount, currency):
        return True
    anomalies.append(
        Anomaly(
            "too_many_decimals",
            fact_id,
            f"amount {amount} has more decimals than {currency} allows; not counted",
        )
    )
    return False
