"""Money: ISO 4217 minor units and the single half-up rounding function."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger.domain.money import (
    UnknownCurrencyError,
    fits_currency,
    format_amount,
    is_known_currency,
    minor_unit_exponent,
    round_half_up,
)


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("CHF", 2), ("EUR", 2), ("JPY", 0), ("KWD", 3), ("CLF", 4), ("USD", 2)],
)
def test_minor_units_come_from_iso_4217(currency: str, exponent: int) -> None:
    """The exponent of each currency is ISO 4217's, from the maintained table."""
    assert minor_unit_exponent(currency) == exponent


@pytest.mark.parametrize("code", ["XAU", "XDR", "XXX", "ABC", "chf", ""])
def test_codes_without_minor_unit_are_not_currencies(code: str) -> None:
    """Metals, funds, test codes and unknown codes are refused."""
    assert not is_known_currency(code)
    with pytest.raises(UnknownCurrencyError):
        minor_unit_exponent(code)


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [
        ("0.125", "CHF", "0.13"),  # half up, where half-even would give 0.12
        ("0.135", "CHF", "0.14"),
        ("0.124999", "CHF", "0.12"),
        ("2.5", "JPY", "3"),  # half up, where half-even would give 2
        ("3.5", "JPY", "4"),
        ("1.4999", "JPY", "1"),
        ("0.0005", "KWD", "0.001"),
        ("-0.125", "CHF", "-0.13"),  # halves go away from zero
    ],
)
def test_round_half_up(value: str, currency: str, expected: str) -> None:
    """Rounding is half up to the currency's minor unit, never half-even."""
    assert str(round_half_up(Decimal(value), currency)) == expected


def test_fits_currency_checks_decimals() -> None:
    """An amount fits when it has no more decimals than the currency's minor unit."""
    assert fits_currency(Decimal("10.50"), "CHF")
    assert fits_currency(Decimal("10.5"), "CHF")
    assert not fits_currency(Decimal("10.505"), "CHF")
    assert fits_currency(Decimal("100"), "JPY")
    assert not fits_currency(Decimal("100.5"), "JPY")
    assert fits_currency(Decimal("100.0"), "JPY")  # trailing zeros carry no value


def test_format_amount_shows_exactly_the_minor_digits() -> None:
    """Report amounts carry exactly the currency's minor-unit digits."""
    assert format_amount(Decimal("5"), "CHF") == "5.00"
    assert format_amount(Decimal("5.0"), "JPY") == "5"
    assert format_amount(Decimal("0"), "KWD") == "0.000"
