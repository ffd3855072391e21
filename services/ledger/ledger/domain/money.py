"""Money: ISO 4217 currencies, minor units and the one rounding function.

Amounts are ``Decimal``; binary floating point never touches money. Every figure the
ledger derives goes through :func:`round_half_up` to the currency's minor unit.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from functools import cache

import iso4217

__all__ = [
    "MAX_AMOUNT",
    "UnknownCurrencyError",
    "currencies_by_exponent",
    "fits_currency",
    "format_amount",
    "format_rate",
    "is_known_currency",
    "minor_unit_exponent",
    "quantum",
    "round_down",
    "round_half_up",
    "to_minor",
]

#: Upper bound on any single amount (TIGER_STYLE: a limit on everything).
MAX_AMOUNT = Decimal("1000000000000")  # 10^12 major units


class UnknownCurrencyError(ValueError):
    """The code is not an ISO 4217 currency with a defined minor unit."""


@cache
def _exponents() -> dict[str, int]:
    table: dict[str, int] = {}
    for currency in iso4217.Currency:
        exponent = currency.exponent
        if exponent is not None:  # funds and metals (XAU, XDR, ...) have no minor unit
            table[currency.code] = int(exponent)
    return table


@cache
def currencies_by_exponent() -> dict[int, frozenset[str]]:
    """Every ISO 4217 code with a minor unit, grouped by its number of decimals."""
    groups: dict[int, set[str]] = {}
    for code, exponent in _exponents().items():
        groups.setdefault(exponent, set()).add(code)
    return {exponent: frozenset(codes) for exponent, codes in sorted(groups.items())}


def is_known_currency(code: str) -> bool:
    """True when ``code`` is an ISO 4217 currency with a minor unit."""
    return code in _exponents()


def minor_unit_exponent(currency: str) -> int:
    """Number of decimals of ``currency``'s minor unit (CHF: 2, JPY: 0)."""
    try:
        return _exponents()[currency]
    except KeyError:
        raise UnknownCurrencyError(f"unknown currency {currency!r}") from None


@cache
def quantum(currency: str) -> Decimal:
    """The currency's minor unit as a Decimal (CHF: 0.01, JPY: 1)."""
    return Decimal(1).scaleb(-minor_unit_exponent(currency))


def round_half_up(value: Decimal, currency: str) -> Decimal:
    """Round ``value`` to ``currency``'s minor unit, halves away from zero.

    This is the only rounding of money in the ledger (rules R4, R5).
    """
    return value.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def round_down(value: Decimal, currency: str) -> Decimal:
    """Truncate a non-negative ``value`` to the minor unit (largest-remainder splits)."""
    assert value >= 0, value
    return value.quantize(quantum(currency), rounding=ROUND_DOWN)


def to_minor(value: Decimal, currency: str) -> int:
    """``value`` as an integer count of minor units; it must be exact."""
    scaled = value.scaleb(minor_unit_exponent(currency))
    assert scaled == scaled.to_integral_value(), (value, currency)
    return int(scaled)


def fits_currency(value: Decimal, currency: str) -> bool:
    """True when ``value`` has no more decimals than ``currency`` allows."""
    return value == value.quantize(quantum(currency), rounding=ROUND_DOWN)


def format_amount(value: Decimal, currency: str) -> str:
    """Plain decimal string with exactly the currency's minor-unit digits."""
    return str(round_half_up(value, currency).quantize(quantum(currency)))


def format_rate(rate: Decimal) -> str:
    """A rate with at least two decimals: 0.1 -> "0.10", 0.075 -> "0.075"."""
    normal = rate.normalize()
    exponent = normal.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent > -2:
        normal = normal.quantize(Decimal("0.01"))
    return f"{normal:f}"
