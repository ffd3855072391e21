"""The charter's rules R1 to R6 as pure functions (see ``shared/spec/rules.md``).

Each function takes plain values and returns plain values: no I/O, no clock, no floats.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from ledger.domain.calendar import add_months
from ledger.domain.facts import Term
from ledger.domain.money import quantum, round_down, round_half_up

__all__ = [
    "RECOMMENDED_COURTESY_RATE",
    "CharterRule",
    "Window",
    "charter_rule",
    "charter_terms",
    "commission_amount",
    "is_below_minimum",
    "is_eligible",
    "payable_amount",
    "retained_margin",
    "schedule_windows",
    "split_rebate",
    "window_for",
]

RATE_YEAR_1 = Decimal("0.10")
RATE_YEAR_2 = Decimal("0.05")
#: What R3 recommends (but does not require) when the client was invoiced < 12 months ago.
RECOMMENDED_COURTESY_RATE = Decimal("0.05")


class CharterRule(StrEnum):
    """What rules R1/R3 give for an introduction."""

    STANDARD = "standard"
    REINTRODUCTION_REDUCED = "reintroduction-reduced"
    REINTRODUCTION_NONE = "reintroduction-none"


@dataclass(frozen=True, slots=True)
class Window:
    """One commission period, half-open ``[start, end)``; ``year`` counts from 1."""

    year: int
    rate: Decimal
    months: int
    start: date
    end: date

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end


# R1 / R3 ---------------------------------------------------------------------------


def charter_rule(introduction_date: date, last_invoice_before: date | None) -> CharterRule:
    """R3's band for an introduction on ``introduction_date`` given L, the latest invoice
    from the adviser to the client before that date. Exact edges favour the introducer:
    L = D - 24 months is ``standard``, L = D - 12 months is ``reintroduction-reduced``."""
    if last_invoice_before is None:
        return CharterRule.STANDARD
    if last_invoice_before <= add_months(introduction_date, -24):
        return CharterRule.STANDARD
    if last_invoice_before <= add_months(introduction_date, -12):
        return CharterRule.REINTRODUCTION_REDUCED
    return CharterRule.REINTRODUCTION_NONE


def charter_terms(rule: CharterRule) -> tuple[Term, ...]:
    """The schedule R1/R3 require for ``rule`` (empty when nothing is due)."""
    if rule is CharterRule.STANDARD:
        return (Term(RATE_YEAR_1, 12), Term(RATE_YEAR_2, 12))
    if rule is CharterRule.REINTRODUCTION_REDUCED:
        return (Term(RATE_YEAR_2, 12),)
    return ()


def _rate_in_month(terms: Sequence[Term], month_index: int) -> Decimal:
    elapsed = 0
    for term in terms:
        if month_index < elapsed + term.months:
            return term.rate
        elapsed += term.months
    return Decimal(0)


def is_below_minimum(custom: Sequence[Term], charter: Sequence[Term]) -> bool:
    """R2: custom terms pay less than the charter in *any* month after F."""
    horizon = max(sum(t.months for t in custom), sum(t.months for t in charter))
    return any(_rate_in_month(custom, month) < _rate_in_month(charter, month) for month in range(horizon))


def schedule_windows(first_invoice_date: date, terms: Sequence[Term]) -> tuple[Window, ...]:
    """The dated windows of ``terms`` from F. Each bound is F + cumulative months, so
    clipping to month end never drifts (F + 24 months, not (F + 12) + 12)."""
    windows: list[Window] = []
    elapsed = 0
    for year, term in enumerate(terms, start=1):
        assert term.months > 0, term
        start = add_months(first_invoice_date, elapsed)
        elapsed += term.months
        windows.append(Window(year, term.rate, term.months, start, add_months(first_invoice_date, elapsed)))
    return tuple(windows)


def window_for(day: date, windows: Iterable[Window]) -> Window | None:
    """The window ``day`` falls in, or None."""
    for window in windows:
        if window.contains(day):
            return window
    return None


# R4 --------------------------------------------------------------------------------


def commission_amount(current_net: Decimal, rate: Decimal, currency: str) -> Decimal:
    """R4: round_half_up(current_net x rate). A credit note changes ``current_net``; the
    rate stays the one of the invoice's own window."""
    assert current_net >= 0, current_net
    assert 0 <= rate <= 1, rate
    return round_half_up(current_net * rate, currency)


# R5 --------------------------------------------------------------------------------


def is_eligible(changes: Iterable[tuple[date, bool]], on: date) -> bool:
    """R5: can the introducer receive commissions on ``on``? ``changes`` are
    (effective_date, can_receive) pairs; the latest one in effect wins; default yes."""
    latest: tuple[date, bool] | None = None
    for effective, can_receive in changes:
        if effective <= on and (latest is None or effective > latest[0]):
            latest = (effective, can_receive)
    return True if latest is None else latest[1]


def payable_amount(commission: Decimal, gross: Decimal, paid: Decimal, currency: str) -> Decimal:
    """R5: the part of ``commission`` made payable once ``paid`` of ``gross`` was paid.

    Proportional to the cumulated payments, so the payment that completes the invoice
    takes the remainder and a fully paid (or overpaid) invoice makes it all payable."""
    assert commission >= 0 and gross >= 0 and paid >= 0, (commission, gross, paid)
    if paid >= gross:
        return commission
    return round_half_up(commission * paid / gross, currency)


# R6 --------------------------------------------------------------------------------


def retained_margin(cost: Decimal, resold: Decimal) -> Decimal:
    """R6: what a resale kept above cost, owed back to the client (never negative)."""
    return max(resold - cost, Decimal(0))


def split_rebate(amount: Decimal, costs: Sequence[Decimal], currency: str) -> tuple[Decimal, ...]:
    """R6: split ``amount`` in proportion to ``costs`` by largest remainder.

    Each share is first rounded down to the minor unit; the units left over go one each
    to the largest remainders, ties to the purchase listed first. When every cost is
    zero the split is even. The shares always add up to ``amount`` exactly."""
    assert costs, "a rebate covers at least one purchase"
    assert amount >= 0 and all(c >= 0 for c in costs), (amount, costs)
    total = sum(costs, Decimal(0))
    weights = list(costs) if total > 0 else [Decimal(1)] * len(costs)
    weight_total = sum(weights, Decimal(0))
    exact = [amount * w / weight_total for w in weights]
    shares = [round_down(x, currency) for x in exact]
    unit = quantum(currency)
    left = round_half_up(amount - sum(shares, Decimal(0)), currency)
    assert 0 <= left < unit * len(costs), (left, amount)
    order = sorted(range(len(costs)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[: int(left / unit)]:
        shares[i] += unit
    assert sum(shares, Decimal(0)) == amount, (shares, amount)
    return tuple(shares)
