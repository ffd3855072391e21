"""Amounts, rates and dates as French and English readers expect them (Babel/CLDR)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from notifier.application.formatting import format_day, format_money, format_rate, money_locale

NBSP, NNBSP = "\u00a0", "\u202f"


@pytest.mark.parametrize(
    ("language", "currency", "amount", "expected"),
    [
        ("fr", "CHF", "1234.50", f"CHF{NBSP}1’234.50"),
        ("fr", "CHF", "-30.00", f"CHF{NBSP}-30.00"),
        ("fr", "CHF", "1234567.05", f"CHF{NBSP}1’234’567.05"),
        ("en", "CHF", "1234.50", f"CHF{NBSP}1’234.50"),
        ("fr", "EUR", "1234.50", f"1{NNBSP}234,50{NBSP}€"),
        ("en", "EUR", "1234.50", "€1,234.50"),
        ("en", "EUR", "-0.05", "-€0.05"),
        ("fr", "JPY", "123456", f"123{NNBSP}456{NBSP}JPY"),
        ("en", "JPY", "123456", "JP¥123,456"),
        ("en", "JPY", "0", "JP¥0"),
    ],
)
def test_money(language: str, currency: str, amount: str, expected: str) -> None:
    """Each (language, currency) gives the locale's grouping, decimals and symbol placement."""
    assert format_money(Decimal(amount), currency, language) == expected  # type: ignore[arg-type]


def test_chf_is_swiss_style_not_cldr_fr_ch() -> None:
    """CHF uses Swiss number symbols (de_CH) in both languages, not CLDR fr_CH's 1 234,50 CHF."""
    assert money_locale("fr", "CHF") == money_locale("en", "CHF") == "de_CH"
    assert money_locale("fr", "EUR") == "fr_FR"
    assert money_locale("en", "EUR") == "en_GB"


@pytest.mark.parametrize(
    ("language", "rate", "expected"),
    [
        ("fr", "0.10", f"10{NBSP}%"),
        ("fr", "0.075", f"7,5{NBSP}%"),
        ("en", "0.05", "5%"),
        ("en", "0.075", "7.5%"),
    ],
)
def test_rate(language: str, rate: str, expected: str) -> None:
    """Rates keep their decimals (7.5 %, never rounded to 8 %)."""
    assert format_rate(Decimal(rate), language) == expected  # type: ignore[arg-type]


def test_day() -> None:
    """Dates are written out in the reader's language."""
    assert format_day(date(2025, 3, 11), "fr") == "11 mars 2025"
    assert format_day(date(2025, 3, 11), "en") == "11 March 2025"
