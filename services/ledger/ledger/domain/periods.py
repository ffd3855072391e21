"""Periods (rules R9): calendar months, and the statement of a month frozen at its close.

Write K(k, D) for the figures computed from the facts at log positions <= k, as of day D:
per beneficiary and currency (accrued, payable, paid, outstanding) and per client and
currency (owed, passed through, outstanding). A close of month P at position k freezes,
row by row::

    closing     = K(k, last day of P)
    opening     = closing of the previous closed month (K(k, last day of P-1) at the first)
    adjustments = K(k, last day of P-1) - opening      (prior-period: late facts, voids)
    movements   = K(k, last day of P) - K(k, last day of P-1)

so that closing = opening + adjustments + movements, figure by figure. Pure functions.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from ledger.domain.books import Books, MonthBooks

__all__ = [
    "BALANCE_FIGURES",
    "REBATE_FIGURES",
    "Figures",
    "PeriodRow",
    "RowKey",
    "figures_of",
    "month_end",
    "month_of",
    "next_period",
    "parse_period",
    "previous_period",
    "statement_rows",
]

BALANCE_FIGURES = ("accrued", "payable", "paid", "outstanding")
REBATE_FIGURES = ("owed", "passed_through", "outstanding")
ZERO = Decimal(0)

#: ("balance", beneficiary, currency) or ("rebate", client, currency).
RowKey = tuple[str, str, str]
Figures = dict[RowKey, tuple[Decimal, ...]]

_PERIOD = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


def parse_period(text: str) -> tuple[int, int]:
    """``YYYY-MM`` as (year, month); ValueError otherwise."""
    match = _PERIOD.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a month YYYY-MM")
    return int(match.group(1)), int(match.group(2))


def month_end(period: str) -> dt.date:
    year, month = parse_period(period)
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def month_of(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def previous_period(period: str) -> str:
    year, month = parse_period(period)
    return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"


def next_period(period: str) -> str:
    year, month = parse_period(period)
    return f"{year + 1:04d}-01" if month == 12 else f"{year:04d}-{month + 1:02d}"


def figures_of(books: Books | MonthBooks) -> Figures:
    """K(k, D) of the books (of the facts up to k, as of D)."""
    out: Figures = {}
    for b in books.balances:
        out[("balance", b.beneficiary_id, b.currency)] = (b.accrued, b.payable, b.paid, b.outstanding)
    for r in books.rebates:
        out[("rebate", r.client_id, r.currency)] = (r.owed, r.passed_through, r.outstanding)
    return out


@dataclass(frozen=True, slots=True)
class PeriodRow:
    """One row of a month's statement: the four sets of figures of one key."""

    key: RowKey
    opening: tuple[Decimal, ...]
    adjustments: tuple[Decimal, ...]
    movements: tuple[Decimal, ...]
    closing: tuple[Decimal, ...]

    def __post_init__(self) -> None:
        for o, a, m, c in zip(self.opening, self.adjustments, self.movements, self.closing, strict=True):
            assert o + a + m == c, self


def _width(key: RowKey) -> int:
    return len(BALANCE_FIGURES) if key[0] == "balance" else len(REBATE_FIGURES)


def statement_rows(
    before: Figures, at_end: Figures, previous_closing: Mapping[RowKey, tuple[Decimal, ...]] | None
) -> tuple[PeriodRow, ...]:
    """The rows of month P's statement from K(k, end of P-1) (``before``), K(k, end of P)
    (``at_end``) and the previous closed month's closing (None at the first close: the
    opening is then ``before``, and there is no adjustment). Rows where all four sets are
    zero are left out; sorted by key."""
    opening_source: Mapping[RowKey, tuple[Decimal, ...]] = (
        before if previous_closing is None else previous_closing
    )
    rows = []
    for key in sorted(before.keys() | at_end.keys() | opening_source.keys()):
        zero = (ZERO,) * _width(key)
        opening = opening_source.get(key, zero)
        prior = before.get(key, zero)
        closing = at_end.get(key, zero)
        adjustments = tuple(p - o for p, o in zip(prior, opening, strict=True))
        movements = tuple(c - p for c, p in zip(closing, prior, strict=True))
        if any(v != 0 for v in (*opening, *adjustments, *movements, *closing)):
            rows.append(PeriodRow(key, opening, adjustments, movements, closing))
    return tuple(rows)
